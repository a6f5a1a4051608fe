"""A local OIDC issuer for tests: OpenID discovery and a JWKS over HTTP on loopback.

Fixture (registered by :mod:`angos_core.testing.pytest_plugin`):

``oidc_issuer`` (function scope) -> :class:`OidcIssuer`
    A started issuer with one RS256 and one ES256 key, stopped at teardown.

The server runs on its own event loop in a thread, so it serves an in-process app (the
test's loop), an ``angos serve`` subprocess and a docker daemon alike, and the test drives it
with plain calls:

- ``issuer.token(sub="ci", aud="registry", alg="ES256", **claims)`` signs a token (``iss``,
  ``iat``, ``nbf`` and ``exp`` filled in unless given; pass ``None`` to leave one out);
  ``headers=`` overrides header fields (a made-up ``kid``), ``key_id=`` picks a key;
- ``issuer.unsigned_token(...)`` (``alg: none``) and ``issuer.hs256_with_public_key(...)``
  (the public key's PEM as HMAC secret) are the classic forgeries;
- ``issuer.rotate("RS256")`` replaces that algorithm's key (the old one leaves the JWKS unless
  ``keep_old``); ``issuer.jwks_requests`` / ``discovery_requests`` count what was served;
- ``issuer.stop()`` / ``issuer.start()`` (same port), or ``with issuer.down():``, take it
  offline; ``issuer.jwks_status = 500`` makes the JWKS endpoint fail while discovery works,
  ``issuer.jwks_override = {...}`` serves that document instead of the keys.

Needs PyJWT with cryptography (``angos-core[testing]``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

_UNSET: Any = object()


@dataclass
class _Key:
    kid: str
    alg: str
    private: Any
    public_jwk: dict[str, Any]

    @property
    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def _make_key(alg: str) -> _Key:
    if alg.startswith(("RS", "PS")):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        algorithm: Any = jwt.algorithms.RSAAlgorithm
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        algorithm = jwt.algorithms.ECAlgorithm
    else:
        raise ValueError(f"the test issuer signs RS*, PS* and ES256, not {alg}")
    public_jwk = json.loads(algorithm.to_jwk(private.public_key()))
    kid = hashlib.sha256(json.dumps(public_jwk, sort_keys=True).encode()).hexdigest()[:16]
    public_jwk.update(kid=kid, alg=alg, use="sig")
    return _Key(kid=kid, alg=alg, private=private, public_jwk=public_jwk)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OidcIssuer:
    """One issuer at ``http://127.0.0.1:<port>`` (its ``issuer`` URL, also the ``iss``)."""

    def __init__(self, algorithms: tuple[str, ...] = ("RS256", "ES256")) -> None:
        self.port = _free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.jwks_uri = f"{self.issuer}/jwks"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.jwks_requests = 0
        self.discovery_requests = 0
        #: Status the JWKS endpoint answers with (200: the keys).
        self.jwks_status = 200
        #: Served instead of the keys when set (a malformed document, a broken key).
        self.jwks_override: Any = None
        self._lock = threading.Lock()
        self._signing: dict[str, _Key] = {}  # alg -> the key new tokens are signed with
        self._published: dict[str, _Key] = {}  # kid -> key, in the JWKS
        for alg in algorithms:
            self.rotate(alg)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ keys and tokens

    def rotate(self, alg: str = "RS256", *, keep_old: bool = False) -> str:
        """A new signing key for ``alg``; returns its kid."""
        key = _make_key(alg)
        with self._lock:
            old = self._signing.get(alg)
            if old is not None and not keep_old:
                self._published.pop(old.kid, None)
            self._signing[alg] = key
            self._published[key.kid] = key
        return key.kid

    def kid(self, alg: str = "RS256") -> str:
        return self._signing[alg].kid

    def public_pem(self, alg: str = "RS256") -> bytes:
        return self._signing[alg].public_pem

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.public_jwk for k in self._published.values()]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Default claims (valid for five minutes) with ``overrides``; a None drops one."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "test-subject",
            "aud": "angos",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        *,
        alg: str = "RS256",
        headers: dict[str, Any] | None = None,
        key_id: str | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with ``alg``'s current key (or the published key ``key_id``)."""
        key = self._published[key_id] if key_id is not None else self._signing[alg]
        header = {"kid": key.kid, **(headers or {})}
        return jwt.encode(self.claims(**claims), key.private, algorithm=key.alg, headers=header)

    def unsigned_token(self, **claims: Any) -> str:
        """``alg: none``, no signature."""

        def b64(data: dict[str, Any]) -> str:
            raw = json.dumps(data, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        header = {"alg": "none", "typ": "JWT", "kid": self.kid("RS256")}
        return f"{b64(header)}.{b64(self.claims(**claims))}."

    def hs256_with_public_key(self, **claims: Any) -> str:
        """HS256 with the RS256 key's public PEM as the secret (the algorithm confusion)."""
        import hmac

        def b64(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        header = {"alg": "HS256", "typ": "JWT", "kid": self.kid("RS256")}
        signing_input = (
            f"{b64(json.dumps(header).encode())}.{b64(json.dumps(self.claims(**claims)).encode())}"
        )
        mac = hmac.new(self.public_pem("RS256"), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"

    # ------------------------------------------------------------------ serving

    async def _discovery(self, request: web.Request) -> web.Response:
        with self._lock:
            self.discovery_requests += 1
        return web.json_response(
            {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri,
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": sorted(self._signing),
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        with self._lock:
            self.jwks_requests += 1
        if self.jwks_status != 200:
            return web.Response(status=self.jwks_status, text="unavailable")
        if self.jwks_override is not None:
            return web.json_response(self.jwks_override)
        return web.json_response(self.jwks())

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        return app

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def start(self) -> None:
        """Serve (no-op if serving), on the same port after a ``stop``."""
        if self._runner is not None:
            return
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="oidc-issuer", daemon=True
            )
            self._thread.start()

        async def up() -> web.AppRunner:
            runner = web.AppRunner(self._app())
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
            return runner

        self._runner = self._call(up())

    def stop(self) -> None:
        """Stop serving: connections are refused until ``start``."""
        if self._runner is not None:
            self._call(self._runner.cleanup())
            self._runner = None

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    def close(self) -> None:
        self.stop()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._loop.close()
            self._loop = None


@pytest.fixture
def oidc_issuer() -> Iterator[OidcIssuer]:
    issuer = OidcIssuer()
    issuer.start()
    try:
        yield issuer
    finally:
        issuer.close()
