"""The aiohttp internals Angos relies on, kept in this one module.

Each function names what it reads and why no public API gives it, so an aiohttp upgrade
that moves something breaks here, visibly, and nowhere else.
"""

from __future__ import annotations

from typing import IO, Any

from aiohttp import web, web_protocol, web_server
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest
from aiohttp.web_urldispatcher import UrlMappingMatchInfo


def rejected_by_parser(request: BaseRequest) -> bool:
    """aiohttp answered this request itself, with 400, because its HTTP parser refused the
    bytes (TLS on the plain port, a malformed request line or header).

    Such a request is aiohttp's placeholder message (method ``UNKNOWN``, path ``/``), not
    anything the client sent; ``BaseRequest.message`` is deprecated, so the private
    ``_message`` is compared with aiohttp's ``web_protocol.ERROR``.
    """
    return getattr(request, "_message", None) is web_protocol.ERROR


def match_info_if_routed(request: BaseRequest) -> UrlMappingMatchInfo | None:
    """The request's match info, or None before routing (``request.match_info`` would
    raise for a request aiohttp rejected as malformed HTTP, which never reached the router).
    """
    match_info = getattr(request, "_match_info", None)
    return match_info if isinstance(match_info, UrlMappingMatchInfo) else None


class SendfileFileResponse(web.FileResponse):
    """``web.FileResponse`` whose body transfer (after Range and conditional handling) is
    :meth:`send_body`, which a subclass overrides; :meth:`aiohttp_send_body` is aiohttp's own.
    aiohttp exposes this step only as the private ``_sendfile``."""

    async def _sendfile(
        self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        return await self.send_body(request, fobj, offset, count)

    async def send_body(
        self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        return await self.aiohttp_send_body(request, fobj, offset, count)

    async def aiohttp_send_body(
        self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        return await super()._sendfile(request, fobj, offset, count)


def request_in_progress(handler: web_protocol.RequestHandler) -> bool:
    """The connection is handling a request (not idle between keep-alive requests, nor
    still waiting for a request's headers).

    No public API says so; ``RequestHandler._request_in_progress`` is what aiohttp's own
    shutdown uses. Unknown (attribute gone) counts as busy, so nothing is closed by mistake.
    """
    return getattr(handler, "_request_in_progress", True) is not False


def server_settings(server: web_server.Server) -> dict[str, Any]:
    """The keyword arguments (``handler_args`` and the runner's) a ``web.Server`` passes to
    each ``RequestHandler``, to build an equivalent one: ``Server._kwargs``."""
    settings: dict[str, Any] = server._kwargs
    return settings
