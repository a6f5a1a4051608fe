"""Authentication over HTTP with the test authenticators (tests/support/auth.py): the 401
challenge, anonymous pushes refused, authenticated push and pull, 503 (never a pass) when a
provider is unreachable, the failure limit, the access log, metrics, and no credential in
any log line or body."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from angos_core.testing.api import Api, error_code, open_api
from tests.support.auth import TEST_AUTH_PLUGIN

PASSWORD = "alice-correct-password"
WRONG = "alice-wrong-password"
TOKEN = "Y2ktdG9rZW4tZm9yLWFwaS10ZXN0cw"
USERS = f'[auth.static.alice]\npassword = "{PASSWORD}"\n'
TOKEN_ISSUER = (
    f'[auth.static_token]\ntoken = "{TOKEN}"\nrealm = "https://auth.example.test/token"\n'
    'service = "registry.example.test"\n'
)
BASIC_CHALLENGE = 'Basic realm="angos"'


def basic(username: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


ALICE = basic("alice", PASSWORD)


async def _settled(caplog: pytest.LogCaptureFixture, logger: str, count: int) -> None:
    """Wait (bounded) for ``count`` records of ``logger``: the access log line is written
    once the response is out, which may be after the client has read it."""
    for _ in range(500):
        if sum(r.name == logger for r in caplog.records) >= count:
            return
        await asyncio.sleep(0.01)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """Authenticated as alice on every request."""
    async with open_api(tmp_path, USERS, [TEST_AUTH_PLUGIN], headers=ALICE) as api:
        yield api


@pytest.fixture
async def anonymous(api: Api) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the same server that sends no credentials."""
    async with aiohttp.ClientSession(base_url=api.client.make_url("/")) as session:
        yield session


async def test_get_v2_anonymous_is_the_challenge(anonymous: aiohttp.ClientSession) -> None:
    for method in ("GET", "HEAD"):
        resp = await anonymous.request(method, "/v2/")
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == BASIC_CHALLENGE
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    resp = await anonymous.get("/v2/")
    assert await error_code(resp) == "UNAUTHORIZED"


async def test_authenticated_get_v2(api: Api) -> None:
    resp = await api.get("/v2/")
    assert resp.status == 200
    assert "WWW-Authenticate" not in resp.headers


async def test_anonymous_push_and_pull_are_refused(
    api: Api, anonymous: aiohttp.ClientSession
) -> None:
    digest, body = await api.push_image("team/app", "v1")
    before = api.files()
    for method, path in [
        ("POST", "/v2/team/app/blobs/uploads/"),
        ("PUT", "/v2/team/app/manifests/v2"),
        ("DELETE", f"/v2/team/app/manifests/{digest}"),
        ("GET", f"/v2/team/app/manifests/{digest}"),
        ("GET", "/v2/team/app/tags/list"),
        ("GET", "/v2/_catalog"),
        ("GET", "/v2/no/such/endpoint"),
    ]:
        resp = await anonymous.request(method, path, data=body if method == "PUT" else None)
        assert resp.status == 401, (method, path, resp.status)
        assert resp.headers["WWW-Authenticate"] == BASIC_CHALLENGE
        assert await error_code(resp) == "UNAUTHORIZED"
    assert api.files() == before  # nothing written, nothing deleted


async def test_authenticated_push_pull_delete(api: Api) -> None:
    digest, body = await api.push_image("team/app", "v1")
    resp = await api.get("/v2/team/app/manifests/v1")
    assert resp.status == 200 and await resp.read() == body
    assert (await (await api.get("/v2/team/app/tags/list")).json())["tags"] == ["v1"]
    assert (await (await api.get("/v2/_catalog")).json())["repositories"] == ["team/app"]
    assert (await api.request("DELETE", f"/v2/team/app/manifests/{digest}")).status == 202


async def test_wrong_password_is_401_at_once(api: Api, anonymous: aiohttp.ClientSession) -> None:
    resp = await anonymous.get("/v2/", headers=basic("alice", WRONG))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == BASIC_CHALLENGE
    body = await resp.text()
    assert "invalid username or password" in body
    assert WRONG not in body and PASSWORD not in body


async def test_unknown_user_is_anonymous(anonymous: aiohttp.ClientSession) -> None:
    resp = await anonymous.get("/v2/", headers=basic("mallory", WRONG))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == BASIC_CHALLENGE


@pytest.mark.parametrize(
    "header",
    ["Basic !!!", "Bearer", "Digest username=alice", "Bearer a b", "just-a-token-value"],
)
async def test_malformed_authorization_is_401_with_a_message(
    anonymous: aiohttp.ClientSession, header: str
) -> None:
    resp = await anonymous.get("/v2/", headers={"Authorization": header})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == BASIC_CHALLENGE
    message = (await resp.json())["errors"][0]["message"]
    assert message.startswith("Authorization header")
    assert "just-a-token-value" not in message


async def test_health_endpoints_stay_open(anonymous: aiohttp.ClientSession) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        resp = await anonymous.get(path)
        assert resp.status == 200, path


async def test_unreachable_provider_is_503_never_a_pass(tmp_path: Path) -> None:
    """A provider that cannot decide answers 503, even for credentials another authenticator
    would accept: it runs first (order 20 < Basic's 40) and never lets them through."""
    toml = USERS + "[auth.unreachable]\nfail = true\n"
    async with open_api(tmp_path, toml, [TEST_AUTH_PLUGIN], headers=ALICE) as api:
        for method, path in [("GET", "/v2/"), ("POST", "/v2/team/app/blobs/uploads/")]:
            resp = await api.request(method, path)
            assert resp.status == 503, (method, path)
            assert resp.headers["Retry-After"] == "1"
            assert await error_code(resp) == "UNAVAILABLE"
            detail = (await resp.json())["errors"][0]
            assert detail["detail"] == {"authenticator": "unreachable"}
            assert "issuer did not answer" in detail["message"]
        assert api.files() == set()
        # Without credentials nobody is asked: the ordinary challenge.
        async with aiohttp.ClientSession(base_url=api.client.make_url("/")) as anonymous:
            assert (await anonymous.get("/v2/")).status == 401


async def test_bearer_challenge_names_the_scope(tmp_path: Path) -> None:
    async with open_api(tmp_path, USERS + TOKEN_ISSUER, [TEST_AUTH_PLUGIN]) as api:
        realm = 'Bearer realm="https://auth.example.test/token",service="registry.example.test"'
        cases = [
            ("GET", "/v2/", realm),
            ("GET", "/v2/team/app/manifests/v1", realm + ',scope="repository:team/app:pull"'),
            (
                "HEAD",
                "/v2/team/app/blobs/sha256:" + "a" * 64,
                realm + ',scope="repository:team/app:pull"',
            ),
            ("PUT", "/v2/team/app/manifests/v1", realm + ',scope="repository:team/app:pull,push"'),
            (
                "POST",
                "/v2/team/app/blobs/uploads/",
                realm + ',scope="repository:team/app:pull,push"',
            ),
            (
                "POST",
                "/v2/team/app/blobs/uploads/?mount=sha256:" + "a" * 64 + "&from=team/base",
                realm + ',scope="repository:team/app:pull,push repository:team/base:pull"',
            ),
            ("DELETE", "/v2/team/app/manifests/v1", realm + ',scope="repository:team/app:delete"'),
            ("GET", "/v2/_catalog", realm + ',scope="registry:catalog:*"'),
        ]
        for method, path, challenge in cases:
            resp = await api.request(method, path)
            assert resp.status == 401, (method, path)
            assert resp.headers["WWW-Authenticate"] == challenge, (method, path)
        # The token works as Bearer, Basic still works beside it.
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await api.get("/v2/", headers=bearer)).status == 200
        assert (await api.get("/v2/", headers=ALICE)).status == 200
        bad = await api.get("/v2/", headers={"Authorization": "Bearer d3JvbmctdG9rZW4"})
        assert bad.status == 401 and bad.headers["WWW-Authenticate"] == realm


async def test_no_credential_in_logs_or_bodies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = (PASSWORD, WRONG, TOKEN, base64.b64encode(f"alice:{PASSWORD}".encode()).decode())
    bodies: list[str] = []
    statuses: list[int] = []
    with caplog.at_level(logging.DEBUG):
        toml = USERS + TOKEN_ISSUER
        async with open_api(tmp_path, toml, [TEST_AUTH_PLUGIN], headers=ALICE) as api:
            await api.push_image("team/app", "v1")
            for headers in (
                ALICE,
                basic("alice", WRONG),
                {"Authorization": f"Bearer {TOKEN}"},
                {"Authorization": "Bearer d3JvbmctdG9rZW4"},
                {"Authorization": f"Basic {secrets[3]}x"},
                {"Authorization": f"{TOKEN}"},
            ):
                for path in ("/v2/", "/v2/team/app/manifests/v1", f"/v2/_catalog?token={TOKEN}"):
                    resp = await api.get(path, headers=headers)
                    statuses.append(resp.status)
                    bodies.append(await resp.text())
                    bodies.append(str(resp.headers))
            await _settled(caplog, "angos.access", len(statuses) + 3)
    text = "\n".join(
        [r.getMessage() for r in caplog.records]
        + [str(getattr(r, "fields", "")) for r in caplog.records]
    )
    # Every kind of answer was given (the per-request header replaced the client's).
    assert {200, 401} <= set(statuses)
    for secret in secrets:
        assert secret not in text
        assert not any(secret in body for body in bodies)


async def test_access_log_names_the_identity(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="angos.access"):
        assert (await api.get("/v2/")).status == 200
        async with aiohttp.ClientSession(base_url=api.client.make_url("/")) as anonymous:
            assert (await anonymous.get("/v2/")).status == 401
        await _settled(caplog, "angos.access", 2)
    lines = [r for r in caplog.records if r.name == "angos.access"]
    assert len(lines) == 2
    authenticated, anonymous_line = lines
    assert authenticated.getMessage().endswith(' identity="alice" provider=static')
    assert authenticated.fields["identity"] == "alice"  # type: ignore[attr-defined]
    assert authenticated.fields["provider"] == "static"  # type: ignore[attr-defined]
    assert "identity" not in anonymous_line.getMessage()
    assert "identity" not in anonymous_line.fields  # type: ignore[attr-defined]


async def test_auth_attempt_metrics(api: Api, anonymous: aiohttp.ClientSession) -> None:
    await api.get("/v2/")
    await api.get("/v2/")
    await anonymous.get("/v2/", headers=basic("alice", WRONG))
    await anonymous.get("/v2/", headers=basic("nobody", WRONG))
    await anonymous.get("/v2/")  # no credentials: no attempt
    text = await (await api.get("/metrics")).text()
    assert 'angos_auth_attempts_total{method="basic",result="success"} 2.0' in text
    assert 'angos_auth_attempts_total{method="basic",result="failure"} 1.0' in text
    assert 'angos_auth_attempts_total{method="basic",result="unrecognized"} 1.0' in text


async def test_failure_limit_spares_other_clients(tmp_path: Path) -> None:
    """1,000 wrong passwords from one address: 429 with Retry-After after the limit; another
    address's authenticated pulls meanwhile all succeed (same username, even)."""
    toml = USERS + "[auth.failure_limit]\nmax_failures = 10\nwindow_secs = 600\n"
    async with open_api(tmp_path, toml, [TEST_AUTH_PLUGIN], headers=ALICE) as api:
        await api.push_image("team/app", "v1")
        url = api.client.make_url("/")
        # All of 127.0.0.0/8 is loopback: the attacker connects from another address.
        attacker_connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), limit=20)
        statuses: dict[int, int] = {}
        retry_after: set[str] = set()
        pulls: list[int] = []

        async def attack(session: aiohttp.ClientSession) -> None:
            for _ in range(50):
                resp = await session.get("/v2/team/app/manifests/v1", headers=basic("alice", WRONG))
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status == 429:
                    retry_after.add(resp.headers["Retry-After"])
                await resp.read()

        async def pull() -> None:
            for _ in range(100):
                resp = await api.get("/v2/team/app/manifests/v1")
                pulls.append(resp.status)
                await resp.read()
                await asyncio.sleep(0)

        async with aiohttp.ClientSession(base_url=url, connector=attacker_connector) as attacker:
            await asyncio.gather(*(attack(attacker) for _ in range(20)), pull())
    assert statuses == {401: 10, 429: 990}
    assert all(1 <= int(value) <= 600 for value in retry_after)
    assert pulls == [200] * 100
