"""The authenticator chain (result rule, order, failure limit, metrics observer), the
failure limiter on its own, Authorization header parsing and the Docker scope."""

from __future__ import annotations

import base64

import pytest

from angos_core.auth.chain import AuthChain
from angos_core.auth.config import FailureLimitConfig
from angos_core.auth.failure_limit import FailureLimiter
from angos_core.auth.issuer import bearer_challenge
from angos_core.auth.scope import (
    CATALOG,
    allows,
    format_scope,
    format_scopes,
    parse_scope,
    repository_access,
)
from angos_core.errors import (
    AuthenticationFailed,
    IdentityProviderUnavailable,
    TooManyRequests,
)
from angos_core.http.auth import MalformedAuthorization, parse_authorization
from angos_core.identity import (
    ORDER_BASIC,
    ORDER_MTLS,
    Access,
    Credentials,
    Identity,
)
from tests.support.auth import (
    StaticAuthenticator,
    StaticTokenAuthenticator,
    StaticTokenConfig,
    UnreachableAuthenticator,
    UnreachableConfig,
)

IP = "192.0.2.7"
ALICE = Credentials(IP, basic=("alice", "alice-password"))
WRONG = Credentials(IP, basic=("alice", "not-her-password"))


class Recorder:
    """Records the chain's calls to it, and answers as told."""

    def __init__(self, name: str, order: int, answer: object) -> None:
        self.name, self.order, self.answer = name, order, answer
        self.calls = 0

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[return-value]

    async def open(self) -> None:
        return None

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def identity(name: str) -> Identity:
    return Identity(id=name, username=name, provider=name, method="basic")


def observed() -> tuple[list[tuple[str, str]], AuthChain]:
    seen: list[tuple[str, str]] = []
    chain = AuthChain(
        [StaticAuthenticator({"alice": "alice-password"})],
        FailureLimitConfig(max_failures=3, window_secs=60),
        lambda method, result: seen.append((method, result)),
    )
    return seen, chain


# --------------------------------------------------------------------------- result rule


async def test_order_decides_not_the_config_order() -> None:
    late = Recorder("basic", ORDER_BASIC, identity("late"))
    early = Recorder("mtls", ORDER_MTLS, identity("early"))
    chain = AuthChain([late, early])
    assert chain.names() == ["mtls", "basic"]
    found = await chain.authenticate(ALICE)
    assert found is not None and found.id == "early"
    assert late.calls == 0  # the first identity decides


async def test_not_mine_asks_the_next() -> None:
    first = Recorder("a", 10, None)
    second = Recorder("b", 20, identity("bob"))
    found = await AuthChain([first, second]).authenticate(ALICE)
    assert found is not None and found.id == "bob"
    assert (first.calls, second.calls) == (1, 1)


async def test_invalid_ends_the_chain() -> None:
    first = Recorder("a", 10, AuthenticationFailed("a", "expired token"))
    second = Recorder("b", 20, identity("bob"))
    with pytest.raises(AuthenticationFailed, match="expired token"):
        await AuthChain([first, second]).authenticate(ALICE)
    assert second.calls == 0


async def test_unavailable_is_never_a_pass() -> None:
    first = Recorder("a", 10, IdentityProviderUnavailable("a", "issuer down"))
    second = Recorder("b", 20, identity("bob"))
    with pytest.raises(IdentityProviderUnavailable):
        await AuthChain([first, second]).authenticate(ALICE)
    assert second.calls == 0


async def test_no_credentials_ask_nobody() -> None:
    recorder = Recorder("a", 10, identity("x"))
    assert await AuthChain([recorder]).authenticate(Credentials(IP)) is None
    assert recorder.calls == 0


async def test_nobody_recognizes_is_anonymous() -> None:
    chain = AuthChain([Recorder("a", 10, None), Recorder("b", 20, None)])
    assert await chain.authenticate(ALICE) is None


async def test_unreachable_at_open_is_logged_and_served(caplog: pytest.LogCaptureFixture) -> None:
    class OpensBadly(UnreachableAuthenticator):
        async def open(self) -> None:
            raise IdentityProviderUnavailable(self.name, "issuer did not answer")

    chain = AuthChain([OpensBadly(UnreachableConfig())])
    await chain.open()
    assert "authenticator unreachable unavailable at startup" in caplog.text
    with pytest.raises(IdentityProviderUnavailable):
        await chain.health()
    await chain.aclose()


def test_the_first_token_issuer_makes_the_challenge() -> None:
    token = StaticTokenAuthenticator(StaticTokenConfig(token="t0ken-value"))
    assert AuthChain([StaticAuthenticator({})]).issuer is None
    assert AuthChain([StaticAuthenticator({}), token]).issuer is token


# --------------------------------------------------------------------------- failure limit


async def test_failures_lead_to_429_and_a_success_resets() -> None:
    seen, chain = observed()
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            await chain.authenticate(WRONG)
    assert await chain.authenticate(ALICE) is not None  # resets the count
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await chain.authenticate(WRONG)
    with pytest.raises(TooManyRequests) as info:
        await chain.authenticate(ALICE)  # even the right password: not checked
    assert 1 <= info.value.retry_after_secs <= 60
    # Another address, another username: untouched.
    assert await chain.authenticate(Credentials("192.0.2.8", basic=ALICE.basic)) is not None
    # The same address with another username: not limited (unknown to it: anonymous).
    assert await chain.authenticate(Credentials(IP, basic=("bob", "x" * 8))) is None
    assert seen[:3] == [("basic", "failure")] * 2 + [("basic", "success")]
    assert ("basic", "limited") in seen


async def test_unrecognized_basic_counts_as_a_failure() -> None:
    chain = AuthChain([Recorder("a", 10, None)], FailureLimitConfig(max_failures=2, window_secs=60))
    stranger = Credentials(IP, basic=("mallory", "guess-number-1"))
    assert await chain.authenticate(stranger) is None
    assert await chain.authenticate(stranger) is None
    with pytest.raises(TooManyRequests):
        await chain.authenticate(stranger)


def test_limiter_window_ends() -> None:
    now = [1000.0]
    limiter = FailureLimiter(
        FailureLimitConfig(max_failures=2, window_secs=10), clock=lambda: now[0]
    )
    key = limiter.key(IP, "alice")
    limiter.failed(key)
    assert limiter.retry_after(key) is None
    limiter.failed(key)
    now[0] += 3.5
    assert limiter.retry_after(key) == 7
    now[0] += 7
    assert limiter.retry_after(key) is None
    assert len(limiter) == 0  # an ended window is forgotten


def test_limiter_memory_is_bounded() -> None:
    limiter = FailureLimiter(FailureLimitConfig(max_failures=1, max_tracked=100))
    for i in range(10_000):
        limiter.failed(limiter.key(IP, f"user{i}" * 1000))
    assert len(limiter) == 100
    assert limiter.retry_after(limiter.key(IP, "user9999" * 1000)) is not None
    assert limiter.retry_after(limiter.key(IP, "user0" * 1000)) is None  # evicted


def test_limiter_off() -> None:
    limiter = FailureLimiter(FailureLimitConfig(max_failures=0))
    key = limiter.key(IP, "alice")
    for _ in range(100):
        limiter.failed(key)
    assert limiter.retry_after(key) is None and len(limiter) == 0


# --------------------------------------------------------------------------- header parsing


NOT_UTF8 = base64.b64encode(b"alice:\xff\xfesecret").decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_parse_basic_and_bearer() -> None:
    assert parse_authorization([]) == (None, None)
    assert parse_authorization([f"Basic {b64('alice:pa:ss wörd')}"]) == (
        ("alice", "pa:ss wörd"),
        None,
    )
    assert parse_authorization([f"basic  {b64('alice:')}"]) == (("alice", ""), None)
    assert parse_authorization(["Bearer eyJh.eyJz.c2ln"]) == (None, "eyJh.eyJz.c2ln")
    assert parse_authorization(["BEARER abc+/=="]) == (None, "abc+/==")


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ([f"Basic {b64('nocolon-secret')}"], "no ':' found"),
        (["Basic not*base64-secret"], "base64"),
        ([f"Basic {NOT_UTF8}"], "UTF-8"),
        (["Bearer"], "one token"),
        (["Bearer two tokens-secret"], "one token"),
        (["Digest username=secret"], "unsupported scheme"),
        (["s3cretTokenWithoutScheme"], "unsupported scheme"),
        (["Bearer a", "Bearer b"], "more than once"),
    ],
)
def test_malformed_authorization(headers: list[str], fragment: str) -> None:
    with pytest.raises(MalformedAuthorization) as info:
        parse_authorization(headers)
    assert fragment in info.value.message
    assert "secret" not in info.value.message.replace("Secret", "")
    assert info.value.status == 401


# --------------------------------------------------------------------------- scope


def test_repository_access() -> None:
    (pull,) = repository_access("GET", "team/app")
    assert format_scope(pull) == "repository:team/app:pull"
    assert format_scopes(repository_access("PUT", "team/app")) == "repository:team/app:pull,push"
    assert format_scopes(repository_access("DELETE", "a")) == "repository:a:delete"
    mount = repository_access("POST", "team/app", mount_from="team/base")
    assert format_scopes(mount) == "repository:team/app:pull,push repository:team/base:pull"
    assert format_scope(CATALOG) == "registry:catalog:*"


def test_parse_scope_round_trip_and_errors() -> None:
    access = parse_scope("repository:localhost:5000/team/app:push,pull")
    assert access == Access("repository", "localhost:5000/team/app", frozenset({"pull", "push"}))
    assert format_scope(access) == "repository:localhost:5000/team/app:pull,push"
    for bad in ("repository", "repository:app", "repository::pull", ":app:pull", "r:a:,"):
        with pytest.raises(ValueError, match="invalid scope"):
            parse_scope(bad)


def test_allows() -> None:
    grants = (Access("repository", "team/app", frozenset({"pull"})),)
    (pull,) = repository_access("GET", "team/app")
    (push,) = repository_access("PUT", "team/app")
    assert allows(grants, pull) and not allows(grants, push)
    assert not allows(grants, repository_access("GET", "team/other")[0])
    assert allows((Access("repository", "team/app", frozenset({"*"})),), push)
    assert allows((CATALOG,), CATALOG)


def test_bearer_challenge() -> None:
    assert (
        bearer_challenge("https://r/token", "reg") == 'Bearer realm="https://r/token",service="reg"'
    )
    assert bearer_challenge("https://r/token", 'a"b', repository_access("GET", "x")) == (
        'Bearer realm="https://r/token",service="a\\"b",scope="repository:x:pull"'
    )


# --------------------------------------------------------------------------- the TLS hook point


class FakeTransport:
    def __init__(self, peercert: object) -> None:
        self.peercert = peercert

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peercert if name == "peercert" else default


def test_peer_certificate_reads_the_verified_subject() -> None:
    from aiohttp.test_utils import make_mocked_request

    from angos_core.http.auth import credentials_of, peer_certificate
    from angos_core.identity import Certificate

    subject = (
        (("countryName", "DE"),),
        (("organizationName", "Team A"),),
        (("organizationName", "Team B"),),
        (("commonName", "ci-runner"),),
    )
    request = make_mocked_request(
        "GET", "/v2/", transport=FakeTransport({"subject": subject, "issuer": ()})
    )
    assert peer_certificate(request) == Certificate(("ci-runner",), ("Team A", "Team B"))
    credentials = credentials_of(request)
    assert credentials.certificate is not None and credentials.presented
    # No certificate (getpeercert() is {} without one), or plain HTTP: none.
    assert peer_certificate(make_mocked_request("GET", "/v2/", transport=FakeTransport({}))) is None
    assert (
        peer_certificate(make_mocked_request("GET", "/v2/", transport=FakeTransport(None))) is None
    )
