"""``angos gc``: content pushed through the HTTP API on real stores, then the CLI entry point.

On every storage shape (tests/support/storage.py).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from angos_core import layout
from angos_core.cli import main
from angos_core.oci import mediatypes as mt
from tests.support.api import OCI_CONFIG, OCI_LAYER, Api, descriptor, digest_of
from tests.support.storage import Storage


@dataclass
class Env:
    """A config file for ``angos gc`` and the storage it names."""

    config: Path
    storage: Storage

    def api(self) -> AbstractAsyncContextManager[Api]:
        return self.storage.open_api()


@pytest.fixture
def env(storage: Storage, tmp_path: Path) -> Env:
    cfg = tmp_path / "config.toml"
    cfg.write_text(storage.toml())
    return Env(cfg, storage)


async def gc(env: Env, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    # main() runs its own event loop, so it runs in a thread here.
    code = await asyncio.to_thread(main, ["gc", "-c", str(env.config), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def data_key(digest: str) -> str:
    return layout.blob_data_key(digest)


async def push_manifest(api: Api, name: str, ref: str, doc: dict[str, Any]) -> str:
    body = json.dumps(doc).encode()
    media_type = doc["mediaType"]
    resp = await api.put_manifest(name, ref, body, media_type)
    assert resp.status == 201, await resp.text()
    return digest_of(body)


async def push_image(api: Api, name: str, ref: str | None, *layers: bytes, **extra: Any) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": repr(layers)}).encode()
    for blob in (config, *layers):
        await api.push_blob(name, blob)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config, OCI_CONFIG),
        "layers": [descriptor(layer, OCI_LAYER) for layer in layers],
        **extra,
    }
    body = json.dumps(doc).encode()
    return await push_manifest(api, name, ref or digest_of(body), doc)


async def push_index(api: Api, name: str, ref: str, children: list[str]) -> str:
    manifests = []
    for child in children:
        resp = await api.get(f"/v2/{name}/manifests/{child}", headers={"Accept": mt.OCI_MANIFEST})
        manifests.append(descriptor(await resp.read(), mt.OCI_MANIFEST))
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    return await push_manifest(api, name, ref, doc)


def subject_of(body: bytes) -> dict[str, Any]:
    return {"subject": descriptor(body, mt.OCI_MANIFEST)}


async def body_of(api: Api, name: str, digest: str) -> bytes:
    resp = await api.get(f"/v2/{name}/manifests/{digest}", headers={"Accept": mt.OCI_MANIFEST})
    assert resp.status == 200
    return await resp.read()


async def assert_pullable(api: Api, name: str, blobs: dict[str, bytes]) -> None:
    for digest, data in blobs.items():
        resp = await api.get(f"/v2/{name}/blobs/{digest}")
        assert resp.status == 200, (name, digest)
        assert await resp.read() == data
        assert (await api.head(f"/v2/{name}/blobs/{digest}")).status == 200


async def test_gc_sweeps_exactly_the_unreferenced(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    shared, only_a, old_layer, orphan = b"shared layer", b"a's layer", b"old layer", b"orphan"
    child1, child2, art = b"child one", b"child two", b"signature"
    async with env.api() as api:
        image_a = await push_image(api, "a", "v1", shared, only_a)
        await push_image(api, "b", "v1", shared)
        old = await push_image(api, "b", "old", old_layer)
        c1 = await push_image(api, "a", None, child1)
        c2 = await push_image(api, "a", None, child2)
        index = await push_index(api, "a", "multi", [c1, c2])
        referrer = await push_image(
            api, "a", None, art, **subject_of(await body_of(api, "a", image_a))
        )
        await api.push_blob("b", orphan)
        old_config = json.loads(await body_of(api, "b", old))["config"]["digest"]
        assert (await api.client.delete(f"/v2/b/manifests/{old}")).status == 202
        before = api.files()
    garbage = {digest_of(old_layer), digest_of(orphan), old_config}
    for digest in [*garbage, old]:
        assert data_key(digest) in before
    for digest in garbage:
        assert layout.layer_link_key("b", digest) in before

    code, out, _ = await gc(env, capsys, "--dry-run", "--min-age-secs", "0")
    assert code == 0, out
    lines = out.splitlines()
    for digest in [*garbage, old]:
        assert [line for line in lines if line.startswith("would delete") and digest in line]
    for digest in garbage:
        assert f"would delete layer link b/{digest}" in out
    assert "2 repositories, 6 manifests marked" in out
    async with env.api() as api:
        assert api.files() == before

    # Everything is younger than the default hour: nothing goes.
    code, out, _ = await gc(env, capsys)
    assert code == 0
    # (A manifest body that only the metadata store holds has no age: see gc.py.)
    assert not [
        line for line in out.splitlines() if line.startswith(("deleted blob", "deleted layer"))
    ]
    young = int(out.split(" unreferenced blobs kept as too young")[0].rsplit(" ", 1)[1])
    assert young >= len(garbage)
    async with env.api() as api:
        for digest in garbage:
            assert data_key(digest) in api.files()
            assert layout.layer_link_key("b", digest) in api.files()

    code, out, _ = await gc(env, capsys, "--min-age-secs", "0")
    assert code == 0, out
    assert "2 repositories, 6 manifests marked, 10 blobs marked" in out
    assert "3 layer links" in out
    async with env.api() as api:
        after = api.files()
        gone = before - after
        expected = {data_key(d) for d in [*garbage, old]}
        expected |= {layout.layer_link_key("b", d) for d in garbage}
        assert gone == expected
        assert after <= before
        await assert_pullable(api, "a", {digest_of(b): b for b in (shared, only_a, child1, child2)})
        await assert_pullable(api, "a", {digest_of(art): art})
        await assert_pullable(api, "b", {digest_of(shared): shared})
        for digest in (image_a, index, c1, c2, referrer):
            assert (await api.head(f"/v2/a/manifests/{digest}")).status == 200
        referrers = await (await api.get(f"/v2/a/referrers/{image_a}")).json()
        assert [m["digest"] for m in referrers["manifests"]] == [referrer]
        assert (await api.get(f"/v2/b/blobs/{digest_of(orphan)}")).status == 404

    # A second run finds nothing more.
    code, out, _ = await gc(env, capsys, "--min-age-secs", "0")
    assert code == 0
    assert not [line for line in out.splitlines() if line.startswith("deleted")]


async def test_gc_corrupt_manifest_deletes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with env.api() as api:
        digest = await push_image(api, "a", "v1", b"layer")
        await api.push_blob("a", b"garbage")
        await api.registry.stores.meta.put(data_key(digest), b"{not json")
        before = api.files()
    code, out, err = await gc(env, capsys, "--min-age-secs", "0")
    assert code == 1
    assert digest in err and "repository a" in err
    assert "deleted" not in out
    async with env.api() as api:
        assert api.files() == before


async def test_gc_delete_untagged(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    async with env.api() as api:
        tagged = await push_image(api, "c", "v1", b"tagged layer")
        c1 = await push_image(api, "c", None, b"index child 1")
        c2 = await push_image(api, "c", None, b"index child 2")
        index = await push_index(api, "c", "multi", [c1, c2])
        sig = await push_image(
            api, "c", None, b"signature of v1", **subject_of(await body_of(api, "c", tagged))
        )
        untagged = await push_image(api, "c", None, b"untagged layer")
        untagged_sig = await push_image(
            api,
            "c",
            None,
            b"signature of untagged",
            **subject_of(await body_of(api, "c", untagged)),
        )
        # A tag that moved on: the old manifest stays in the tag's index, so it is kept.
        moved = await push_image(api, "c", "moving", b"first version")
        await push_image(api, "c", "moving", b"second version")
        before = api.files()

    code, out, _ = await gc(env, capsys, "--delete-untagged", "--dry-run", "--min-age-secs", "0")
    assert code == 0, out
    assert f"would delete manifest c@{untagged}" in out
    assert f"would delete manifest c@{untagged_sig}" in out
    assert "would delete 2 untagged manifests" in out
    async with env.api() as api:
        assert api.files() == before

    code, out, _ = await gc(env, capsys, "--delete-untagged", "--min-age-secs", "0")
    assert code == 0, out
    assert "deleted 2 untagged manifests" in out
    async with env.api() as api:
        for digest in (untagged, untagged_sig):
            assert (await api.head(f"/v2/c/manifests/{digest}")).status == 404
            assert data_key(digest) not in api.files()
        for data in (b"untagged layer", b"signature of untagged"):
            assert data_key(digest_of(data)) not in api.files()
        for digest in (tagged, c1, c2, index, sig, moved):
            assert (await api.head(f"/v2/c/manifests/{digest}")).status == 200
        kept = [b"tagged layer", b"index child 1", b"index child 2", b"signature of v1"]
        await assert_pullable(api, "c", {digest_of(b): b for b in [*kept, b"first version"]})
        referrers = await (await api.get(f"/v2/c/referrers/{tagged}")).json()
        assert [m["digest"] for m in referrers["manifests"]] == [sig]


async def test_gc_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[blob_store.nope]\n")
    assert main(["gc", "-c", str(cfg)]) == 2
    assert "config error" in capsys.readouterr().err


def test_gc_store_failure_names_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[blob_store.fs]\nroot_dir = "{tmp_path}/file/data"\n')
    assert main(["gc", "-c", str(cfg), "--min-age-secs", "0"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("angos: fs: ")
    assert "deleted" not in captured.out
