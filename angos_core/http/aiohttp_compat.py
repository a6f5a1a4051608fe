"""The aiohttp internals Angos relies on, kept in this one module.

Each function names what it reads and why no public API gives it, so an aiohttp upgrade
that moves something breaks here, visibly, and nowhere else.
"""

from __future__ import annotations

from aiohttp import web_protocol
from aiohttp.web_request import BaseRequest


def rejected_by_parser(request: BaseRequest) -> bool:
    """aiohttp answered this request itself, with 400, because its HTTP parser refused the
    bytes (TLS on the plain port, a malformed request line or header).

    Such a request is aiohttp's placeholder message (method ``UNKNOWN``, path ``/``), not
    anything the client sent; ``BaseRequest.message`` is deprecated, so the private
    ``_message`` is compared with aiohttp's ``web_protocol.ERROR``.
    """
    return getattr(request, "_message", None) is web_protocol.ERROR
