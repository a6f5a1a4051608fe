"""The live settings swap (angos_core.http.live): what a reload may change, that it builds
the new settings fully before swapping, keeps the old ones on any failure, and closes the old
authenticators once the requests that may use them are done."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from angos_core.config import AngosConfig
from angos_core.errors import ConfigError
from angos_core.http import config_from_toml
from angos_core.http.app import make_app
from angos_core.http.live import LIVE, ReloadRefused, check_reloadable, reload, reload_from
from angos_core.http.metrics import METRICS
from angos_core.testing.api import fs_toml
from tests.support.auth import TEST_AUTH_PLUGIN, StaticAuthenticator

Client = TestClient[web.Request, web.Application]
SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def users(*names: str) -> str:
    return "".join(f'[auth.static.{name}]\npassword = "{name}-pw"\n' for name in names)


def basic(user: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{user}-pw".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def parse(root: Path, extra: str) -> AngosConfig:
    return config_from_toml(fs_toml(root, extra), [TEST_AUTH_PLUGIN])


# --------------------------------------------------------------------------- comparing


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda root: fs_toml(root / "other"), "blob_store.fs.root_dir"),
        (lambda root: fs_toml(root, "[server]\nport = 9999\n"), "server.port"),
        (lambda root: fs_toml(root, "[log]\nlevel = 'debug'\n"), "log.level"),
        (lambda root: fs_toml(root, "[maintenance.gc]\ninterval_secs = 60\n"), "maintenance.gc"),
        (lambda root: fs_toml(root, "[global]\nmax_manifest_size = 10\n"), "global.max_manifest"),
        (lambda root: fs_toml(root, "[cache.memory]\n"), None),
        (
            lambda root: fs_toml(
                root, '[[repository."docker.io".upstream]]\nurl = "https://example.test"\n'
            ),
            "repository.docker.io.upstream",
        ),
        (
            lambda root: fs_toml(root, '[repository."team".retention_policy]\nrules = ["true"]\n'),
            "repository.team.retention_policy",
        ),
    ],
    ids=["storage", "server", "log", "gc", "global", "same-cache", "upstream", "retention"],
)
def test_what_needs_a_restart_is_refused_naming_the_key(
    tmp_path: Path, change: Callable[[Path], str], key: str | None
) -> None:
    old = config_from_toml(fs_toml(tmp_path))
    new = config_from_toml(change(tmp_path))
    if key is None:
        assert check_reloadable(old, new) == []
        return
    with pytest.raises(ReloadRefused) as refused:
        check_reloadable(old, new)
    assert str(refused.value).startswith(key), refused.value
    assert "restart angos" in str(refused.value)


def test_what_a_reload_may_change_is_listed(tmp_path: Path) -> None:
    old = config_from_toml(fs_toml(tmp_path))
    new = config_from_toml(
        fs_toml(
            tmp_path,
            "[global]\nimmutable_tags = true\n"
            "[maintenance.read_only]\nenabled = true\n"
            '[repository."team".access_policy]\nrules = ["true"]\n',
        )
    )
    changed = check_reloadable(old, new)
    assert "global.immutable_tags" in changed
    assert "maintenance.read_only.enabled" in changed
    assert any(key.startswith("repository.team.access_policy") for key in changed)


# --------------------------------------------------------------------------- swapping


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    app = make_app(parse(tmp_path, users("alice", "bob")))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_reload_swaps_the_chain_and_closes_the_old_one_after_its_requests(
    client: Client, tmp_path: Path
) -> None:
    app = client.app
    assert app is not None
    old_chain = app[LIVE].current.chain
    assert old_chain is not None
    (old,) = old_chain.authenticators
    assert isinstance(old, StaticAuthenticator)

    # A request whose body is still arriving when the reload swaps.
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1024
        await release.wait()
        yield b"y" * 1024

    start = await client.post("/v2/team/app/blobs/uploads/", headers=basic("bob"))
    assert start.status == 202
    slow = asyncio.create_task(
        client.patch(start.headers["Location"], data=body(), headers=basic("bob"))
    )
    await asyncio.sleep(0.2)
    await reload(app, parse(tmp_path, users("alice")), None)

    assert (await client.get("/v2/", headers=basic("bob"))).status == 401
    assert (await client.get("/v2/", headers=basic("alice"))).status == 200
    await asyncio.sleep(0.2)
    assert old.closed == 0  # the upload in flight started with it
    release.set()
    assert (await slow).status == 202  # authenticated before the swap: it completes
    for _ in range(50):
        if old.closed:
            break
        await asyncio.sleep(0.02)
    assert old.closed == 1


async def test_a_failed_reload_keeps_everything(client: Client, tmp_path: Path) -> None:
    app = client.app
    assert app is not None
    before = app[LIVE].current

    def broken() -> AngosConfig:
        raise ConfigError("global.access_policy.rules", "does not compile")

    assert not await reload_from(app, broken)
    # An authenticator that fails to open (its file is missing): the new chain is dropped.
    missing = tmp_path / "missing.htpasswd"
    htpasswd = f'[auth.htpasswd]\npath = "{missing}"\n'
    assert not await reload_from(app, lambda: parse(tmp_path, htpasswd))
    assert app[LIVE].current is before
    assert (await client.get("/v2/", headers=basic("bob"))).status == 200
    failures = app[METRICS].config_reloads.labels("failure")._value.get()
    assert failures == 2


async def test_the_token_service_cannot_come_or_go_by_reload(
    client: Client, tmp_path: Path
) -> None:
    app = client.app
    assert app is not None
    tokens = users("alice") + f'[auth.token_service]\nsecret_key = "{SECRET}"\n'
    with pytest.raises(ReloadRefused, match="token service"):
        await reload(app, parse(tmp_path, tokens), None)
    assert (await client.get("/token", headers=basic("alice"))).status == 404  # no endpoint


async def test_read_only_and_immutable_rules_reach_the_domain_together(
    client: Client, tmp_path: Path
) -> None:
    app = client.app
    assert app is not None
    from angos_core.http.context import REGISTRY

    registry = app[REGISTRY]
    assert not registry.writes.read_only
    extra = users("alice", "bob") + "[global]\nimmutable_tags = true\n"
    extra += "[maintenance.read_only]\nenabled = true\n"
    await reload(app, parse(tmp_path, extra), None)
    assert registry.writes.read_only
    assert registry.manifests.immutable.protects("team/app", "v1")
    assert app[LIVE].current.read_only
