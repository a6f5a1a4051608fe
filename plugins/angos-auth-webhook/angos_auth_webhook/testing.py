"""A real authorization webhook (an aiohttp server on loopback), for tests of the webhook
and of whatever is configured with one: it records every request and answers as told.

``policy(headers) -> status`` decides each answer (default: 200); ``mode`` switches to a
failure: ``slow`` (answers after ``delay`` seconds), ``garbage`` (bytes that are not HTTP),
``truncated`` (a 200 whose body stops short), ``huge`` (a 200 with a body over the limit),
``redirect`` (a 302 to an allowing URL). :meth:`stop` closes the port (connection refused).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Literal

from aiohttp import web

from angos_auth_webhook.authorizer import MAX_BODY

Mode = Literal["answer", "slow", "garbage", "truncated", "huge", "redirect"]


class WebhookServer:
    def __init__(self, policy: Callable[[Mapping[str, str]], int] | None = None) -> None:
        self.policy = policy or (lambda headers: 200)
        self.mode: Mode = "answer"
        self.delay = 5.0
        #: The headers of every request, in order (names lowercased, every value kept).
        self.requests: list[dict[str, list[str]]] = []
        #: Requests to the URL a redirect points at (a webhook must never follow one).
        self.allow_hits = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/authorize"

    def count(self, action: str | None = None) -> int:
        """Requests received (for ``action`` only, when given)."""
        return sum(
            1 for r in self.requests if action is None or r.get("x-registry-action") == [action]
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/authorize", self._authorize)
        app.router.add_get("/allow", self._allow)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _allow(self, request: web.Request) -> web.StreamResponse:
        self.allow_hits += 1
        return web.Response(text="ok")

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        self.requests.append(headers)
        transport = request.transport
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        elif self.mode == "garbage" and transport is not None:
            transport.write(b"this is not HTTP at all\r\n\r\n")
            transport.close()
            return web.Response()  # never written: the connection is closed
        elif self.mode == "truncated" and transport is not None:
            response = web.StreamResponse(headers={"Content-Length": "100"})
            await response.prepare(request)
            await response.write(b"short")
            transport.close()
            return response
        elif self.mode == "huge":
            return web.Response(body=b"x" * (MAX_BODY + 1))
        elif self.mode == "redirect":
            raise web.HTTPFound("/allow")
        status = self.policy({name: values[0] for name, values in headers.items()})
        return web.Response(status=status, text="answer")
