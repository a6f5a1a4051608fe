"""Immutable tags: a protected tag is neither moved nor deleted, the same digest re-pushes,
exclusions and per-namespace overrides apply, bad patterns are load errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from angos_core.config import parse_config
from angos_core.errors import ConfigError
from angos_core.plugins import load_catalogue
from angos_core.testing.api import Api, error_code, open_api

CONFIG = """
[global]
immutable_tags = true
immutable_tags_exclusions = ["^latest$", "^dev-"]

[repository."sandbox"]
immutable_tags = false

[repository."strict"]
immutable_tags_exclusions = []
"""


@pytest.fixture
async def api(tmp_path: Path) -> Any:
    async with open_api(tmp_path, CONFIG) as api:
        yield api


async def _immutable(resp: Any, tag: str, verb: str) -> None:
    assert resp.status == 409, await resp.text()
    assert await error_code(resp) == "CONFLICT"
    body = await resp.json()
    assert body["errors"][0]["message"] == f"Tag '{tag}' is immutable and cannot be {verb}"
    assert body["errors"][0]["detail"] == {"tag": tag}


async def test_a_protected_tag_cannot_move(api: Api) -> None:
    first, body = await api.push_image("team/app", "v1", layer=b"one")
    second, other = await api.push_image("team/app", None, layer=b"two")  # by digest
    await _immutable(await api.put_manifest("team/app", "v1", other), "v1", "overwritten")
    resp = await api.get("/v2/team/app/manifests/v1")
    assert resp.headers["Docker-Content-Digest"] == first
    # The same digest again: nothing moves, it succeeds.
    resp = await api.put_manifest("team/app", "v1", body)
    assert resp.status == 201
    # A push by digest with ?tag= is refused whole: no tag of it moves.
    resp = await api.put_manifest("team/app", second, other, params=[("tag", "v9"), ("tag", "v1")])
    await _immutable(resp, "v1", "overwritten")
    assert (await api.get("/v2/team/app/manifests/v9")).status == 404


async def test_excluded_tags_move(api: Api) -> None:
    await api.push_image("team/app", "latest", layer=b"one")
    await api.push_image("team/app", "dev-feature", layer=b"one")
    second, other = await api.push_image("team/app", None, layer=b"two")
    for tag in ("latest", "dev-feature"):
        assert (await api.put_manifest("team/app", tag, other)).status == 201
        resp = await api.get(f"/v2/team/app/manifests/{tag}")
        assert resp.headers["Docker-Content-Digest"] == second
    assert (await api.request("DELETE", "/v2/team/app/manifests/latest")).status == 202


async def test_a_protected_tag_cannot_be_deleted(api: Api) -> None:
    digest, _ = await api.push_image("team/app", "v1")
    await _immutable(await api.request("DELETE", "/v2/team/app/manifests/v1"), "v1", "deleted")
    resp = await api.request("DELETE", f"/v2/team/app/manifests/{digest}")
    await _immutable(resp, "v1", "deleted")
    assert (await api.get("/v2/team/app/manifests/v1")).status == 200
    # An untagged manifest is no tag: it deletes.
    untagged, _ = await api.push_image("team/app", None, layer=b"untagged")
    assert (await api.request("DELETE", f"/v2/team/app/manifests/{untagged}")).status == 202


async def test_namespace_overrides(api: Api) -> None:
    _, other = await api.push_image("sandbox/x", None, layer=b"two")
    await api.push_image("sandbox/x", "v1", layer=b"one")
    assert (await api.put_manifest("sandbox/x", "v1", other)).status == 201  # mutable there
    # strict: immutable inherited, no exclusions: even latest is protected.
    _, other = await api.push_image("strict/x", None, layer=b"two")
    await api.push_image("strict/x", "latest", layer=b"one")
    await _immutable(await api.put_manifest("strict/x", "latest", other), "latest", "overwritten")
    # sandboxes (not under sandbox/): the global rule.
    _, other = await api.push_image("sandboxes", None, layer=b"two")
    await api.push_image("sandboxes", "v1", layer=b"one")
    await _immutable(await api.put_manifest("sandboxes", "v1", other), "v1", "overwritten")


async def test_off_by_default(tmp_path: Path) -> None:
    async with open_api(tmp_path) as api:
        await api.push_image("team/app", "v1", layer=b"one")
        _, other = await api.push_image("team/app", None, layer=b"two")
        assert (await api.put_manifest("team/app", "v1", other)).status == 201


def test_a_bad_exclusion_is_a_load_error() -> None:
    data = {
        "blob_store": {"fs": {"root_dir": "/nonexistent/angos-immutable"}},
        "global": {"immutable_tags": True, "immutable_tags_exclusions": ["^ok$", "(["]},
        "repository": {"team": {"immutable_tags_exclusions": ["*x"]}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, load_catalogue())
    keys = {error.key for error in caught.value.errors}
    assert keys == {
        "global.immutable_tags_exclusions[1]",
        'repository."team".immutable_tags_exclusions[0]',
    }
