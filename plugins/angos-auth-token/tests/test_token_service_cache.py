"""A client sends one token with every request: the token service verifies it once, and
passes other issuers' JWTs on without asking PyJWT (bench/auth's Bearer rows)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from angos_auth_token import service as service_module
from angos_auth_token.claims import peek
from angos_auth_token.config import TokenServiceConfig
from angos_auth_token.service import VERIFIED_CACHE_SECS, VERIFIED_CACHE_SIZE, TokenService

from angos_core.errors import AuthenticationFailed
from angos_core.identity import Access, Credentials, Identity

SECRET = base64.b64encode(bytes(range(32))).decode()
ALICE = Identity(id="alice", username="alice", provider="identity", method="basic")
PULL_APP = Access("repository", "team/app", frozenset({"pull"}))


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(secret: str = SECRET, clock: Clock | None = None, ttl_secs: int = 300) -> TokenService:
    config = TokenServiceConfig(secret_key=secret, ttl_secs=ttl_secs)
    return TokenService(config, clock=clock or Clock())


def bearer(token: str) -> Credentials:
    return Credentials(client_ip="192.0.2.1", bearer=token)


class CountingDecode:
    """Counts PyJWT verifications made by the token service."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = jwt.decode_complete

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._real(*args, **kwargs)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> CountingDecode:
    counting = CountingDecode()
    monkeypatch.setattr(jwt, "decode_complete", counting)
    return counting


async def test_a_token_sent_again_is_verified_once(decodes: CountingDecode) -> None:
    svc = service()
    token = svc.issue(ALICE, [PULL_APP]).token
    first = await svc.authenticate(bearer(token))
    for _ in range(5):
        assert await svc.authenticate(bearer(token)) == first
    assert first is not None and first.access == (PULL_APP,)
    assert decodes.calls == 1


async def test_a_remembered_token_is_verified_again_after_60_seconds(
    decodes: CountingDecode,
) -> None:
    clock = Clock()
    svc = service(clock=clock, ttl_secs=600)
    token = svc.issue(ALICE, [PULL_APP]).token
    await svc.authenticate(bearer(token))
    clock.now += VERIFIED_CACHE_SECS + 1
    assert await svc.authenticate(bearer(token)) is not None
    assert decodes.calls == 2


async def test_remembering_never_outlives_the_token() -> None:
    clock = Clock()
    svc = service(clock=clock, ttl_secs=10)
    token = svc.issue(ALICE, [PULL_APP]).token
    assert await svc.authenticate(bearer(token)) is not None
    clock.now += 10 + 61  # past exp and the 60 s of skew, within the 60 s of remembering
    with pytest.raises(AuthenticationFailed, match="expired"):
        await svc.authenticate(bearer(token))


async def test_a_remembered_token_is_not_valid_before_its_nbf_either() -> None:
    clock = Clock()
    svc = service(clock=clock)
    token = svc.issue(ALICE, [PULL_APP]).token
    assert await svc.authenticate(bearer(token)) is not None
    clock.now -= 61  # another replica's clock, behind by more than the skew
    with pytest.raises(AuthenticationFailed, match="not valid yet"):
        await svc.authenticate(bearer(token))


async def test_a_refused_token_is_not_remembered(decodes: CountingDecode) -> None:
    other = service(base64.b64encode(bytes(range(1, 33))).decode())
    forged = other.issue(ALICE, [PULL_APP]).token
    svc = service()
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            await svc.authenticate(bearer(forged))
    assert decodes.calls == 2


async def test_the_remembered_tokens_are_bounded() -> None:
    svc = service()
    tokens = [
        svc.issue(Identity(id=f"u{i}", username=f"u{i}", provider="p", method="basic"), []).token
        for i in range(VERIFIED_CACHE_SIZE + 10)
    ]
    for token in tokens:
        await svc.authenticate(bearer(token))
    assert len(svc._verified) == VERIFIED_CACHE_SIZE


def _foreign_jwt() -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    header = {"alg": "RS256", "kid": "k1", "typ": "JWT"}
    claims = {"iss": "https://issuer.example.com", "sub": "job", "exp": 2_000_000_000}
    return f"{b64(header)}.{b64(claims)}.c2lnbmF0dXJl"


async def test_another_issuers_jwt_is_passed_on_without_pyjwt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_pyjwt(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("PyJWT was asked about a token that is not ours")

    for name in ("get_unverified_header", "decode", "decode_complete"):
        monkeypatch.setattr(jwt, name, no_pyjwt)
    svc: TokenService = service()
    assert await svc.authenticate(bearer(_foreign_jwt())) is None
    assert await svc.authenticate(bearer("not-a-jwt")) is None
    assert await svc.authenticate(Credentials(client_ip="192.0.2.1")) is None


async def test_a_jwt_claiming_our_issuer_is_still_checked_fully() -> None:
    svc = service()
    token = svc.issue(ALICE, [Access("repository", "x", frozenset({"pull"}))]).token
    header, claims, _ = token.split(".")
    tampered = f"{header}.{claims}.{base64.urlsafe_b64encode(b'x' * 32).rstrip(b'=').decode()}"
    with pytest.raises(AuthenticationFailed, match="invalid token"):
        await svc.authenticate(bearer(tampered))


async def test_a_foreign_token_sent_again_is_not_parsed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc = service()
    calls: list[str] = []
    real = peek

    def counting_peek(token: str) -> Any:
        calls.append(token)
        return real(token)

    monkeypatch.setattr(service_module, "peek", counting_peek)
    for _ in range(3):
        assert await svc.authenticate(bearer(_foreign_jwt())) is None
    assert len(calls) == 1
