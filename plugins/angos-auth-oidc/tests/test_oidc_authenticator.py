"""The oidc authenticator against a real (local) issuer: what it accepts, what it refuses and
how, key rotation, outages, and JWKS sharing through the cache."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from angos_auth_oidc import OidcAuthenticator, OidcConfig
from angos_memory.cache import MemoryCache, MemoryCacheConfig

from angos_core.errors import AuthenticationFailed, IdentityProviderUnavailable
from angos_core.identity import ORDER_EXTERNAL_TOKEN, Credentials
from angos_core.protocols import Cache
from angos_core.testing.oidc_issuer import OidcIssuer

MakeAuthenticator = Callable[..., Awaitable[OidcAuthenticator]]


@pytest.fixture
async def make_authenticator(
    oidc_issuer: OidcIssuer,
) -> AsyncIterator[MakeAuthenticator]:
    """``make(entry="ci", cache=None, open=True, **settings)``: an authenticator with one entry
    trusting the test issuer (audience ``angos``, RS256 and ES256), closed at teardown."""
    made: list[OidcAuthenticator] = []

    async def make(
        entry: str = "ci", cache: Cache | None = None, open: bool = True, **settings: Any
    ) -> OidcAuthenticator:
        values: dict[str, Any] = {
            "issuer": oidc_issuer.issuer,
            "required_audience": "angos",
            "allowed_algorithms": ["RS256", "ES256"],
            **settings,
        }
        authenticator = OidcAuthenticator({entry: OidcConfig(**values)})
        if cache is not None:
            authenticator.use_cache(cache)
        made.append(authenticator)
        if open:
            await authenticator.open()
        return authenticator

    yield make
    for authenticator in made:
        await authenticator.aclose()


@pytest.fixture
async def shared_cache() -> AsyncIterator[Cache]:
    """One cache standing for the registry's shared one."""
    cache = MemoryCache(MemoryCacheConfig())
    await cache.open()
    yield cache
    await cache.aclose()


def bearer(token: str) -> Credentials:
    return Credentials(client_ip="127.0.0.1", bearer=token)


def basic(username: str, password: str) -> Credentials:
    return Credentials(client_ip="127.0.0.1", basic=(username, password))


def assert_not_leaked(token: str, *texts: str) -> None:
    """No part of the token (header, payload, signature) in any of ``texts``."""
    for part in (p for p in token.split(".") if len(p) >= 8):
        for text in texts:
            assert part not in text


async def refused(
    authenticator: OidcAuthenticator,
    credentials: Credentials,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> AuthenticationFailed:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationFailed) as info:
        await authenticator.authenticate(credentials)
    assert info.value.authenticator == "oidc.ci"
    assert_not_leaked(token, info.value.message, str(info.value), caplog.text)
    return info.value


# ---------------------------------------------------------------------- accepted


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_bearer_token_is_an_identity(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, alg: str
) -> None:
    authenticator = await make_authenticator()
    assert authenticator.order == ORDER_EXTERNAL_TOKEN
    identity = await authenticator.authenticate(
        bearer(oidc_issuer.token(alg=alg, sub="repo:org/app:ref:refs/heads/main", actor="dev"))
    )
    assert identity is not None
    assert identity.id == identity.username == "repo:org/app:ref:refs/heads/main"
    assert (identity.provider, identity.method) == ("oidc.ci", "oidc")
    assert identity.claims["actor"] == "dev"
    assert identity.claims["iss"] == oidc_issuer.issuer
    assert identity.access is None


async def test_the_token_as_the_password_of_the_entry_name(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer
) -> None:
    """``docker login -u github-actions -p "$TOKEN"``: Basic, username = the entry's name."""
    authenticator = await make_authenticator(entry="github-actions")
    identity = await authenticator.authenticate(basic("github-actions", oidc_issuer.token(sub="x")))
    assert identity is not None and identity.provider == "oidc.github-actions"
    assert identity.id == "x"


async def test_username_from_a_configured_claim(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = await make_authenticator(username_claim="repository")
    identity = await authenticator.authenticate(
        bearer(oidc_issuer.token(sub="s", repository="org/app"))
    )
    assert identity is not None and (identity.id, identity.username) == ("s", "org/app")
    token = oidc_issuer.token(sub="s")
    failure = await refused(authenticator, bearer(token), token, caplog)
    assert "repository" in failure.message


async def test_an_audience_list_accepts_any_of_them(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer
) -> None:
    authenticator = await make_authenticator(required_audience=["registry", "angos"])
    assert await authenticator.authenticate(bearer(oidc_issuer.token(aud="registry")))
    assert await authenticator.authenticate(bearer(oidc_issuer.token(aud=["other", "angos"])))


async def test_clock_skew_tolerance_accepts_a_just_expired_token(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    token = oidc_issuer.token(exp=int(time.time()) - 30)
    assert await (await make_authenticator(clock_skew_tolerance=60)).authenticate(bearer(token))
    await refused(await make_authenticator(clock_skew_tolerance=0), bearer(token), token, caplog)


# ---------------------------------------------------------------------- not ours


async def test_credentials_of_other_kinds_are_not_ours(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer
) -> None:
    other = OidcIssuer()  # never started: a JWT of an issuer nobody configured
    authenticator = await make_authenticator()
    requests = oidc_issuer.jwks_requests
    assert await authenticator.authenticate(bearer(other.token())) is None
    assert await authenticator.authenticate(bearer("an-opaque-token")) is None
    assert await authenticator.authenticate(bearer("a.b.c")) is None
    assert await authenticator.authenticate(basic("alice", oidc_issuer.token())) is None
    assert await authenticator.authenticate(Credentials(client_ip="127.0.0.1")) is None
    assert oidc_issuer.jwks_requests == requests


# ---------------------------------------------------------------------- refused


async def test_expired_token(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    token = oidc_issuer.token(iat=int(time.time()) - 900, nbf=None, exp=int(time.time()) - 300)
    failure = await refused(await make_authenticator(), bearer(token), token, caplog)
    assert failure.message == "token expired"


async def test_token_not_yet_valid(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    token = oidc_issuer.token(nbf=int(time.time()) + 600, exp=int(time.time()) + 900)
    failure = await refused(await make_authenticator(), bearer(token), token, caplog)
    assert failure.message == "token not yet valid"


async def test_wrong_audience(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = oidc_issuer.token(aud="some-other-service")
    failure = await refused(await make_authenticator(), bearer(token), token, caplog)
    assert failure.message == "token audience not accepted"
    missing = oidc_issuer.token(aud=None)
    await refused(await make_authenticator(), bearer(missing), missing, caplog)


async def test_wrong_issuer_addressed_to_the_entry(
    make_authenticator: MakeAuthenticator, caplog: pytest.LogCaptureFixture
) -> None:
    """As Bearer a foreign JWT is someone else's; as the entry's password it is refused."""
    token = OidcIssuer().token()
    failure = await refused(await make_authenticator(), basic("ci", token), token, caplog)
    assert "not issued by the issuer of oidc.ci" in failure.message


async def test_the_entry_password_must_be_a_jwt(
    make_authenticator: MakeAuthenticator, caplog: pytest.LogCaptureFixture
) -> None:
    failure = await refused(
        await make_authenticator(), basic("ci", "hunter2hunter2"), "hunter2hunter2", caplog
    )
    assert "must be a JWT" in failure.message


async def test_missing_required_claim(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = await make_authenticator(required_claims=["repository", "actor"])
    assert await authenticator.authenticate(bearer(oidc_issuer.token(repository="o/r", actor="a")))
    token = oidc_issuer.token(repository="o/r")
    failure = await refused(authenticator, bearer(token), token, caplog)
    assert failure.message == "token lacks the required claim 'actor'"
    empty = oidc_issuer.token(repository="o/r", actor="")
    await refused(authenticator, bearer(empty), empty, caplog)
    no_sub = oidc_issuer.token(sub=None, repository="o/r", actor="a")
    assert "'sub'" in (await refused(authenticator, bearer(no_sub), no_sub, caplog)).message


async def test_alg_none(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = await make_authenticator()
    requests = oidc_issuer.jwks_requests
    token = oidc_issuer.unsigned_token()
    failure = await refused(authenticator, bearer(token), token, caplog)
    assert failure.message.startswith("token signing algorithm not allowed")
    assert oidc_issuer.jwks_requests == requests  # refused before any key lookup


async def test_hs256_signed_with_the_public_key(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = oidc_issuer.hs256_with_public_key()
    failure = await refused(await make_authenticator(), bearer(token), token, caplog)
    assert failure.message.startswith("token signing algorithm not allowed")


async def test_an_algorithm_not_allowed_for_this_entry(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = await make_authenticator(allowed_algorithms=["RS256"])
    token = oidc_issuer.token(alg="ES256")
    await refused(authenticator, bearer(token), token, caplog)


async def test_a_key_used_with_another_algorithm(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """An ES256 token whose header names the RS256 key: refused, not mis-verified."""
    token = oidc_issuer.token(alg="ES256", headers={"kid": oidc_issuer.kid("RS256")})
    failure = await refused(await make_authenticator(), bearer(token), token, caplog)
    assert failure.message == "token signed with an algorithm its key is not for"


async def test_tampered_signature_and_payload(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = await make_authenticator()
    header, payload, signature = oidc_issuer.token(sub="alice").split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    tampered = f"{header}.{payload}.{flipped}"
    assert (await refused(authenticator, bearer(tampered), tampered, caplog)).message == (
        "token signature invalid"
    )
    forged_payload = (
        base64.urlsafe_b64encode(
            base64.urlsafe_b64decode(payload + "==").replace(b'"alice"', b'"admin"')
        )
        .rstrip(b"=")
        .decode()
    )
    forged = f"{header}.{forged_payload}.{signature}"
    assert (await refused(authenticator, bearer(forged), forged, caplog)).message == (
        "token signature invalid"
    )


async def test_unknown_kid_refreshes_once_then_refuses(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = await make_authenticator()
    assert oidc_issuer.jwks_requests == 1
    token = oidc_issuer.token(headers={"kid": "made-up"})
    failure = await refused(authenticator, bearer(token), token, caplog)
    assert failure.message == "token signed with a key the issuer does not publish"
    assert oidc_issuer.jwks_requests == 2  # one refresh
    for _ in range(5):  # within jwks_min_refresh_interval: no more fetches
        await refused(authenticator, bearer(token), token, caplog)
    assert oidc_issuer.jwks_requests == 2


# ---------------------------------------------------------------------- rotation


async def test_key_rotation_mid_run(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = await make_authenticator()
    old = oidc_issuer.token()
    assert await authenticator.authenticate(bearer(old))
    assert oidc_issuer.jwks_requests == 1
    oidc_issuer.rotate("RS256")
    assert await authenticator.authenticate(bearer(old))  # keys in hand until a new kid shows
    assert oidc_issuer.jwks_requests == 1
    new = oidc_issuer.token()
    assert await authenticator.authenticate(bearer(new))
    assert oidc_issuer.jwks_requests == 2
    assert await authenticator.authenticate(bearer(oidc_issuer.token()))
    assert oidc_issuer.jwks_requests == 2
    await refused(authenticator, bearer(old), old, caplog)  # the old key left the JWKS


async def test_concurrent_tokens_of_a_new_key_share_one_fetch(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer
) -> None:
    authenticator = await make_authenticator()
    oidc_issuer.rotate("ES256")
    tokens = [oidc_issuer.token(alg="ES256", sub=f"s{i}") for i in range(20)]
    identities = await asyncio.gather(*(authenticator.authenticate(bearer(t)) for t in tokens))
    assert [i.id for i in identities if i is not None] == [f"s{i}" for i in range(20)]
    assert oidc_issuer.jwks_requests == 2


# ---------------------------------------------------------------------- outages


async def test_issuer_down_at_startup_is_503_until_it_answers(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer
) -> None:
    oidc_issuer.stop()
    authenticator = await make_authenticator(open=False, jwks_min_refresh_interval=0)
    with pytest.raises(IdentityProviderUnavailable) as opened:
        await authenticator.open()
    assert opened.value.authenticator == "oidc.ci"
    assert oidc_issuer.issuer in opened.value.message
    token = oidc_issuer.token()
    with pytest.raises(IdentityProviderUnavailable) as info:
        await authenticator.authenticate(bearer(token))
    assert_not_leaked(token, str(info.value))
    with pytest.raises(IdentityProviderUnavailable):
        await authenticator.health()
    oidc_issuer.start()
    identity = await authenticator.authenticate(bearer(token))
    assert identity is not None
    await authenticator.health()


async def test_retries_of_an_unreachable_issuer_are_rate_limited(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer
) -> None:
    oidc_issuer.jwks_status = 503
    authenticator = await make_authenticator(open=False, jwks_min_refresh_interval=3600)
    with pytest.raises(IdentityProviderUnavailable, match="HTTP 503"):
        await authenticator.open()
    requests = oidc_issuer.jwks_requests
    for _ in range(10):
        with pytest.raises(IdentityProviderUnavailable):
            await authenticator.authenticate(bearer(oidc_issuer.token()))
    assert oidc_issuer.jwks_requests == requests + 1


async def test_issuer_down_mid_run_cached_keys_still_verify(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = await make_authenticator(
        jwks_refresh_interval=0.01, jwks_min_refresh_interval=0
    )
    with oidc_issuer.down():
        await asyncio.sleep(0.05)  # the keys are due for their scheduled refresh
        for _ in range(3):
            assert await authenticator.authenticate(bearer(oidc_issuer.token()))
            await asyncio.sleep(0.02)
        await authenticator.health()
        # A new kid cannot be fetched now: refused (401), the known keys still work.
        token = oidc_issuer.token(headers={"kid": "rotated-while-down"})
        await refused(authenticator, bearer(token), token, caplog)
        assert await authenticator.authenticate(bearer(oidc_issuer.token(alg="ES256")))


async def test_scheduled_refresh_picks_up_new_keys(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer
) -> None:
    authenticator = await make_authenticator(jwks_refresh_interval=0.05)
    oidc_issuer.rotate("RS256", keep_old=True)
    await asyncio.sleep(0.1)
    assert await authenticator.authenticate(bearer(oidc_issuer.token(alg="ES256")))
    for _ in range(100):  # the background refresh lands
        if oidc_issuer.jwks_requests == 2:
            break
        await asyncio.sleep(0.01)
    assert oidc_issuer.jwks_requests == 2
    assert await authenticator.authenticate(bearer(oidc_issuer.token()))
    assert oidc_issuer.jwks_requests == 2  # the new kid was in the scheduled refresh


async def test_a_malformed_jwks_is_unavailable_and_a_broken_key_is_skipped(
    make_authenticator: MakeAuthenticator,
    oidc_issuer: OidcIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    oidc_issuer.jwks_override = {"keys": "not-a-list"}
    authenticator = await make_authenticator(open=False, jwks_min_refresh_interval=0)
    with pytest.raises(IdentityProviderUnavailable, match="is malformed"):
        await authenticator.open()
    good = oidc_issuer.jwks()["keys"]
    broken = {"kty": "RSA", "kid": "broken", "n": "AQAB"}  # no exponent
    oidc_issuer.jwks_override = {"keys": [broken, {"kty": "oct", "use": "enc"}, *good]}
    with caplog.at_level(logging.WARNING):
        assert await authenticator.authenticate(bearer(oidc_issuer.token()))
    assert "key 'broken' unusable" in caplog.text
    token = oidc_issuer.token(headers={"kid": "broken"})
    await refused(authenticator, bearer(token), token, caplog)


async def test_discovery_mismatch_names_the_fix(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer
) -> None:
    authenticator = await make_authenticator(open=False, issuer=oidc_issuer.issuer + "/")
    with pytest.raises(IdentityProviderUnavailable) as info:
        await authenticator.open()
    assert "set auth.oidc.ci.issuer to exactly" in info.value.message


async def test_discovery_only_without_jwks_uri(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer
) -> None:
    await make_authenticator()
    assert (oidc_issuer.discovery_requests, oidc_issuer.jwks_requests) == (1, 1)
    await make_authenticator(jwks_uri=oidc_issuer.jwks_uri)
    assert (oidc_issuer.discovery_requests, oidc_issuer.jwks_requests) == (1, 2)


# ---------------------------------------------------------------------- replicas


async def test_replicas_share_the_jwks_through_the_cache(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, shared_cache: Cache
) -> None:
    first = await make_authenticator(cache=shared_cache)
    assert (oidc_issuer.discovery_requests, oidc_issuer.jwks_requests) == (1, 1)
    second = await make_authenticator(cache=shared_cache)
    assert (oidc_issuer.discovery_requests, oidc_issuer.jwks_requests) == (1, 1)
    assert await second.authenticate(bearer(oidc_issuer.token()))
    # A rotation seen by one replica is read by the other from the cache, not the issuer.
    oidc_issuer.rotate("RS256")
    token = oidc_issuer.token()
    assert await first.authenticate(bearer(token))
    assert oidc_issuer.jwks_requests == 2
    assert await second.authenticate(bearer(token))
    assert oidc_issuer.jwks_requests == 2


async def test_a_replica_starts_from_the_cache_while_the_issuer_is_down(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, shared_cache: Cache
) -> None:
    await make_authenticator(cache=shared_cache)
    with oidc_issuer.down():
        replica = await make_authenticator(cache=shared_cache)
        assert await replica.authenticate(bearer(oidc_issuer.token()))


# ---------------------------------------------------------------------- several entries


async def test_several_entries_route_by_issuer_and_name(oidc_issuer: OidcIssuer) -> None:
    other = OidcIssuer()
    other.start()
    try:
        authenticator = OidcAuthenticator(
            {
                "github": OidcConfig(issuer=oidc_issuer.issuer),
                "cluster": OidcConfig(issuer=other.issuer, required_audience="angos"),
            }
        )
        await authenticator.open()
        try:
            a = await authenticator.authenticate(bearer(oidc_issuer.token()))
            b = await authenticator.authenticate(bearer(other.token()))
            c = await authenticator.authenticate(basic("cluster", other.token()))
            assert [x.provider for x in (a, b, c) if x] == [
                "oidc.github",
                "oidc.cluster",
                "oidc.cluster",
            ]
            with pytest.raises(AuthenticationFailed):  # github's token as cluster's password
                await authenticator.authenticate(basic("cluster", oidc_issuer.token()))
        finally:
            await authenticator.aclose()
            await authenticator.aclose()  # idempotent
    finally:
        other.close()


# ---------------------------------------------------------------------- verified-token cache


async def test_a_repeated_token_is_verified_once(
    make_authenticator: MakeAuthenticator,
    oidc_issuer: OidcIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import angos_auth_oidc.authenticator as module
    from angos_auth_oidc.jwt_verify import verify as real_verify

    calls = 0

    def counting_verify(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return real_verify(*args, **kwargs)

    monkeypatch.setattr(module, "verify", counting_verify)
    authenticator = await make_authenticator(entry="github-actions")
    token = oidc_issuer.token(sub="s")
    for _ in range(10):
        assert await authenticator.authenticate(bearer(token))
    assert calls == 1
    # As the entry's Basic password: the same token, remembered for this entry only.
    assert await authenticator.authenticate(basic("github-actions", token))
    assert calls == 1
    other = oidc_issuer.token(sub="t")
    assert await authenticator.authenticate(basic("github-actions", other))
    assert calls == 2


async def test_a_remembered_token_still_expires(
    make_authenticator: MakeAuthenticator, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    authenticator = await make_authenticator(clock_skew_tolerance=0)
    token = oidc_issuer.token(exp=int(time.time()) + 1)
    assert await authenticator.authenticate(bearer(token))
    await asyncio.sleep(2.1)
    failure = await refused(authenticator, bearer(token), token, caplog)
    assert failure.message == "token expired"
