"""One upstream registry, as a pull-through cache asks it things.

Requests carry the upstream's credentials as its challenge asks (:mod:`.auth`); a 429 is
retried with backoff, honouring ``Retry-After`` up to :data:`RETRY_AFTER_CAP_SECS`, at most
:data:`ATTEMPTS` times; any other failure is raised as :class:`UpstreamFailed` at once, so
that the caller tries the next upstream (or serves what it has cached).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import ClientResponse, ClientSession, ClientTimeout

from angos_core.config import RepositoryConfig, UpstreamConfig
from angos_core.oci import mediatypes as mt
from angos_core.upstream.auth import TokenCache, basic_header, parse_challenge

log = logging.getLogger("angos.upstream")

#: Tries of one request answered 429 (the first included).
ATTEMPTS = 3
#: Backoff before the second try when the upstream sends no ``Retry-After``; doubled after.
BACKOFF_SECS = 0.5
#: The longest wait a ``Retry-After`` gets: beyond it the client would give up on us anyway.
RETRY_AFTER_CAP_SECS = 10.0
#: Connecting, and each read of a response, may take this long.
CONNECT_TIMEOUT_SECS = 10.0
READ_TIMEOUT_SECS = 60.0
#: Blob bytes read from the upstream per chunk.
CHUNK_BYTES = 1024 * 1024
_MANIFEST_ACCEPT = ", ".join(sorted(mt.KNOWN_MANIFESTS))


class UpstreamFailed(Exception):
    """The upstream did not answer usefully; the message names it, never a secret."""


class UpstreamNotFound(Exception):
    """The upstream answered 404: it does not have the manifest or blob."""


@dataclass(frozen=True, slots=True)
class UpstreamManifest:
    body: bytes
    content_type: str | None
    #: The upstream's ``Docker-Content-Digest``, if it sent one.
    digest: str | None


@dataclass(slots=True)
class UpstreamBlob:
    """An upstream blob response being read: its size if stated, and its chunks."""

    size: int | None
    chunks: AsyncIterator[bytes]


class UpstreamClient:
    def __init__(self, config: UpstreamConfig, session: ClientSession) -> None:
        self.url = config.url
        self._username = config.username
        self._password = config.password
        self._session = session
        self._tokens = TokenCache()
        #: Whether the upstream asked for Basic: sent up front from then on.
        self._basic = False

    def __repr__(self) -> str:  # never the credentials
        return f"UpstreamClient({self.url!r})"

    # ------------------------------------------------------------------ requests

    async def head_manifest(self, path: str, reference: str) -> str | None:
        """The digest the upstream's tag names (``Docker-Content-Digest``), None if it sent
        none; :class:`UpstreamNotFound` if it has no such manifest."""
        async with self._request("HEAD", path, f"manifests/{reference}", _accept()) as resp:
            return resp.headers.get("Docker-Content-Digest")

    async def get_manifest(self, path: str, reference: str) -> UpstreamManifest:
        async with self._request("GET", path, f"manifests/{reference}", _accept()) as resp:
            try:
                body = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamFailed(
                    f"upstream {self.url} broke off a manifest: {_why(exc)}"
                ) from None
            return UpstreamManifest(
                body, resp.headers.get("Content-Type"), resp.headers.get("Docker-Content-Digest")
            )

    async def head_blob(self, path: str, digest: str) -> int | None:
        async with self._request("HEAD", path, f"blobs/{digest}", {}) as resp:
            return resp.content_length

    @asynccontextmanager
    async def get_blob(self, path: str, digest: str) -> AsyncIterator[UpstreamBlob]:
        """The blob's response, open for the block; reading it raises
        :class:`UpstreamFailed` if the transfer breaks."""
        async with self._request("GET", path, f"blobs/{digest}", {}) as resp:
            yield UpstreamBlob(resp.content_length, self._chunks(resp))

    async def _chunks(self, resp: ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamFailed(f"upstream {self.url} broke off a blob: {_why(exc)}") from None

    # ------------------------------------------------------------------ plumbing

    @asynccontextmanager
    async def _request(
        self, method: str, path: str, tail: str, headers: Mapping[str, str]
    ) -> AsyncIterator[ClientResponse]:
        url = f"{self.url}/v2/{path}/{tail}"
        scope = f"repository:{path}:pull"
        backoff = BACKOFF_SECS
        authorised = False
        for attempt in range(1, ATTEMPTS + 2):
            sent = dict(headers)
            auth = self._authorization(scope)
            if auth is not None:
                sent["Authorization"] = auth
            try:
                resp = await self._session.request(method, url, headers=sent)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise UpstreamFailed(f"upstream {self.url} unreachable: {_why(exc)}") from None
            try:
                if resp.status == 401 and not authorised:
                    # Answer the challenge once; a second 401 means our credentials are refused.
                    authorised = True
                    challenge = resp.headers.get("WWW-Authenticate", "")
                    resp.release()
                    if await self._answer(challenge, scope):
                        continue
                    raise UpstreamFailed(
                        f"upstream {self.url} wants credentials for {path}"
                        + ("" if self._username else ": set username and password for it")
                    )
                if resp.status == 429 and attempt < ATTEMPTS:
                    wait = _retry_after(resp.headers.get("Retry-After"), backoff)
                    resp.release()
                    log.info("upstream %s answered 429; retrying in %.1fs", self.url, wait)
                    await asyncio.sleep(wait)
                    backoff *= 2
                    continue
                if resp.status == 404:
                    raise UpstreamNotFound(f"upstream {self.url} has no {path} {tail}")
                if resp.status in (401, 403):
                    self._tokens.forget(scope)
                    raise UpstreamFailed(
                        f"upstream {self.url} refused our credentials for {path} ({resp.status})"
                    )
                if resp.status != 200:
                    raise UpstreamFailed(
                        f"upstream {self.url} answered {resp.status} for {path} "
                        f"{tail.split('/')[0]}"
                    )
                yield resp
                return
            finally:
                resp.release()
        raise UpstreamFailed(f"upstream {self.url} kept answering 429 for {path}")

    def _authorization(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is not None:
            return f"Bearer {token}"
        if self._basic and self._username is not None and self._password is not None:
            return basic_header(self._username, self._password)
        return None

    async def _answer(self, header: str, scope: str) -> bool:
        """Prepare credentials for a 401's challenge; False if we have none to offer."""
        challenge = parse_challenge(header)
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            self._basic = self._username is not None
            return self._basic
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return False
        realm = challenge.params["realm"]
        query = {"scope": scope}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        headers = {}
        if self._username is not None and self._password is not None:
            headers["Authorization"] = basic_header(self._username, self._password)
        try:
            async with self._session.get(realm, params=query, headers=headers) as resp:
                if resp.status != 200:
                    raise UpstreamFailed(
                        f"token service {realm} of upstream {self.url} answered {resp.status}"
                    )
                doc: Any = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise UpstreamFailed(
                f"token service {realm} of upstream {self.url} failed: {_why(exc)}"
            ) from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamFailed(f"token service {realm} of upstream {self.url} sent no token")
        expires = doc.get("expires_in")
        self._tokens.put(scope, token, float(expires) if isinstance(expires, int | float) else None)
        return True


class Upstreams:
    """The upstream clients of every pull-through namespace, over one HTTP session that
    the app opens at startup and closes at shutdown."""

    def __init__(self, repositories: Mapping[str, RepositoryConfig]) -> None:
        self._configs = {ns: r.upstream for ns, r in repositories.items() if r.upstream}
        self._session: ClientSession | None = None
        self.clients: dict[str, tuple[UpstreamClient, ...]] = {}

    async def open(self) -> None:
        if not self._configs:
            return
        self._session = ClientSession(
            timeout=ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT_SECS, sock_read=READ_TIMEOUT_SECS
            ),
            # Decompression would change the bytes a digest names.
            auto_decompress=False,
        )
        self.clients = {
            ns: tuple(UpstreamClient(c, self._session) for c in configs)
            for ns, configs in self._configs.items()
        }

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _accept() -> dict[str, str]:
    return {"Accept": _MANIFEST_ACCEPT}


def _retry_after(header: str | None, backoff: float) -> float:
    if header is not None:
        try:
            return min(max(float(header), 0.0), RETRY_AFTER_CAP_SECS)
        except ValueError:
            pass  # an HTTP date: use our own backoff
    return min(backoff, RETRY_AFTER_CAP_SECS)


def _why(exc: BaseException) -> str:
    # The exception class and its text; aiohttp's texts hold the URL, never headers.
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
