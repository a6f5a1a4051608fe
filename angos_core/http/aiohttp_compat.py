"""The aiohttp internals Angos relies on, kept in this one module.

Each function names what it reads and why no public API gives it, so an aiohttp upgrade
that moves something breaks here, visibly, and nowhere else.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web_protocol, web_server
from aiohttp.web_request import BaseRequest


def rejected_by_parser(request: BaseRequest) -> bool:
    """aiohttp answered this request itself, with 400, because its HTTP parser refused the
    bytes (TLS on the plain port, a malformed request line or header).

    Such a request is aiohttp's placeholder message (method ``UNKNOWN``, path ``/``), not
    anything the client sent; ``BaseRequest.message`` is deprecated, so the private
    ``_message`` is compared with aiohttp's ``web_protocol.ERROR``.
    """
    return getattr(request, "_message", None) is web_protocol.ERROR


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
