"""The webhook authorizer: each ``[auth.webhook.<name>]`` asked over HTTP, as Angos in Rust
asks its authorization webhooks.

The request is ``GET <url>`` with no body; what is asked is in headers (Angos's names):
``X-Registry-Action``, ``X-Registry-Namespace``, ``X-Registry-Reference``,
``X-Registry-Digest``, and this registry's ``X-Registry-Tags`` (a push's tags, comma
separated) and ``X-Registry-From`` (a mount's source); who asks in ``X-Forwarded-For`` (the
client address), ``X-Registry-Username``, ``X-Registry-Identity-ID``,
``X-Registry-Provider``, ``X-Registry-Certificate-CN`` and ``X-Registry-Certificate-O`` (one
header per value). Never the client's credentials. The answer is its status: 2xx allows,
anything else (a redirect included: none is followed) denies; the body is read, at most
:data:`MAX_BODY` bytes, and ignored.

Fail closed: a timeout (``timeout_ms`` for the whole exchange), a connection error, a
response that is not HTTP or is cut short, or a request field no header can carry denies,
with a warning naming the webhook (never its URL, which might hold a token, nor its
credentials). Those failures are not cached, so an outage does not outlive itself; answers
are, per request shape (the identity, the client address and the policy request, the
inputs the access policies decide on), for ``cache_ttl`` seconds, at most
:data:`CACHE_ENTRIES` per webhook, and concurrent identical questions share one request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping

import aiohttp
from multidict import CIMultiDict

from angos_auth_webhook.config import WebhookConfig
from angos_core.authorization import AuthorizerDecision
from angos_core.identity import Identity, identity_key
from angos_core.policy.actions import PUT_MANIFEST, PolicyRequest

log = logging.getLogger("angos.auth.webhook")

#: Answers remembered per webhook; the oldest is forgotten first beyond this.
CACHE_ENTRIES = 10_000
#: The clock cache expiry reads (tests move it).
clock = time.monotonic
#: A webhook's answer body is read up to this and ignored; a longer one is malformed.
MAX_BODY = 64 * 1024


class Unsendable(ValueError):
    """A request field no HTTP header can carry (a control character)."""


def _value(text: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise Unsendable("a request field holds a control character")
    return text


def request_headers(
    identity: Identity | None, client_ip: str, request: PolicyRequest
) -> CIMultiDict[str]:
    """The headers that ask one webhook about ``request`` (see the module docstring)."""
    headers: CIMultiDict[str] = CIMultiDict()
    if client_ip:
        headers["X-Forwarded-For"] = _value(client_ip)
    headers["X-Registry-Action"] = request.action
    reference = request.reference
    if reference is None and request.action == PUT_MANIFEST:
        # Angos sends the pushed reference: the path's tag, or the digest.
        reference = request.digest or (request.tags[0] if request.tags else None)
    for name, value in (
        ("X-Registry-Namespace", request.namespace),
        ("X-Registry-Reference", reference),
        ("X-Registry-Digest", request.digest),
        ("X-Registry-From", request.from_),
    ):
        if value is not None:
            headers[name] = _value(value)
    if request.tags:
        headers["X-Registry-Tags"] = _value(",".join(request.tags))
    if identity is not None:
        headers["X-Registry-Username"] = _value(identity.username)
        headers["X-Registry-Identity-ID"] = _value(identity.id)
        headers["X-Registry-Provider"] = _value(identity.provider)
        certificate = identity.certificate
        if certificate is not None:
            for cn in certificate.common_names:
                headers.add("X-Registry-Certificate-CN", _value(cn))
            for org in certificate.organizations:
                headers.add("X-Registry-Certificate-O", _value(org))
    return headers


class Webhook:
    """One ``[auth.webhook.<name>]`` entry: its requests and its cache."""

    def __init__(self, name: str, config: WebhookConfig) -> None:
        self.name = name
        self.config = config
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_ms / 1000)
        self._auth: str | None = None
        if config.bearer_token is not None:
            self._auth = f"Bearer {config.bearer_token}"
        elif config.basic_auth is not None:
            pair = f"{config.basic_auth.username}:{config.basic_auth.password}"
            self._auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        self._cache: OrderedDict[object, tuple[float, AuthorizerDecision]] = OrderedDict()
        self._asking: dict[object, asyncio.Future[AuthorizerDecision]] = {}
        #: Requests sent to the webhook (tests and metrics read it).
        self.requests_sent = 0

    async def decide(
        self,
        session: aiohttp.ClientSession,
        identity: Identity | None,
        client_ip: str,
        request: PolicyRequest,
    ) -> AuthorizerDecision:
        key = (identity_key(identity), client_ip, request)
        if self.config.cache_ttl:
            hit = self._cache.get(key)
            if hit is not None:
                if hit[0] > clock():
                    return hit[1]
                del self._cache[key]
        asking = self._asking.get(key)
        if asking is None:
            asking = asyncio.ensure_future(self._ask(session, key, identity, client_ip, request))
            self._asking[key] = asking
            asking.add_done_callback(lambda _: self._asking.pop(key, None))
        # Shielded: one caller going away does not cancel the answer the others wait for.
        return await asyncio.shield(asking)

    async def _ask(
        self,
        session: aiohttp.ClientSession,
        key: object,
        identity: Identity | None,
        client_ip: str,
        request: PolicyRequest,
    ) -> AuthorizerDecision:
        try:
            headers = request_headers(identity, client_ip, request)
        except Unsendable as exc:
            return self._failed(str(exc))
        if self._auth is not None:
            headers["Authorization"] = self._auth
        self.requests_sent += 1
        try:
            async with session.get(
                self.config.url, headers=headers, allow_redirects=False, timeout=self._timeout
            ) as response:
                status = response.status
                size = 0
                async for chunk in response.content.iter_chunked(16 * 1024):
                    size += len(chunk)
                    if size > MAX_BODY:
                        return self._failed(f"answered a body over {MAX_BODY} bytes")
        except TimeoutError:
            return self._failed(f"did not answer within {self.config.timeout_ms} ms")
        except aiohttp.ClientError as exc:
            # The type only: aiohttp's messages quote the URL.
            return self._failed(f"request failed ({type(exc).__name__})")
        if 200 <= status < 300:
            decision = AuthorizerDecision(True, f"allowed by webhook {self.name!r} (HTTP {status})")
        else:
            decision = AuthorizerDecision(False, f"denied by webhook {self.name!r} (HTTP {status})")
        if self.config.cache_ttl:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.popitem(last=False)
            self._cache[key] = (clock() + self.config.cache_ttl, decision)
        return decision

    def _failed(self, problem: str) -> AuthorizerDecision:
        reason = f"webhook {self.name!r} {problem}; denied (fail closed)"
        log.warning("authorization %s", reason)
        return AuthorizerDecision(False, reason)


class WebhookAuthorizer:
    """Every ``[auth.webhook.<name>]`` entry as one authorizer: each is asked in file order,
    and the first that denies decides."""

    name = "webhook"

    def __init__(self, entries: Mapping[str, WebhookConfig]) -> None:
        self.webhooks = tuple(Webhook(name, config) for name, config in entries.items())
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            # No proxies from the environment: the webhook is asked directly.
            self._session = aiohttp.ClientSession(trust_env=False)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def authorize(
        self, identity: Identity | None, client_ip: str, request: PolicyRequest
    ) -> AuthorizerDecision:
        if self._session is None:
            await self.open()
        assert self._session is not None
        decision = AuthorizerDecision(True, "allowed: no webhook is configured")
        for webhook in self.webhooks:
            decision = await webhook.decide(self._session, identity, client_ip, request)
            if not decision.allowed:
                return decision
        return decision
