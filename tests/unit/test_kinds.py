"""Extension kinds: one declaration per kind, and everything per kind follows from it.

The built-in kinds are checked against what is derived from them (hook specs, the config
summary, ``describe``, ``/readyz``, the wrappers). Then kinds declared here, and nowhere
else, get config parsing, the protocol check, wrapping and health without an edit to core:
a storage kind ``widget`` (``[widget.<name>]``, default ``spinner``), and two ``Entries``
kinds sharing one section as the authenticators and authorizers will share ``[auth]``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import angos_fs.plugin
import angos_memory.plugin
import pytest
from aiohttp.test_utils import TestClient, TestServer

from angos_core import BackendSpec, BlobStore, hookimpl, hookspecs
from angos_core.config import AngosConfig, parse_config
from angos_core.errors import BackendUnavailable, ConfigError, PluginError
from angos_core.http.app import make_app
from angos_core.kinds import (
    EXTENSION_KINDS,
    Entries,
    ExtensionKind,
    Single,
    SubTable,
    check_declarations,
    protocol_members,
)
from angos_core.logs import config_summary
from angos_core.plugins import BackendCatalogue, make_plugin_manager
from angos_core.registry import Stores
from angos_core.registry.wrappers import _Wrapped
from angos_core.serve import describe

# --------------------------------------------------------------------------- a storage kind


@runtime_checkable
class Widget(Protocol):
    name: str

    async def spin(self) -> int: ...

    async def open(self) -> None: ...

    async def health(self) -> None: ...

    async def aclose(self) -> None: ...


class WrappedWidget(_Wrapped):
    kind = "widget"

    async def spin(self) -> int:
        return await self._call("spin", self.inner.spin)


@dataclasses.dataclass
class SpinnerConfig:
    speed: int = 1
    broken: bool = False


class Spinner:
    def __init__(self, config: SpinnerConfig) -> None:
        self.name = "spinner"
        self.config = config
        self.opened = self.closed = False

    async def spin(self) -> int:
        if self.config.broken:
            raise ConnectionError("the widget server is down")
        return self.config.speed

    async def open(self) -> None:
        self.opened = True

    async def health(self) -> None:
        if self.config.broken:
            raise ConnectionError("the widget server is down")

    async def aclose(self) -> None:
        self.closed = True


WIDGET = ExtensionKind(
    name="widget",
    title="widget",
    hook="angos_widgets",
    protocol=Widget,
    selection=Single("widget", default="spinner"),
    wrapper=WrappedWidget,
    stores_field="widgets",
    readiness="write",
)

# --------------------------------------------------------------------------- two Entries kinds


@runtime_checkable
class Gate(Protocol):
    async def admit(self, who: str) -> bool: ...


@dataclasses.dataclass
class KeyConfig:
    secret: str
    label: str = ""


@dataclasses.dataclass
class ListConfig:
    path: str


class Checker:
    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def admit(self, who: str) -> bool:
        return who in self.settings if isinstance(self.settings, dict) else bool(who)


@dataclasses.dataclass(frozen=True)
class EntriesSpec(BackendSpec[Any]):
    """A spec of the ``entries`` form (as the authenticators' ``AuthenticatorSpec``)."""

    form: str = "entries"


#: As ``[auth.<authenticator>.<entry>]`` or ``[auth.htpasswd]``, beside the authorizers'
#: ``[auth.webhook.<name>]`` and core's ``[auth.failure_limit]``.
GATE = ExtensionKind(
    name="gate",
    title="gate",
    hook="angos_gates",
    protocol=Gate,
    selection=Entries("guard", reserved=("limits",)),
    summary="names",
)
JUDGE = ExtensionKind(
    name="judge", title="judge", hook="angos_judges", protocol=Gate, selection=Entries("guard")
)


class ExtraSpecs:
    """The hook specs of the kinds above (core's own are in angos_core.hookspecs)."""

    @hookspecs.hookspec
    def angos_widgets(self) -> list[BackendSpec[Widget]]:  # type: ignore[empty-body]
        """Widgets. Result: all lists are concatenated."""

    @hookspecs.hookspec
    def angos_gates(self) -> list[BackendSpec[Gate]]:  # type: ignore[empty-body]
        """Gates. Result: all lists are concatenated."""

    @hookspecs.hookspec
    def angos_judges(self) -> list[BackendSpec[Gate]]:  # type: ignore[empty-body]
        """Judges. Result: all lists are concatenated."""


class ExtraPlugin:
    @hookimpl
    def angos_widgets(self) -> list[BackendSpec[Any]]:
        return [BackendSpec("spinner", Spinner, SpinnerConfig, distribution="angos-widgets")]

    @hookimpl
    def angos_gates(self) -> list[BackendSpec[Any]]:
        return [
            EntriesSpec("key", Checker, KeyConfig, distribution="angos-gates"),
            BackendSpec("list", Checker, ListConfig, distribution="angos-gates"),
        ]

    @hookimpl
    def angos_judges(self) -> list[BackendSpec[Any]]:
        return [BackendSpec("hook", Checker, KeyConfig, distribution="angos-judges")]


EXTRA_KINDS = (*EXTENSION_KINDS, WIDGET, GATE, JUDGE)
STORAGE = [kind for kind in EXTENSION_KINDS if kind.stores_field is not None]


def extended_catalogue(*plugins: object) -> BackendCatalogue:
    pm = make_plugin_manager([angos_fs.plugin, angos_memory.plugin], load_entrypoints=False)
    pm.add_hookspecs(ExtraSpecs)
    for plugin in (ExtraPlugin(), *plugins):
        pm.register(plugin)
    return BackendCatalogue.from_plugin_manager(pm, EXTRA_KINDS)


def parse(text: str, catalogue: BackendCatalogue, root: Path) -> AngosConfig:
    data = tomllib.loads(text + f'\n[blob_store.fs]\nroot_dir = "{root}"\n')
    return parse_config(data, catalogue)


def config_error(text: str, catalogue: BackendCatalogue, root: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, catalogue, root)
    return info.value


async def readyz(config: AngosConfig, query: str = "") -> tuple[int, dict[str, Any]]:
    async with TestClient(TestServer(make_app(config, maintenance=False))) as client:
        resp = await client.get(f"/readyz{query}")
        return resp.status, await resp.json()


# --------------------------------------------------------------------------- the built-in table


def test_every_declared_kind_has_its_hookspec() -> None:
    for kind in EXTENSION_KINDS:
        spec = getattr(hookspecs, kind.hook, None)
        assert spec is not None, f"{kind.name}: no hook {kind.hook} in angos_core.hookspecs"
        assert hasattr(spec, f"{hookspecs.PROJECT}_spec"), f"{kind.hook} is not a @hookspec"
        assert "Result:" in (spec.__doc__ or ""), f"{kind.hook}'s docstring states no result rule"


def test_every_hookspec_is_a_declared_kind() -> None:
    """A hook without a declaration would never be collected: its plugins' backends would
    be silently ignored."""
    declared = {kind.hook for kind in EXTENSION_KINDS}
    hooks = {
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("angos_") and hasattr(value, f"{hookspecs.PROJECT}_spec")
    }
    assert hooks == declared


def test_the_declarations_are_consistent() -> None:
    check_declarations(EXTENSION_KINDS)
    for kind in EXTENSION_KINDS:
        # Runtime-checkable: else the build-time isinstance check raises TypeError.
        assert not isinstance(object(), kind.protocol)
        assert protocol_members(kind.protocol), kind.name


def test_the_built_in_kinds_and_their_selection() -> None:
    by_name = {kind.name: kind for kind in EXTENSION_KINDS}
    assert list(by_name) == [
        "blob_store",
        "metadata_store",
        "lock_provider",
        "cache",
        "authenticator",
        "authorizer",
    ]
    assert by_name["metadata_store"].selection == Single("metadata_store", inherit="blob_store")
    assert by_name["lock_provider"].selection == SubTable("metadata_store", default="memory")
    assert by_name["cache"].default == "memory"
    assert by_name["blob_store"].default is None
    assert by_name["authenticator"].selection == Entries("auth", reserved=("failure_limit",))
    assert by_name["authenticator"].stores_field is None
    assert by_name["authorizer"].selection == Entries("auth", reserved=("failure_limit",))
    assert by_name["authorizer"].stores_field is None


@pytest.fixture
def builtin_config(tmp_path: Path) -> AngosConfig:
    pm = make_plugin_manager([angos_fs.plugin, angos_memory.plugin], load_entrypoints=False)
    return parse("", BackendCatalogue.from_plugin_manager(pm), tmp_path)


def test_summary_and_describe_list_every_declared_kind(builtin_config: AngosConfig) -> None:
    summary = config_summary(builtin_config)
    line = describe(builtin_config)
    for kind in EXTENSION_KINDS:
        if kind.several:  # none configured here
            assert summary[kind.name] == []
            assert f"{kind.name}=none" in line
        else:
            assert summary[kind.name]["name"] == builtin_config.backend(kind.name).name
            assert f"{kind.name}={builtin_config.backend(kind.name).name}" in line
    assert line.startswith(Stores.from_config(builtin_config).describe() + ", ")


async def test_readyz_lists_every_declared_kind(builtin_config: AngosConfig) -> None:
    status, body = await readyz(builtin_config)
    assert status == 200
    checked = [kind.name for kind in EXTENSION_KINDS if kind.readiness is not None]
    storage = [kind.name for kind in EXTENSION_KINDS if kind.stores_field is not None]
    assert list(body["backends"]) == checked == storage


def test_each_kind_wraps_with_its_own_wrapper(builtin_config: AngosConfig) -> None:
    stores = Stores.from_config(builtin_config)
    for kind in STORAGE:
        wrapped = stores.backend(kind.name)
        assert wrapped.kind == kind.name  # the wrapper reports its calls under this kind
        assert isinstance(wrapped.inner, kind.protocol)
        assert getattr(stores, str(kind.stores_field)) is wrapped


# --------------------------------------------------------------------------- the protocol check


@dataclasses.dataclass
class NoSettings:
    pass


class HalfBlobStore:
    """Has a name and a few of the blob store's methods, not the rest."""

    name = "half"

    async def stat(self, digest: str) -> int | None:
        return None

    async def open(self) -> None:
        return None


class HalfPlugin:
    @hookimpl
    def angos_blob_stores(self) -> list[BackendSpec[Any]]:
        return [
            BackendSpec("half", lambda _: HalfBlobStore(), NoSettings, distribution="angos-half")
        ]


def test_a_factory_building_a_nonconforming_object_is_a_clear_plugin_error(
    tmp_path: Path,
) -> None:
    pm = make_plugin_manager(
        [angos_fs.plugin, angos_memory.plugin, HalfPlugin()], load_entrypoints=False
    )
    data = {"blob_store": {"half": {}}, "metadata_store": {"fs": {"root_dir": str(tmp_path)}}}
    config = parse_config(data, BackendCatalogue.from_plugin_manager(pm))
    with pytest.raises(PluginError) as info:
        Stores.from_config(config)
    message = str(info.value)
    assert message.startswith("plugin distribution 'angos-half': blob_store 'half' ")
    assert "not a BlobStore" in message and "\n" not in message
    missing = message.split("lacks ", 1)[1].split(")", 1)[0].split(", ")
    expected = [m for m in protocol_members(BlobStore) if not hasattr(HalfBlobStore, m)]
    assert missing == expected
    assert {"read", "upload_commit", "list_uploads", "health", "aclose"} <= set(missing)
    assert "stat" not in missing and "name" not in missing


def test_a_conforming_object_builds(builtin_config: AngosConfig) -> None:
    for kind in STORAGE:
        assert isinstance(builtin_config.backend(kind.name).build(), kind.protocol)


# --------------------------------------------------------------------------- a kind declared here


def test_a_declared_kind_gets_its_section_and_default(tmp_path: Path) -> None:
    catalogue = extended_catalogue()
    config = parse("", catalogue, tmp_path)
    assert config.backend("widget").name == "spinner"
    assert config.backend("widget").settings == SpinnerConfig()
    assert config.selected("gate") == config.selected("judge") == ()

    config = parse("[widget.spinner]\nspeed = 7\n", catalogue, tmp_path)
    assert config.backend("widget").settings == SpinnerConfig(speed=7)
    assert config.backend("widget").path == "widget.spinner"


def test_a_declared_kind_gets_the_config_errors(tmp_path: Path) -> None:
    catalogue = extended_catalogue()
    error = config_error("[widget.spinner]\nspeed = 'fast'\n", catalogue, tmp_path)
    assert (error.key, error.message) == ("widget.spinner.speed", "expected int, got str 'fast'")
    error = config_error("[widget.gyro]\n", catalogue, tmp_path)
    assert error.key == "widget.gyro"
    assert error.message.startswith("widget 'gyro' not found; installed: spinner; ")
    error = config_error("[widget.spinner]\n[widget.other]\n", catalogue, tmp_path)
    assert error.message.startswith("exactly one backend must be configured, found: other,")
    error = config_error("[widgets.spinner]\n", catalogue, tmp_path)
    assert error.key == "widgets"
    assert error.message == (
        "unknown section; known sections: server, global, log, maintenance, repository, migration, "
        "blob_store, metadata_store, cache, auth, widget, guard"
    )


async def test_a_declared_kind_is_built_wrapped_opened_and_observed(tmp_path: Path) -> None:
    config = parse("[widget.spinner]\nspeed = 3\nbroken = true\n", extended_catalogue(), tmp_path)
    calls: list[tuple[str, str, str, str | None]] = []

    def observe(kind: str, backend: str, op: str, secs: float, error: str | None) -> None:
        calls.append((kind, backend, op, error))

    stores = Stores.from_config(config, observe)
    widget = stores.backend("widget")
    assert isinstance(widget, WrappedWidget) and isinstance(widget.inner, Spinner)
    assert list(stores.by_kind) == [*(k.name for k in STORAGE), "widget"]
    await stores.open()
    assert widget.inner.opened
    with pytest.raises(BackendUnavailable) as info:
        await widget.spin()
    assert info.value.backend == "spinner"
    assert ("widget", "spinner", "spin", "ConnectionError") in calls
    assert "widget=spinner" in stores.describe()
    await stores.aclose()
    assert widget.inner.closed


async def test_a_declared_kind_counts_in_readyz_as_declared(tmp_path: Path) -> None:
    catalogue = extended_catalogue()
    healthy = parse("", catalogue, tmp_path)
    status, body = await readyz(healthy, "?write=1")
    assert status == 200 and body["backends"]["widget"]["ok"]

    broken = parse("[widget.spinner]\nbroken = true\n", catalogue, tmp_path)
    status, body = await readyz(broken)
    assert status == 200  # readiness "write": reads do not need it
    assert body["failing"] == ["widget (spinner)"]
    status, body = await readyz(broken, "?write=1")
    assert status == 503 and body["status"] == "read-only" and not body["write"]


def test_a_declared_kind_is_in_the_summary_and_describe(tmp_path: Path) -> None:
    config = parse(
        "[widget.spinner]\nspeed = 2\n[guard.key.ci]\nsecret = 's'\n[guard.key.bot]\n"
        "secret = 't'\n[guard.list]\npath = 'p'\n",
        extended_catalogue(),
        tmp_path,
    )
    summary = config_summary(config)
    assert summary["widget"] == {"name": "spinner", "speed": 2}
    # summary="names": never a setting of a gate, secret or not.
    assert summary["gate"] == [
        {"name": "key", "entries": ["ci", "bot"]},
        {"name": "list", "entries": []},
    ]
    assert summary["judge"] == []
    line = describe(config)
    assert "widget=spinner" in line and line.endswith("gate=key[ci,bot]+list, judge=none")


# --------------------------------------------------------------------------- Entries kinds


def test_entries_select_several_backends_in_file_order(tmp_path: Path) -> None:
    config = parse(
        """
        [guard.list]
        path = "/etc/list"
        [guard.key.ci]
        secret = "one"
        [guard.key.deploy]
        secret = "two"
        label = "deploy bot"
        [guard.hook]
        secret = "three"
        [guard.limits]
        anything = "core's own"
        """.replace("\n        ", "\n"),
        extended_catalogue(),
        tmp_path,
    )
    gates = config.selected("gate")
    assert [(c.name, c.entries, c.path) for c in gates] == [
        ("list", (), "guard.list"),
        ("key", ("ci", "deploy"), "guard.key"),
    ]
    assert gates[0].settings == ListConfig("/etc/list")
    # The entries form: the factory gets every entry at once.
    assert gates[1].settings == {
        "ci": KeyConfig("one"),
        "deploy": KeyConfig(secret="two", label="deploy bot"),
    }
    # The section's other backend name belongs to the other kind sharing it.
    ((judge,),) = [config.selected("judge")]
    assert (judge.kind, judge.name, judge.settings) == (JUDGE, "hook", KeyConfig("three"))
    built = [c.build() for c in (*gates, judge)]
    assert all(isinstance(b, Gate) for b in built)
    assert built[1].settings == gates[1].settings


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[guard.key.ci]\nlabel = 'x'\n", "guard.key.ci.secret", "required key is missing"),
        (
            "[guard.key]\n",
            "guard.key",
            "no entry configured; add one or more [guard.key.<name>] tables",
        ),
        (
            "[guard.key]\nci = 1\n",
            "guard.key.ci",
            "expected a table [guard.key.ci]: each entry of 'key' is its own "
            "[guard.key.<name>] table",
        ),
        (
            "[guard.list.x]\npath = 'p'\n",
            "guard.list.x",
            "unknown key; known keys here: path",
        ),
        ("[guard]\nlist = 1\n", "guard.list", "expected a table [guard.list]"),
        ("guard = 1\n", "guard", "expected a table such as [guard.<name>]"),
    ],
)
def test_entries_errors_name_the_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    error = config_error(text, extended_catalogue(), tmp_path)
    assert (error.key, error.message) == (key, message)


def test_an_unknown_name_in_a_shared_section_names_every_kind_sharing_it(tmp_path: Path) -> None:
    error = config_error("[guard.ldap.corp]\nurl = 'u'\n", extended_catalogue(), tmp_path)
    assert error.key == "guard.ldap"
    assert error.message.startswith("gate 'ldap' not found; installed: key, list; ")
    assert "; judge 'ldap' not found; installed: hook; " in error.message


# --------------------------------------------------------------------------- declarations


def test_a_kind_without_a_hookspec_is_refused() -> None:
    pm = make_plugin_manager([angos_fs.plugin, angos_memory.plugin], load_entrypoints=False)
    with pytest.raises(PluginError) as info:
        BackendCatalogue.from_plugin_manager(pm, (*EXTENSION_KINDS, WIDGET))
    assert str(info.value) == (
        "extension kind 'widget': no hook spec 'angos_widgets'; declare it in angos_core.hookspecs"
    )


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (dataclasses.replace(WIDGET, name="cache"), "declared twice"),
        (
            dataclasses.replace(WIDGET, selection=Single("cache")),
            "section 'cache' is already another kind's",
        ),
        (
            dataclasses.replace(WIDGET, selection=SubTable("metadata_store", "x")),
            "a second kind selected under 'metadata_store'",
        ),
        (
            dataclasses.replace(WIDGET, selection=SubTable("gate", "x")),
            "parent 'gate' is not a Single kind declared before it",
        ),
        (
            dataclasses.replace(WIDGET, selection=Single("widget", inherit="later")),
            "inherits from 'later', which is not declared before it",
        ),
        (
            dataclasses.replace(JUDGE, selection=Entries("cache")),
            "section 'cache' is already a Single kind's",
        ),
        (
            dataclasses.replace(JUDGE, stores_field="judges"),
            "a Stores field holds one backend: an Entries kind cannot have one",
        ),
        (
            dataclasses.replace(JUDGE, readiness="advisory"),
            "readiness without a stores_field: /readyz checks what Stores holds",
        ),
    ],
)
def test_contradictory_declarations_are_refused(extra: ExtensionKind, problem: str) -> None:
    with pytest.raises(PluginError) as info:
        check_declarations((*EXTENSION_KINDS, GATE, extra))
    assert str(info.value) == f"extension kind {extra.name!r}: {problem}"


def test_protocol_members_are_what_the_protocol_declares() -> None:
    assert protocol_members(Widget) == ("name", "spin", "open", "health", "aclose")
    assert protocol_members(Gate) == ("admit",)
