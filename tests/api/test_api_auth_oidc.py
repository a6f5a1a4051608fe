"""``[auth.oidc.<entry>]`` over HTTP: push and pull with an OIDC token (Bearer, and as the
docker login password), the refusals (401, nothing of the token in the body or the logs),
key rotation, and the issuer's outages (503 without keys, served with cached ones)."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from angos_core.testing.api import Api, digest_of, error_code, fs_toml, serve_config
from angos_core.testing.oidc_issuer import OidcIssuer

OpenApi = Callable[..., AbstractAsyncContextManager[Api]]


def oidc_toml(issuer: OidcIssuer, **extra: object) -> str:
    settings = {
        "issuer": issuer.issuer,
        "required_audience": "angos",
        "allowed_algorithms": ["RS256", "ES256"],
        **extra,
    }
    # JSON strings, numbers and lists of them are TOML values too.
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    return f"[auth.oidc.github-actions]\n{lines}\n"


@pytest.fixture
def open_api(tmp_path: Path, oidc_issuer: OidcIssuer) -> OpenApi:
    """``open_api(**settings)``: the app with one OIDC entry ``github-actions`` trusting the
    test issuer (audience ``angos``)."""

    def make(**settings: object) -> AbstractAsyncContextManager[Api]:
        toml = fs_toml(tmp_path, oidc_toml(oidc_issuer, **settings))
        return serve_config(toml, root=tmp_path)

    return make


@pytest.fixture
async def api(open_api: OpenApi) -> AsyncIterator[Api]:
    async with open_api() as api:
        yield api


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def assert_refused(
    api: Api, headers: dict[str, str], token: str, caplog: pytest.LogCaptureFixture
) -> str:
    """401 with the challenge on a push; the body and the logs hold nothing of the token."""
    caplog.set_level(logging.DEBUG)
    resp = await api.request("POST", "/v2/team/app/blobs/uploads/", headers=headers)
    body = await resp.text()
    assert resp.status == 401, body
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    for part in (p for p in token.split(".") if len(p) >= 8):
        assert part not in body
        assert part not in caplog.text
        assert part not in str(resp.headers)
    return body


async def test_push_and_pull_with_a_bearer_oidc_token(api: Api, oidc_issuer: OidcIssuer) -> None:
    assert (await api.request("POST", "/v2/team/app/blobs/uploads/")).status == 401
    api.client.session.headers.update(bearer(oidc_issuer.token(sub="repo:team/app")))
    digest, body = await api.push_image("team/app", "v1")
    resp = await api.get("/v2/team/app/manifests/v1")
    assert resp.status == 200 and await resp.read() == body
    layer = await api.get(f"/v2/team/app/blobs/{digest_of(b'layer-bytes')}")
    assert layer.status == 200 and await layer.read() == b"layer-bytes"
    assert digest == resp.headers["Docker-Content-Digest"]


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_the_token_as_docker_login_password(
    api: Api, oidc_issuer: OidcIssuer, alg: str
) -> None:
    """``docker login -u github-actions -p "$TOKEN"``: GET /v2/ with Basic, then the push."""
    api.client.session.headers.update(basic("github-actions", oidc_issuer.token(alg=alg)))
    assert (await api.get("/v2/")).status == 200
    await api.push_image("team/app", "v1")
    assert (await api.get("/v2/team/app/manifests/v1")).status == 200


async def test_each_bad_token_is_401_and_leaks_nothing(
    api: Api, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    header, payload, signature = oidc_issuer.token().split(".")
    tampered_sig = signature[:-6] + ("AAAAAA" if not signature.endswith("AAAAAA") else "BBBBBB")
    tokens = {
        "expired": oidc_issuer.token(iat=now - 900, nbf=None, exp=now - 300),
        "not yet valid": oidc_issuer.token(nbf=now + 600, exp=now + 900),
        "wrong audience": oidc_issuer.token(aud="another-service"),
        "wrong issuer": OidcIssuer().token(),
        "alg none": oidc_issuer.unsigned_token(),
        "hs256 with the public key": oidc_issuer.hs256_with_public_key(),
        "unknown kid": oidc_issuer.token(headers={"kid": "no-such-key"}),
        "tampered signature": f"{header}.{payload}.{tampered_sig}",
    }
    for what, token in tokens.items():
        for headers in (bearer(token), basic("github-actions", token)):
            body = await assert_refused(api, headers, token, caplog)
            assert "UNAUTHORIZED" in body, what
    # The unknown kid made one JWKS refresh, not one per request.
    assert oidc_issuer.jwks_requests == 2


async def test_missing_required_claim(
    open_api: OpenApi, oidc_issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_api(required_claims=["repository"]) as api:
        token = oidc_issuer.token()
        body = await assert_refused(api, bearer(token), token, caplog)
        assert "token lacks the required claim 'repository'" in body
        ok = oidc_issuer.token(repository="team/app")
        assert (await api.get("/v2/", headers=bearer(ok))).status == 200


async def test_key_rotation_mid_test(api: Api, oidc_issuer: OidcIssuer) -> None:
    assert (await api.get("/v2/", headers=bearer(oidc_issuer.token()))).status == 200
    assert oidc_issuer.jwks_requests == 1
    oidc_issuer.rotate("RS256")
    for _ in range(3):
        assert (await api.get("/v2/", headers=bearer(oidc_issuer.token()))).status == 200
    assert oidc_issuer.jwks_requests == 2


async def test_issuer_down_at_startup_is_503_then_recovers(
    open_api: OpenApi, oidc_issuer: OidcIssuer
) -> None:
    oidc_issuer.stop()
    async with open_api(jwks_min_refresh_interval=0) as api:
        token = oidc_issuer.token()
        resp = await api.get("/v2/", headers=bearer(token))
        assert resp.status == 503
        assert await error_code(resp) == "UNAVAILABLE"
        assert resp.headers["Retry-After"] == "1"
        assert token.split(".")[1] not in await resp.text()
        # Not an OIDC credential: not this provider's to decide.
        assert (await api.get("/v2/", headers=basic("alice", "pw"))).status == 401
        oidc_issuer.start()
        assert (await api.get("/v2/", headers=bearer(token))).status == 200


async def test_issuer_down_mid_run_cached_keys_serve(api: Api, oidc_issuer: OidcIssuer) -> None:
    assert (await api.get("/v2/", headers=bearer(oidc_issuer.token()))).status == 200
    with oidc_issuer.down():
        api.client.session.headers.update(bearer(oidc_issuer.token(alg="ES256")))
        await api.push_image("team/app", "v1")
        assert (await api.get("/v2/team/app/manifests/v1")).status == 200


async def test_replicas_share_the_issuer_keys_through_redis(
    tmp_path: Path, oidc_issuer: OidcIssuer, redis_url: str
) -> None:
    """A second replica on the same Redis cache starts from the keys the first fetched, and
    picks up a rotation the first saw, without asking the issuer."""
    toml = fs_toml(tmp_path, f'[cache.redis]\nurl = "{redis_url}"\n' + oidc_toml(oidc_issuer))
    async with serve_config(toml, root=tmp_path) as first:
        assert (oidc_issuer.discovery_requests, oidc_issuer.jwks_requests) == (1, 1)
        async with serve_config(toml, root=tmp_path) as second:
            assert (oidc_issuer.discovery_requests, oidc_issuer.jwks_requests) == (1, 1)
            assert (await second.get("/v2/", headers=bearer(oidc_issuer.token()))).status == 200
            oidc_issuer.rotate("RS256")
            rotated = bearer(oidc_issuer.token())
            assert (await first.get("/v2/", headers=rotated)).status == 200
            assert oidc_issuer.jwks_requests == 2
            assert (await second.get("/v2/", headers=rotated)).status == 200
            assert oidc_issuer.jwks_requests == 2


async def test_with_the_token_service_oidc_credentials_get_registry_tokens(
    tmp_path: Path, oidc_issuer: OidcIssuer
) -> None:
    """Beside ``[auth.token_service]`` (the challenge becomes Bearer), docker's flow: the OIDC
    token as the Basic password of ``GET /token`` buys a registry token that pushes; an OIDC
    token sent as Bearer directly is accepted as well (not the token service's)."""
    secret = base64.b64encode(b"k" * 32).decode()
    toml = fs_toml(
        tmp_path, f'[auth.token_service]\nsecret_key = "{secret}"\n' + oidc_toml(oidc_issuer)
    )
    async with serve_config(toml, root=tmp_path) as api:
        challenge = await api.get("/v2/")
        assert challenge.status == 401
        assert challenge.headers["WWW-Authenticate"].startswith("Bearer ")
        oidc_token = oidc_issuer.token(sub="repo:team/app")
        assert (await api.get("/v2/", headers=bearer(oidc_token))).status == 200
        resp = await api.get(
            "/token",
            params={"service": "angos", "scope": "repository:team/app:pull,push"},
            headers=basic("github-actions", oidc_token),
        )
        assert resp.status == 200, await resp.text()
        registry_token = (await resp.json())["token"]
        assert registry_token != oidc_token
        api.client.session.headers.update(bearer(registry_token))
        await api.push_image("team/app", "v1")
        assert (await api.get("/v2/team/app/manifests/v1")).status == 200
        refused = await api.get("/token", headers=basic("github-actions", "not-a-jwt-at-all"))
        assert refused.status == 401
