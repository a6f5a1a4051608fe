"""The aiohttp application factory.

``make_app(config)`` returns an application whose backends are built, wrapped and opened
when the app starts (a ``cleanup_ctx``) and closed when it stops. Tests build one from a TOML
text with ``make_app_from_toml``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web

from angos_core.config import AngosConfig, load_toml, parse_config
from angos_core.http.context import REGISTRY
from angos_core.http.errors import error_middleware
from angos_core.http.routes import add_routes
from angos_core.plugins import load_catalogue
from angos_core.registry import Registry, Stores
from angos_core.registry.wrappers import Observer

log = logging.getLogger("angos")

CONFIG: web.AppKey[AngosConfig] = web.AppKey("angos_config", AngosConfig)
API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")


async def _api_version(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]


def make_app(
    config: AngosConfig,
    *,
    observer: Observer | None = None,
    stores: Stores | None = None,
) -> web.Application:
    """The registry application for ``config``.

    ``observer`` receives every backend call (the metrics seam, see
    :mod:`angos_core.registry.wrappers`). ``stores`` replaces the configured backends
    (tests); they are still opened and closed with the app.
    """
    app = web.Application(middlewares=[error_middleware])
    app[CONFIG] = config
    app.on_response_prepare.append(_api_version)

    async def backends(app: web.Application) -> AsyncIterator[None]:
        built = stores if stores is not None else Stores.from_config(config, observer)
        await built.open()
        app[REGISTRY] = Registry(built)
        log.info("angos backends open: %s (config: %s)", built.describe(), config.source)
        try:
            yield
        finally:
            await built.aclose()

    app.cleanup_ctx.append(backends)
    add_routes(app)
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
