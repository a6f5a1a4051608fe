"""An upstream for pull-through tests: a proxy in front of a real registry that counts the
requests it forwards, can ask for Basic credentials or run the Docker token flow itself,
answer a status instead of forwarding, or cut a blob transfer half way."""

from __future__ import annotations

import base64
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

PASSTHROUGH_HEADERS = ("Content-Type", "Content-Length", "Docker-Content-Digest", "ETag")


@dataclass
class Faults:
    #: Answer this status (with ``retry_after`` if set) to the next ``times`` requests.
    status: int | None = None
    times: int = 0
    retry_after: str | None = None
    #: Cut the connection of the next blob GET after this many body bytes (once).
    cut_blob_after: int | None = None
    #: Send this as every manifest's ``Docker-Content-Digest``.
    manifest_digest: str | None = None


@dataclass
class UpstreamProxy:
    target: str
    #: ``basic``: 401 with a Basic challenge until these credentials come; ``token``: the
    #: Docker token flow, the token service (``/token``) asking for them.
    auth: str | None = None
    username: str = "puller"
    password: str = "s3cret-pw"
    token_secs: int = 300
    faults: Faults = field(default_factory=Faults)
    #: ``(method, path)`` of every registry request that reached the target.
    forwarded: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Scopes of the tokens issued.
    token_scopes: list[str] = field(default_factory=list)
    #: Every Authorization header seen, for asserting none leaked elsewhere.
    url: str = ""
    _tokens: set[str] = field(default_factory=set)

    def blob_gets(self, digest: str) -> int:
        return sum(n for (m, p), n in self.forwarded.items() if m == "GET" and p.endswith(digest))

    def _basic_ok(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    async def token(self, request: web.Request) -> web.Response:
        if not self._basic_ok(request):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        token = secrets.token_hex(16)
        self._tokens.add(token)
        self.token_scopes.append(request.query.get("scope", ""))
        return web.json_response({"token": token, "expires_in": self.token_secs})

    async def registry(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self.auth == "basic" and not self._basic_ok(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="up"'})
        if self.auth == "token":
            header = request.headers.get("Authorization", "")
            if not (header.startswith("Bearer ") and header[7:] in self._tokens):
                repo = path.removeprefix("/v2/").rsplit("/", 2)[0]
                challenge = (
                    f'Bearer realm="{self.url}/token",service="proxy",'
                    f'scope="repository:{repo}:pull"'
                )
                return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        faults = self.faults
        if faults.status is not None and faults.times > 0:
            faults.times -= 1
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            return web.Response(status=faults.status, headers=headers)
        self.forwarded[(request.method, path)] += 1
        async with (
            ClientSession() as session,
            session.request(
                request.method,
                self.target + path,
                headers={"Accept": request.headers.get("Accept", "*/*")},
            ) as upstream,
        ):
            headers = {h: upstream.headers[h] for h in PASSTHROUGH_HEADERS if h in upstream.headers}
            if faults.manifest_digest is not None and "/manifests/" in path:
                headers["Docker-Content-Digest"] = faults.manifest_digest
            response = web.StreamResponse(status=upstream.status, headers=headers)
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            cut = faults.cut_blob_after if "/blobs/" in path else None
            sent = 0
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                if cut is not None and sent + len(chunk) > cut:
                    faults.cut_blob_after = None
                    await response.write(chunk[: cut - sent])
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
            return response


@asynccontextmanager
async def running(proxy: UpstreamProxy) -> AsyncIterator[UpstreamProxy]:
    """Serve ``proxy`` on a loopback port until the block ends (``proxy.url`` is set)."""
    app = web.Application()
    app.router.add_get("/token", proxy.token)
    app.router.add_route("*", "/v2/{tail:.*}", proxy.registry)
    server = TestServer(app)
    await server.start_server()
    proxy.url = str(server.make_url("")).rstrip("/")
    try:
        yield proxy
    finally:
        await server.close()


def upstream_toml(
    namespace: str, *urls: str, extra: str = "", creds: tuple[str, str] | None = None
) -> str:
    """``[repository."<namespace>"]`` caching ``urls`` in order."""
    text = f'[repository."{namespace}"]\n{extra}\n'
    for url in urls:
        text += f'[[repository."{namespace}".upstream]]\nurl = "{url}"\n'
        if creds is not None:
            text += f'username = "{creds[0]}"\npassword = "{creds[1]}"\n'
    return text
