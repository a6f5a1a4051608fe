"""The token service mints Docker registry tokens and accepts only its own, unaltered and
unexpired, back."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from angos_auth_token.claims import AccessClaimInvalid, format_access, parse_access
from angos_auth_token.config import TokenServiceConfig
from angos_auth_token.service import ACCESS_TYPE, ISSUER, REFRESH_TYPE, TokenService

from angos_core.errors import AuthenticationFailed, ConfigError
from angos_core.identity import Access, Credentials, Identity

SECRET = base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = base64.b64encode(bytes(range(1, 33))).decode()
ALICE = Identity(
    id="alice",
    username="alice",
    provider="identity",
    method="basic",
    claims={"team": "core", "groups": ["a", "b"]},
)
PULL_APP = Access("repository", "team/app", frozenset({"pull"}))
PUSH_APP = Access("repository", "team/app", frozenset({"pull", "push"}))


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(secret: str = SECRET, clock: Clock | None = None, **settings: object) -> TokenService:
    return TokenService(TokenServiceConfig(secret_key=secret, **settings), clock=clock or Clock())  # type: ignore[arg-type]


def bearer(token: str) -> Credentials:
    return Credentials(client_ip="192.0.2.1", bearer=token)


async def test_a_minted_token_verifies_to_the_identity_and_its_grants() -> None:
    svc = service()
    issued = svc.issue(ALICE, [PUSH_APP])
    identity = await svc.authenticate(bearer(issued.token))
    assert identity is not None
    assert (identity.id, identity.username) == ("alice", "alice")
    assert (identity.provider, identity.method) == ("token_service", "token")
    assert identity.access == (PUSH_APP,)
    assert identity.claims == {"team": "core", "groups": ["a", "b"]}
    assert identity.certificate is None
    assert issued.expires_in == 300
    assert issued.refresh_token is None


async def test_the_token_carries_the_docker_claims() -> None:
    clock = Clock()
    issued = service(clock=clock, service="registry.example.com").issue(ALICE, [PUSH_APP])
    header = jwt.get_unverified_header(issued.token)
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert header["typ"] == ACCESS_TYPE
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "alice"
    assert claims["aud"] == "registry.example.com"
    assert claims["iat"] == claims["nbf"] == int(clock.now) == issued.issued_at
    assert claims["exp"] == int(clock.now) + 300
    assert len(claims["jti"]) >= 16
    assert claims["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}
    ]


async def test_two_tokens_have_distinct_ids() -> None:
    svc = service()
    first, second = svc.issue(ALICE, []), svc.issue(ALICE, [])
    ids = {jwt.decode(t.token, options={"verify_signature": False})["jti"] for t in (first, second)}
    assert len(ids) == 2


async def test_no_grant_is_an_empty_access_list() -> None:
    svc = service()
    identity = await svc.authenticate(bearer(svc.issue(ALICE, []).token))
    assert identity is not None and identity.access == ()


async def test_an_expired_token_is_refused() -> None:
    clock = Clock()
    svc = service(clock=clock, ttl_secs=60)
    token = svc.issue(ALICE, [PULL_APP]).token
    clock.now += 60 + 61  # past the lifetime and the 60 s of tolerated skew
    with pytest.raises(AuthenticationFailed, match="expired"):
        await svc.authenticate(bearer(token))


async def test_a_token_within_the_clock_skew_still_verifies() -> None:
    clock = Clock()
    svc = service(clock=clock, ttl_secs=60)
    token = svc.issue(ALICE, [PULL_APP]).token
    clock.now += 60 + 30
    assert await svc.authenticate(bearer(token)) is not None
    clock.now -= 60 + 30 + 90  # minted 90 s "in the future" of another replica's clock
    with pytest.raises(AuthenticationFailed, match="not valid yet"):
        await svc.authenticate(bearer(token))


async def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = service(OTHER_SECRET).issue(ALICE, [PUSH_APP]).token
    with pytest.raises(AuthenticationFailed) as failed:
        await service().authenticate(bearer(token))
    assert failed.value.authenticator == "token_service"
    assert token not in failed.value.message


def _resign(token: str, key: bytes, **changes: object) -> str:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="HS256", headers={"typ": header["typ"]})


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_a_token_with_an_altered_payload_is_refused() -> None:
    svc = service()
    token = svc.issue(ALICE, [PULL_APP]).token
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["access"] = format_access([PUSH_APP])
    forged = f"{header}.{_b64(claims)}.{signature}"
    with pytest.raises(AuthenticationFailed):
        await svc.authenticate(bearer(forged))


async def test_an_unsigned_token_alg_none_is_refused() -> None:
    svc = service()
    claims = jwt.decode(svc.issue(ALICE, [PUSH_APP]).token, options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': ACCESS_TYPE})}.{_b64(claims)}."
    with pytest.raises(AuthenticationFailed):
        await svc.authenticate(bearer(unsigned))
    # Without our typ, the iss alone still makes it ours: refused, not passed on.
    unsigned = f"{_b64({'alg': 'none'})}.{_b64(claims)}."
    with pytest.raises(AuthenticationFailed):
        await svc.authenticate(bearer(unsigned))


async def test_a_token_for_another_service_is_refused() -> None:
    token = service(service="other").issue(ALICE, [PUSH_APP]).token
    with pytest.raises(AuthenticationFailed, match="another service"):
        await service().authenticate(bearer(token))


async def test_a_malformed_access_claim_is_refused() -> None:
    svc = service()
    key = base64.b64decode(SECRET)
    token = _resign(svc.issue(ALICE, []).token, key, access={"type": "repository"})
    with pytest.raises(AuthenticationFailed):
        await svc.authenticate(bearer(token))


async def test_jwts_it_did_not_issue_are_not_its_kind() -> None:
    svc = service()
    oidc = jwt.encode(
        {"iss": "https://token.actions.githubusercontent.com", "sub": "repo:x", "aud": "angos"},
        "k" * 32,
        algorithm="HS256",
    )
    assert await svc.authenticate(bearer(oidc)) is None
    assert await svc.authenticate(bearer("an-opaque-token")) is None
    assert await svc.authenticate(Credentials(client_ip="192.0.2.1", basic=("a", "b"))) is None
    assert await svc.authenticate(Credentials(client_ip="192.0.2.1")) is None


async def test_a_refresh_token_stands_for_the_identity_and_is_no_access_token() -> None:
    svc = service()
    issued = svc.issue(ALICE, [PULL_APP], refresh=True)
    assert issued.refresh_token is not None
    assert jwt.get_unverified_header(issued.refresh_token)["typ"] == REFRESH_TYPE
    redeemed = svc.redeem(issued.refresh_token)
    assert (redeemed.id, redeemed.username, redeemed.provider) == (
        "alice",
        "alice",
        "token_service",
    )
    assert redeemed.method == "refresh_token"
    assert redeemed.access is None
    with pytest.raises(AuthenticationFailed):
        await svc.authenticate(bearer(issued.refresh_token))
    with pytest.raises(AuthenticationFailed):
        svc.redeem(issued.token)


async def test_a_refresh_token_of_a_limited_identity_keeps_the_limit() -> None:
    svc = service()
    limited = Identity("bob", "bob", "token_service", "token", access=(PULL_APP,))
    refresh = svc.issue(limited, [PULL_APP], refresh=True).refresh_token
    assert refresh is not None
    assert svc.redeem(refresh).access == (PULL_APP,)


async def test_an_expired_or_foreign_refresh_token_is_refused() -> None:
    clock = Clock()
    svc = service(clock=clock, refresh_ttl_secs=3600)
    refresh = svc.issue(ALICE, [], refresh=True).refresh_token
    assert refresh is not None
    with pytest.raises(AuthenticationFailed):
        service(OTHER_SECRET).redeem(refresh)
    clock.now += 3600 + 61
    with pytest.raises(AuthenticationFailed, match="expired"):
        svc.redeem(refresh)
    with pytest.raises(AuthenticationFailed):
        svc.redeem("not-a-jwt")


async def test_no_refresh_token_when_they_are_off() -> None:
    assert service(refresh_ttl_secs=0).issue(ALICE, [], refresh=True).refresh_token is None


def test_the_secret_never_shows_in_the_config_repr() -> None:
    config = TokenServiceConfig(secret_key=SECRET)
    assert SECRET not in repr(config)
    assert SECRET not in repr(TokenService(config))


@pytest.mark.parametrize(
    ("settings", "key", "fragment"),
    [
        ({"secret_key": "c2hvcnQ="}, "auth.token_service.secret_key", "openssl rand -base64 32"),
        ({"secret_key": "not base64 at all!"}, "auth.token_service.secret_key", "openssl rand"),
        ({"realm": "registry.example.com/token"}, "auth.token_service.realm", "absolute"),
        ({"realm": "https://registry.example.com/auth"}, "auth.token_service.realm", "/token"),
        (
            {"realm": "https://u:p@registry.example.com/token"},
            "auth.token_service.realm",
            "credentials",
        ),
        ({"ttl_secs": 0}, "auth.token_service.ttl_secs", "between 1 and 86400"),
        ({"ttl_secs": 86401}, "auth.token_service.ttl_secs", "between 1 and 86400"),
        ({"refresh_ttl_secs": -1}, "auth.token_service.refresh_ttl_secs", "between 0"),
        ({"service": 'a"b'}, "auth.token_service.service", "quotes"),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(
    settings: dict[str, object], key: str, fragment: str
) -> None:
    values: dict[str, object] = {"secret_key": SECRET, **settings}
    with pytest.raises(ConfigError) as failed:
        TokenServiceConfig(**values)  # type: ignore[arg-type]
    assert failed.value.key == key
    assert fragment in failed.value.message
    assert SECRET not in str(failed.value)


def test_a_short_secret_is_not_echoed() -> None:
    short = base64.b64encode(b"sixteen byte key").decode()
    with pytest.raises(ConfigError) as failed:
        TokenServiceConfig(secret_key=short)
    assert short not in str(failed.value)
    assert "16 bytes" in failed.value.message


def test_a_url_safe_secret_and_a_configured_realm_are_accepted() -> None:
    urlsafe = base64.urlsafe_b64encode(bytes([251] * 32)).decode()
    config = TokenServiceConfig(secret_key=urlsafe, realm="https://r.example.com/prefix/token")
    assert TokenService(config).realm == "https://r.example.com/prefix/token"


def test_the_access_claim_round_trips_and_refuses_other_shapes() -> None:
    grants = (PUSH_APP, Access("registry", "catalog", frozenset({"*"})))
    assert parse_access(format_access(grants)) == grants
    assert parse_access(None) == ()
    assert parse_access([{"type": "repository", "name": "a", "actions": None}]) == (
        Access("repository", "a", frozenset()),
    )
    for bad in (
        {"type": "repository"},
        ["repository:a:pull"],
        [{"type": "repository", "actions": ["pull"]}],
        [{"type": "repository", "name": "a", "actions": "pull"}],
        [{"type": "repository", "name": "a", "actions": [1]}],
        [{"type": "repository", "name": "a", "actions": []}] * 257,
    ):
        with pytest.raises(AccessClaimInvalid):
            parse_access(bad)
