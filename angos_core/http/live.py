"""The settings a reload may change, as one object the handlers read per request.

:class:`LiveSettings` holds what ``SIGHUP`` reloads: the authenticator chain (identities,
OIDC providers, the token service), the access policies, and the write rules of the domain
(immutable tags, ``[maintenance.read_only]``). The app keeps it in a :class:`Live` holder
(``app[LIVE]``); a middleware or handler reads ``live(request)`` once and uses that object
for the whole request, so a request never mixes an old chain with a new policy.

:func:`reload` builds the new settings completely (the config parsed and checked, the new
authenticators built through their kind and opened) before it swaps them in, in one
assignment with no await between it and the domain's rules; anything that fails before
leaves the old settings serving. The old authenticators are closed after the swap, once the
requests that started before it are done (bounded by ``[server] shutdown_grace_secs``), as
the app's ``cleanup_ctx`` closes them at shutdown.

What is not reloadable (storage, ``[server]``, ``[log]``, the other ``[global]`` and
``[maintenance]`` keys, backends of any other kind) is compared, and a reload that changes
it is refused naming the first such key: those are built once, at startup.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from angos_core.auth.chain import AttemptObserver, AuthChain
from angos_core.auth.tokens import TokenMinter
from angos_core.config import AngosConfig
from angos_core.errors import AngosError
from angos_core.policy import PolicyEngine

log = logging.getLogger("angos.reload")

#: Dotted key prefixes a reload may change; every other key needs a restart.
RELOADABLE = (
    "global.access_policy",
    "global.immutable_tags",
    "repository",
    "maintenance.read_only",
    "auth.failure_limit",
)
#: ``[repository."<namespace>"]`` keys built once at startup all the same: the pull-through
#: cache's upstreams and tag TTL, and the retention rules the server's own prune applies.
REPOSITORY_STARTUP_KEYS = frozenset({"upstream", "tag_ttl_secs", "retention_policy"})
#: The extension kinds whose backends a reload rebuilds.
RELOADABLE_KINDS = frozenset({"authenticator"})

#: ``load()``: the config file read and checked again, as ``angos serve`` read it (the
#: command line's overrides applied). Runs in a thread.
ConfigLoader = Callable[[], AngosConfig]


@dataclass(frozen=True)
class LiveSettings:
    config: AngosConfig
    #: None: no authenticator is configured (every request is anonymous).
    chain: AuthChain | None
    policy: PolicyEngine
    #: The chain's token minter (the registry's token service), if any.
    minter: TokenMinter | None

    @property
    def read_only(self) -> bool:
        return self.config.maintenance.read_only.enabled

    @property
    def authorizing(self) -> bool:
        """Whether requests go through the policy middleware: a policy is configured, or
        authenticators are (a token's ``access`` then restricts what it may do)."""
        return self.policy.configured or self.chain is not None

    @classmethod
    def build(cls, config: AngosConfig, observe: AttemptObserver | None = None) -> LiveSettings:
        """The settings of ``config``: authenticators built (through their kind's
        ``BackendChoice.build``), not opened."""
        chain = AuthChain.from_config(config.auth, observe) if config.auth.enabled else None
        minter = None
        if chain is not None:
            minter = next((a for a in chain.authenticators if isinstance(a, TokenMinter)), None)
        return cls(config, chain, config.policy, minter)


class Live:
    """The current :class:`LiveSettings` of an app; :attr:`current` is swapped whole."""

    def __init__(self, settings: LiveSettings) -> None:
        self.current = settings
        #: Old chains still closing (awaited at shutdown).
        self.retiring: set[asyncio.Task[None]] = set()


LIVE: web.AppKey[Live] = web.AppKey("angos_live", Live)
#: The settings a request started with: every layer of it reads the same ones.
_SETTINGS: web.RequestKey[LiveSettings] = web.RequestKey("angos_live_settings", LiveSettings)


def live(request: web.Request) -> LiveSettings:
    """The settings this request is served with: the current ones when it first asks,
    the same ones after (a reload meanwhile does not change them under it)."""
    settings = request.get(_SETTINGS)
    if settings is None:
        settings = request[_SETTINGS] = request.app[LIVE].current
    return settings


# --------------------------------------------------------------------------- comparing


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = value


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def settings_view(config: AngosConfig) -> dict[str, tuple[bool, Any]]:
    """Every setting of ``config`` by dotted key, with whether a reload may change it."""
    flat: dict[str, Any] = {}
    sections: dict[str, Any] = {
        "server": config.server,
        "log": config.log,
        "global": config.global_,
        "maintenance": config.maintenance,
        "auth.failure_limit": config.auth.failure_limit,
    }
    for name, section in sections.items():
        _flatten(name, dataclasses.asdict(section), flat)
    # A live migration's old stores are opened at startup: which config names them.
    flat["migration.from"] = None if config.migration is None else str(config.migration.source)
    view = {key: (key.startswith(RELOADABLE), value) for key, value in flat.items()}
    for namespace, repository in config.repositories.items():
        for field in dataclasses.fields(repository):
            value = getattr(repository, field.name)
            reloadable = field.name not in REPOSITORY_STARTUP_KEYS
            if not reloadable and value == _default(field):
                # A namespace added or removed by a reload with these unset changes nothing
                # built at startup.
                continue
            fields: dict[str, Any] = {}
            _flatten(f"repository.{namespace}.{field.name}", _plain(value), fields)
            view.update({key: (reloadable, item) for key, item in fields.items()})
    for kind in config.kinds:
        for choice in config.selected(kind.name):
            backend: dict[str, Any] = {}
            # The path alone names the backend (an empty table is still a choice).
            _flatten(choice.path, {"": None, **choice.table}, backend)
            for key, value in backend.items():
                view[key] = (kind.name in RELOADABLE_KINDS, value)
    return view


def changed_keys(old: AngosConfig, new: AngosConfig) -> list[tuple[str, bool]]:
    """The dotted keys whose value differs (added or removed included), each with whether a
    reload may change it, in a stable order."""
    before, after = settings_view(old), settings_view(new)
    changed = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a is None or b is None or a[1] != b[1]:
            reloadable = (a is None or a[0]) and (b is None or b[0])
            changed.append((key.removesuffix("."), reloadable))
    return changed


def _summarize(keys: Iterable[str]) -> str:
    # Sections rather than every leaf: "auth.identity.carol, global.access_policy".
    seen: dict[str, None] = {}
    for key in keys:
        parts = key.split(".")
        depth = 3 if parts[0] in ("auth", "repository", "maintenance") else 2
        seen[".".join(parts[:depth])] = None
    return ", ".join(seen) or "nothing"


# --------------------------------------------------------------------------- reloading


class ReloadRefused(Exception):
    """The new config cannot be applied while running; the message is the log line."""


def check_reloadable(old: AngosConfig, new: AngosConfig) -> list[str]:
    """The reloadable keys that changed; :class:`ReloadRefused` naming the first key that
    changed and needs a restart."""
    changed = changed_keys(old, new)
    fixed = [key for key, reloadable in changed if not reloadable]
    if fixed:
        raise ReloadRefused(
            f"{fixed[0]} changed, and it is only read at startup; restart angos to apply it "
            "(the running config is kept)"
        )
    return [key for key, _ in changed]


async def reload(app: web.Application, new: AngosConfig, observe: AttemptObserver | None) -> str:
    """Swap in the settings of ``new`` (see the module docstring); what changed, for the
    log line. Raises :class:`ReloadRefused` or a ``ConfigError`` (an authenticator that
    cannot open), the old settings kept."""
    from angos_core.http.context import REGISTRY

    holder = app[LIVE]
    old = holder.current
    changed = check_reloadable(old.config, new)
    settings = LiveSettings.build(new, observe)
    if (settings.minter is None) != (old.minter is None):
        # The token endpoint's routes exist or not from startup (a frozen router).
        raise ReloadRefused(
            "a reload cannot add or remove the registry's token service (the /token "
            "endpoint); restart angos to apply it (the running config is kept)"
        )
    registry = app[REGISTRY]
    if settings.chain is not None:
        await settings.chain.open(registry.stores.cache)
    # The swap: no await from here to the end of the block.
    holder.current = settings
    registry.apply_rules(new.immutable_tags, settings.read_only)
    if old.chain is not None:
        retire(app, old.chain)
    return _summarize(changed)


def retire(app: web.Application, chain: AuthChain) -> None:
    """Close ``chain`` once the requests in flight now (which may be using it) are done,
    ``[server] shutdown_grace_secs`` at most."""
    from angos_core.http.observe import REQUEST_TASKS

    holder = app[LIVE]
    tasks = app[REQUEST_TASKS]
    in_flight: set[asyncio.Task[Any]] = set(tasks)
    grace = holder.current.config.server.shutdown_grace_secs

    async def close() -> None:
        try:
            if in_flight:
                await asyncio.wait(in_flight, timeout=grace)
        finally:
            # Also when shutdown cancels the wait: the chain is closed either way.
            await chain.aclose()

    task = asyncio.create_task(close(), name="angos-retire-authenticators")
    holder.retiring.add(task)
    task.add_done_callback(holder.retiring.discard)


async def close_retiring(app: web.Application) -> None:
    """At shutdown: the old chains close now (their requests were drained)."""
    holder = app[LIVE]
    for task in list(holder.retiring):
        task.cancel()
    for task in list(holder.retiring):
        await asyncio.gather(task, return_exceptions=True)


def _one_line(exc: BaseException) -> str:
    return "; ".join(str(exc).splitlines()) or type(exc).__name__


async def reload_from(app: web.Application, load: ConfigLoader) -> bool:
    """SIGHUP: load the config again and swap it in; one log line either way, and
    ``angos_config_reloads_total{result}`` counted. Whether it was applied."""
    from angos_core.http.metrics import METRICS

    metrics = app[METRICS]
    source = app[LIVE].current.config.source
    try:
        new = await asyncio.to_thread(load)
        changed = await reload(app, new, metrics.observe_auth)
    except (AngosError, ReloadRefused) as exc:
        metrics.config_reloaded("failure")
        log.error("config reload refused, still serving the previous config: %s", _one_line(exc))
        return False
    metrics.config_reloaded("success")
    log.info("config reloaded from %s: changed %s", source, changed)
    return True
