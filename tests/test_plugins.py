"""The plugin manager: entry points, unknown hooks refused, duplicate backend names refused.

Third-party plugins are made real here: a distribution's metadata (``*.dist-info`` with an
``entry_points.txt``) is written to a directory on ``sys.path``, exactly what pip installs.
"""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import angos_fs.plugin
import angos_memory.plugin
import pytest

from angos_core import BackendSpec, hookimpl
from angos_core.errors import PluginError
from angos_core.plugins import BackendCatalogue, load_catalogue, make_plugin_manager


@dataclass
class NoSettings:
    pass


def spec(name: str, distribution: str) -> BackendSpec[Any]:
    return BackendSpec(name, lambda c: c, NoSettings, distribution=distribution)


class TypoPlugin:
    @hookimpl
    def angos_blob_store(self) -> list[BackendSpec[Any]]:  # missing the final "s"
        return []  # pragma: no cover


class DupBlobA:
    @hookimpl
    def angos_blob_stores(self) -> list[BackendSpec[Any]]:
        return [spec("dup", "angos-dup-a")]


class DupBlobB:
    @hookimpl
    def angos_blob_stores(self) -> list[BackendSpec[Any]]:
        return [spec("other", "angos-dup-b"), spec("dup", "angos-dup-b")]


class SameNameOtherKinds:
    @hookimpl
    def angos_metadata_stores(self) -> list[BackendSpec[Any]]:
        return [spec("dup", "angos-dup-c")]

    @hookimpl
    def angos_caches(self) -> list[BackendSpec[Any]]:
        return [spec("dup", "angos-dup-c")]


class EmptyPlugin:
    @hookimpl
    def angos_lock_providers(self) -> list[BackendSpec[Any]]:
        return []


def catalogue_of(*plugins: object) -> BackendCatalogue:
    pm = make_plugin_manager(plugins, load_entrypoints=False)
    return BackendCatalogue.from_plugin_manager(pm)


def test_unknown_angos_hook_is_refused() -> None:
    with pytest.raises(PluginError) as info:
        make_plugin_manager([TypoPlugin()], load_entrypoints=False)
    assert "angos_blob_store" in str(info.value)


def test_duplicate_backend_names_are_refused() -> None:
    with pytest.raises(PluginError) as info:
        catalogue_of(DupBlobA(), DupBlobB())
    message = str(info.value)
    assert "blob_store 'dup'" in message
    assert "angos-dup-a" in message and "angos-dup-b" in message


def test_one_name_in_several_kinds_is_fine() -> None:
    catalogue = catalogue_of(DupBlobA(), SameNameOtherKinds(), EmptyPlugin())
    assert catalogue.names("blob_store") == ["dup"]
    assert catalogue.names("metadata_store") == ["dup"]
    assert catalogue.names("cache") == ["dup"]
    assert catalogue.names("lock_provider") == []


def test_a_miss_names_what_is_installed() -> None:
    catalogue = catalogue_of(angos_fs.plugin, angos_memory.plugin)
    assert catalogue.has("blob_store", "fs") and not catalogue.has("blob_store", "s4")
    with pytest.raises(PluginError) as info:
        catalogue.get("blob_store", "s4")
    assert str(info.value).startswith("blob_store 's4' not found; installed: fs; ")
    with pytest.raises(PluginError) as info:
        catalogue_of().get("cache", "memory")
    assert "installed: none" in str(info.value)


def test_builtins_arrive_through_entry_points_named_after_their_distribution() -> None:
    points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="angos")}
    assert points["angos-fs"] == "angos_fs.plugin"
    assert points["angos-memory"] == "angos_memory.plugin"
    catalogue = load_catalogue()
    assert catalogue.get("blob_store", "fs").distribution == "angos-fs"
    assert catalogue.get("metadata_store", "fs").distribution == "angos-fs"
    assert catalogue.get("lock_provider", "memory").distribution == "angos-memory"
    assert catalogue.get("cache", "memory").distribution == "angos-memory"


# ---------------------------------------------------------------------- installed plugins


def install_fake_distribution(site: Path, module_source: str) -> tuple[str, str]:
    """Write a module and the metadata pip would write for a distribution providing it."""
    suffix = uuid.uuid4().hex[:8]
    module, dist = f"angos_fake_{suffix}", f"angos-fake-{suffix}"
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[angos]\n{dist} = {module}\n")
    return module, dist


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_third_party_distribution_registers_like_the_builtins(site: Path) -> None:
    module, dist = install_fake_distribution(
        site,
        """
        from dataclasses import dataclass
        from angos_core import BackendSpec, hookimpl

        @dataclass
        class Config:
            path: str = "x"

        @hookimpl
        def angos_metadata_stores():
            return [BackendSpec("thirdparty", dict, Config, distribution="angos-thirdparty")]
        """,
    )
    try:
        catalogue = load_catalogue()
        found = catalogue.get("metadata_store", "thirdparty")
        assert found.distribution == "angos-thirdparty"
        assert catalogue.has("metadata_store", "fs")  # next to the built-ins
    finally:
        sys.modules.pop(module, None)
    assert dist in {d.metadata["Name"] for d in importlib.metadata.distributions()}


def test_a_broken_distribution_is_named(site: Path) -> None:
    module, dist = install_fake_distribution(site, "raise ImportError('plugin is broken')\n")
    try:
        with pytest.raises(PluginError) as info:
            load_catalogue()
    finally:
        sys.modules.pop(module, None)
    assert "plugin is broken" in str(info.value)
    assert repr(dist) in str(info.value)  # which distribution to fix or uninstall


def test_an_installed_plugin_with_a_typo_is_refused(site: Path) -> None:
    module, _ = install_fake_distribution(
        site,
        """
        from angos_core import hookimpl

        @hookimpl
        def angos_chaches():
            return []
        """,
    )
    try:
        with pytest.raises(PluginError) as info:
            load_catalogue()
    finally:
        sys.modules.pop(module, None)
    assert "angos_chaches" in str(info.value)
