"""What handlers share: the app key holding the registry, and small header helpers."""

from __future__ import annotations

from aiohttp import web

from angos_core.config import ServerConfig
from angos_core.identity import Identity
from angos_core.registry import Registry

REGISTRY: web.AppKey[Registry] = web.AppKey("angos_registry", Registry)
#: The ``[server]`` settings (timeouts) the handlers read.
SERVER: web.AppKey[ServerConfig] = web.AppKey("angos_server", ServerConfig)
#: The authenticated caller (absent: anonymous); set by angos_core.http.auth.
IDENTITY: web.RequestKey[Identity] = web.RequestKey("angos_identity", Identity)


#: ``[True]`` once a graceful shutdown has begun. A list: a running app is frozen (no new
#: keys), the list's content is not.
_SHUTTING_DOWN: web.AppKey[list[bool]] = web.AppKey("angos_shutting_down", list)


def registry(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def track_shutdown(app: web.Application) -> None:
    """Give ``app`` its shutting-down flag, raised by :func:`mark_shutting_down` (``angos
    serve`` when its drain starts) or else by aiohttp's ``on_shutdown`` (other runners)."""
    app[_SHUTTING_DOWN] = [False]

    async def on_shutdown(app: web.Application) -> None:
        mark_shutting_down(app)

    app.on_shutdown.append(on_shutdown)


def mark_shutting_down(app: web.Application) -> None:
    app[_SHUTTING_DOWN][0] = True


def shutting_down(app: web.Application) -> bool:
    """Whether a graceful shutdown has begun: ``/readyz`` answers 503, connections close
    after their response."""
    return app.get(_SHUTTING_DOWN, [False])[0]


def upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def upload_range(size: int) -> str:
    # Distribution answers "0-0" for an empty session, and docker expects that.
    return f"0-{max(size - 1, 0)}"


#: More decimal digits than any byte offset has: a longer number is "past any blob", and
#: never handed to ``int()`` (which refuses more than 4,300 digits with a ValueError).
_MAX_OFFSET_DIGITS = 18
BEYOND_ANY_OFFSET: int = 10**_MAX_OFFSET_DIGITS


def byte_offset(digits: str) -> int:
    """An ASCII decimal from a Range or Content-Range header, saturated at
    ``BEYOND_ANY_OFFSET`` (leading zeros are not significant)."""
    significant = digits.lstrip("0")
    if len(significant) > _MAX_OFFSET_DIGITS:
        return BEYOND_ANY_OFFSET
    return int(significant or "0")
