"""The aiohttp application factory.

``make_app(config)`` returns an application whose backends are built, wrapped and opened
when the app starts (a ``cleanup_ctx``) and closed when it stops. Tests build one from a TOML
text with ``make_app_from_toml``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any

from aiohttp import web

from angos_core.auth.authorizers import Authorizers
from angos_core.config import AngosConfig, load_toml, parse_config
from angos_core.http.auth import auth_middleware
from angos_core.http.body_budget import BODY_BUDGET, DEFAULT_BODY_BUDGET_BYTES, BodyBudget
from angos_core.http.context import REGISTRY, SERVER, track_shutdown
from angos_core.http.errors import error_middleware
from angos_core.http.health import add_health_routes
from angos_core.http.live import LIVE, Live, LiveSettings, close_retiring
from angos_core.http.metrics import METRICS, Metrics, metrics_handler
from angos_core.http.observe import (
    REQUEST_TASKS,
    AccessLogger,
    access_log,
    add_request_id_header,
    observe_middleware,
)
from angos_core.http.policy import AUTHORIZERS, policy_middleware
from angos_core.http.pull_through import pull_through_middleware
from angos_core.http.rejected import server_log
from angos_core.http.routes import add_routes
from angos_core.http.token_handlers import add_token_routes
from angos_core.plugins import load_catalogue
from angos_core.registry import Registry, Stores, UploadSessionLimits
from angos_core.registry.pull_through import CachedNamespace
from angos_core.registry.wrappers import Observer
from angos_core.upstream import Upstreams

log = logging.getLogger("angos")

CONFIG: web.AppKey[AngosConfig] = web.AppKey("angos_config", AngosConfig)
API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")


async def _api_version(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]


def upload_limits(config: AngosConfig) -> UploadSessionLimits | None:
    """The per-process bound on open upload sessions (``[global]``), or None if off."""
    settings = config.global_
    per_repository = settings.max_upload_sessions_per_repository
    per_client = settings.max_upload_sessions_per_client
    if not (per_repository or per_client):
        return None
    window = config.maintenance.upload_purging.empty_age_secs
    return UploadSessionLimits(per_repository, per_client, window)


def cached_namespaces(config: AngosConfig, upstreams: Upstreams) -> dict[str, CachedNamespace]:
    """The pull-through namespaces of ``[repository."<ns>"]``, over opened ``upstreams``."""
    return {
        namespace: CachedNamespace(namespace, clients, config.repositories[namespace].tag_ttl_secs)
        for namespace, clients in upstreams.clients.items()
    }


@contextlib.asynccontextmanager
async def _running(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """A background task for the life of a ``cleanup_ctx`` step, cancelled at its end."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_app(
    config: AngosConfig,
    *,
    observer: Observer | None = None,
    stores: Stores | None = None,
    maintenance: bool = True,
) -> web.Application:
    """The registry application for ``config``.

    ``observer`` receives every backend call besides the app's own metrics (see
    :mod:`angos_core.registry.wrappers`). ``stores`` replaces the configured backends
    (tests); they are still opened and closed with the app. ``maintenance=False`` leaves
    out the background work of ``[maintenance]`` (upload purging): ``angos serve --workers
    N`` runs it in one worker only.
    """
    server = config.server
    # Auth and policy always: a reload may turn authentication or a policy on (each passes
    # a request straight through while its live settings have nothing to do). The auth
    # middleware inside the error middleware, so a 429 of the failure limit gets its
    # Retry-After; the policy's inside it: the identity is known.
    middlewares = [observe_middleware, error_middleware]
    if any(r.upstream for r in config.repositories.values()):
        # Before auth and policy: they see the repository a containerd mirror's ``?ns=``
        # names, and a write to a cached namespace is refused whoever sends it.
        middlewares.append(pull_through_middleware)
    middlewares += [auth_middleware, policy_middleware]
    app = web.Application(
        middlewares=middlewares,
        # Passed to aiohttp's request handler by whichever runner serves the app.
        handler_args={
            "access_log_class": AccessLogger,
            "access_log": access_log,
            # Requests aiohttp's parser rejects: one line each, not an ERROR traceback.
            "logger": server_log(),
            "keepalive_timeout": server.keepalive_timeout_secs,
            # aiohttp pauses a socket once twice this waits unread: the part of each
            # upload in flight outside the body budget (docs/operations.md, "Upload memory").
            "read_bufsize": 16 * 1024,
        },
    )
    app[CONFIG] = config
    metrics = app[METRICS] = Metrics()
    # Built once at startup (a reload does not change them); opened with the stores.
    app[AUTHORIZERS] = Authorizers.from_config(
        config.selected("authorizer"), metrics.observe_backend
    )
    app[SERVER] = server
    app[BODY_BUDGET] = BodyBudget(DEFAULT_BODY_BUDGET_BYTES)
    app[REQUEST_TASKS] = set()
    track_shutdown(app)
    app.on_response_prepare.append(_api_version)

    async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
        # Before aiohttp's own default ("Python/3.x aiohttp/3.x"), which it only sets if absent.
        response.headers["Server"] = server.server_header

    app.on_response_prepare.append(_server_header)
    app.on_response_prepare.append(add_request_id_header)

    def observe(kind: str, backend: str, op: str, secs: float, error: str | None) -> None:
        metrics.observe_backend(kind, backend, op, secs, error)
        if observer is not None:
            observer(kind, backend, op, secs, error)

    async def backends(app: web.Application) -> AsyncIterator[None]:
        built = stores if stores is not None else Stores.from_config(config, observe, live=True)
        await built.open()
        upstreams = Upstreams(config.repositories)
        await upstreams.open()
        reg = app[REGISTRY] = Registry(
            built,
            upload_limits(config),
            config.immutable_tags,
            pull_through=cached_namespaces(config, upstreams),
            pull_observer=metrics.observe_pull_through,
        )
        reg.writes.set(app[LIVE].current.read_only)
        if reg.writes.read_only:
            log.warning("angos is read-only ([maintenance.read_only]): every write is refused")
        log.info("angos backends open: %s (config: %s)", built.describe(), config.source)
        try:
            yield
        finally:
            # Fetches in flight first: they write to the stores and read the upstreams.
            await reg.pull_through.aclose()
            await upstreams.aclose()
            await built.aclose()

    async def upload_purging(app: web.Application) -> AsyncIterator[None]:
        # After ``backends`` in cleanup_ctx: started once the stores are open, cancelled at
        # shutdown before they close. A background task, so startup and /readyz never wait
        # for a pass.
        settings = config.maintenance.upload_purging
        if not (maintenance and settings.enabled):
            yield
            return
        purger = app[REGISTRY].upload_purger(settings, observer=metrics)
        async with _running(purger.run_forever(), "angos-upload-purge"):
            yield

    # What a reload may swap (angos_core.http.live); authenticators built, opened below.
    holder = app[LIVE] = Live(LiveSettings.build(config, metrics.observe_auth))
    if holder.current.minter is not None:
        add_token_routes(app)

    async def authenticators(app: web.Application) -> AsyncIterator[None]:
        # After ``backends``: an authenticator may use the cache.
        chain = holder.current.chain
        if chain is not None:
            await chain.open(app[REGISTRY].stores.cache)
            log.info("angos authenticators open: %s", ", ".join(chain.names()))
        try:
            yield
        finally:
            # The chains replaced by reloads, then the one serving now.
            await close_retiring(app)
            current = holder.current.chain
            if current is not None:
                await current.aclose()

    async def opened_authorizers(app: web.Application) -> AsyncIterator[None]:
        # After the stores, like the authenticators; closed before them.
        built = app.get(AUTHORIZERS)
        if not built:
            yield
            return
        await built.open()
        log.info("angos authorizers open: %s", ", ".join(built.names()))
        try:
            yield
        finally:
            await built.aclose()

    async def scheduled_gc(app: web.Application) -> AsyncIterator[None]:
        # As upload purging: one worker, started once the stores are open.
        settings = config.maintenance.gc
        if not (maintenance and settings.interval_secs > 0):
            yield
            return
        # The collector (and prune's, below) is imported when scheduled, not in every server.
        from angos_core.registry.gc import collect_forever

        collecting = collect_forever(
            app[REGISTRY], settings, metrics.gc_finished, paused=lambda: holder.current.read_only
        )
        async with _running(collecting, "angos-gc"):
            yield

    async def scheduled_prune(app: web.Application) -> AsyncIterator[None]:
        # As gc: one worker, once the stores are open. A run overlapping a gc's waits for
        # the next interval (both hold gc:collector).
        settings = config.maintenance.prune
        if not (maintenance and settings.interval_secs > 0):
            yield
            return
        from angos_core.registry.prune import prune_forever

        pruning = prune_forever(
            app[REGISTRY], config.retention, settings, paused=lambda: holder.current.read_only
        )
        async with _running(pruning, "angos-prune"):
            yield

    async def pull_times(app: web.Application) -> AsyncIterator[None]:
        # After ``backends``: the last pulls are written before the stores close.
        async with _running(app[REGISTRY].times.flush_forever(), "angos-pull-times"):
            yield

    app.cleanup_ctx.append(backends)
    app.cleanup_ctx.append(pull_times)
    app.cleanup_ctx.append(authenticators)
    app.cleanup_ctx.append(opened_authorizers)
    app.cleanup_ctx.append(upload_purging)
    app.cleanup_ctx.append(scheduled_gc)
    app.cleanup_ctx.append(scheduled_prune)
    add_routes(app)
    add_health_routes(app, server.health_timeout_secs)
    app.router.add_get("/metrics", metrics_handler, name="metrics")
    return app


def config_from_toml(
    source: str | dict[str, Any], extra_plugins: Iterable[object] = ()
) -> AngosConfig:
    """Parse a TOML text (or an already-loaded dict) against the installed plugins."""
    data = load_toml(source, "<string>") if isinstance(source, str) else source
    return parse_config(data, load_catalogue(extra_plugins), source="<string>")


def make_app_from_toml(
    source: str | dict[str, Any],
    extra_plugins: Iterable[object] = (),
    *,
    observer: Observer | None = None,
) -> web.Application:
    """``make_app`` for a config given as TOML text or a dict; ``extra_plugins`` are plugin
    objects registered beside the installed entry points (tests use it for fakes)."""
    return make_app(config_from_toml(source, extra_plugins), observer=observer)
