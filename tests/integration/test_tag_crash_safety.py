"""Tag writes cut short at every step leave the old tag, the new one or none (issue 10, #3).

A tag is a directory ``_manifests/tags/<tag>/`` holding an index entry per digest it has
pointed at and a ``current`` link. An index entry without its ``current`` link used to be a
phantom: listed by ``tags/list`` but answered 404 by ``GET`` and ``DELETE``. Now ``current``
is written first and removed last (with the directory, in one ``delete_prefix``), so a
directory is a tag that resolves and a listing need not read the links.

Each scenario pushes the setup unharmed, then runs one operation (tag a new manifest, move a
tag, delete a tag, delete the tagged manifest by digest) with the metadata store failing at
its n-th write, for every n until the operation gets through:

* ``enospc``: that one write raises ``OSError(ENOSPC)``, later ones succeed; the same
  process (and its cache) goes on serving;
* ``crash``: that write and every later one never happen, as if the process were killed;
  the registry is then restarted on the same store.

After each, every listed tag resolves (the listing reads no link: the write and delete
orders alone keep this), the tag under test is in an allowed state, it can be deleted and
pushed again. On fs the same runs with ``ENOSPC`` from the file system calls themselves,
where a write cut short must not leave a directory without objects behind either.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from angos_fs import files as fs_files
from angos_fs import metadata_store as fs_metadata

from angos_core import layout
from angos_core.http import make_app_from_toml
from angos_core.oci import mediatypes as mt
from tests.support.api import OCI_CONFIG, OCI_LAYER, Api, descriptor, digest_of, fs_toml
from tests.support.moto_server import S3Bucket

TAG = "v1"


class Crashed(Exception):
    """The simulated death of the process: nothing after it is written."""


class FaultyMetadataStore:
    """A metadata store whose ``fail_at``-th write (from 0) fails as ``mode`` says."""

    def __init__(self, inner: Any, fail_at: int, mode: str) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.mode = mode
        self.writes = 0
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _write(self, op: str, *args: Any) -> Any:
        if self.dead:
            raise Crashed(f"{op} after the crash")
        n = self.writes
        self.writes += 1
        if n == self.fail_at:
            if self.mode == "crash":
                self.dead = True
                raise Crashed(f"{op} #{n}")
            raise OSError(errno.ENOSPC, "No space left on device")
        return await getattr(self.inner, op)(*args)

    async def put(self, key: str, data: bytes) -> None:
        await self._write("put", key, data)

    async def create(self, key: str, data: bytes) -> bool:
        result: bool = await self._write("create", key, data)
        return result

    async def delete(self, key: str) -> bool:
        result: bool = await self._write("delete", key)
        return result

    async def delete_prefix(self, prefix: str) -> None:
        await self._write("delete_prefix", prefix)

    @property
    def triggered(self) -> bool:
        return self.writes > self.fail_at


class Backend:
    """One store (an fs root or a bucket) that registries can be opened and reopened on."""

    def __init__(self, root: Path, bucket: S3Bucket | None) -> None:
        self.root = root
        self.bucket = bucket

    @property
    def kind(self) -> str:
        return "fs" if self.bucket is None else "s3"

    def toml(self) -> str:
        if self.bucket is None:
            return fs_toml(self.root)
        return "[global]\nenable_redirect = false\n" + self.bucket.toml(
            "blob_store", key_prefix="registry/"
        )

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Api]:
        app = make_app_from_toml(self.toml())
        async with TestClient(TestServer(app)) as client:
            yield Api(client, self.root, app)


@pytest.fixture(params=["fs", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "fs":
        return Backend(tmp_path / "data", None)
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return Backend(tmp_path / "data", bucket)


def image(seed: str) -> tuple[bytes, bytes, bytes]:
    """(config, layer, manifest body) of a small image unique to ``seed``."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = f"layer {seed}".encode()
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": descriptor(config, OCI_CONFIG),
            "layers": [descriptor(layer, OCI_LAYER)],
        }
    ).encode()
    return config, layer, body


async def push_blobs(api: Api, name: str, seed: str) -> str:
    config, layer, body = image(seed)
    await api.push_blob(name, config)
    await api.push_blob(name, layer)
    return digest_of(body)


async def tag_state(api: Api, name: str, tag: str) -> str | None:
    """The digest ``tag`` resolves to, or None; a listed tag must resolve and vice versa."""
    resp = await api.get(f"/v2/{name}/tags/list")
    listed = (await resp.json())["tags"] if resp.status == 200 else []
    assert resp.status in (200, 404), await resp.text()
    for t in listed:
        got = await api.get(f"/v2/{name}/manifests/{t}", headers={"Accept": mt.OCI_MANIFEST})
        assert got.status == 200, f"tag {t!r} is listed but GET answers {got.status}"
        by_digest = await api.get(f"/v2/{name}/manifests/{got.headers['Docker-Content-Digest']}")
        assert by_digest.status == 200, f"tag {t!r} points at a manifest not in {name}"
    got = await api.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": mt.OCI_MANIFEST})
    if got.status == 404:
        assert tag not in listed
        return None
    assert got.status == 200
    assert tag in listed, f"tag {tag!r} resolves but is not listed"
    return got.headers["Docker-Content-Digest"]


async def check_repairable(api: Api, name: str, tag: str) -> None:
    """The tag, whatever is left of it, can be deleted, then pushed again."""
    resp = await api.request("DELETE", f"/v2/{name}/manifests/{tag}")
    assert resp.status in (202, 404), await resp.text()
    assert tag not in await api.registry.links.tags(name), "DELETE left the tag's directory"
    assert await tag_state(api, name, tag) is None
    body = image(f"new-{name}")[2]  # every setup pushed its blobs
    resp = await api.put_manifest(name, tag, body)
    assert resp.status == 201, await resp.text()
    assert await tag_state(api, name, tag) == digest_of(body)


# ---------------------------------------------------------------------- operations
#
# Each: (setup, operation, allowed states of TAG afterwards given the digests). The setup
# returns the digests involved: "old" (tagged before) and "new" (being tagged).

Setup = Callable[[Api, str], Awaitable[dict[str, str]]]
Operation = Callable[[Api, str, dict[str, str]], Awaitable[int]]


async def setup_new(api: Api, name: str) -> dict[str, str]:
    return {"new": await push_blobs(api, name, f"new-{name}")}


async def setup_tagged(api: Api, name: str) -> dict[str, str]:
    old = await push_blobs(api, name, f"old-{name}")
    resp = await api.put_manifest(name, TAG, image(f"old-{name}")[2])
    assert resp.status == 201
    # Another tag on the same manifest: deletes by digest must take it too.
    assert (await api.put_manifest(name, "other", image(f"old-{name}")[2])).status == 201
    new = await push_blobs(api, name, f"new-{name}")
    return {"old": old, "new": new}


async def op_tag(api: Api, name: str, d: dict[str, str]) -> int:
    return (await api.put_manifest(name, TAG, image(f"new-{name}")[2])).status


async def op_delete_tag(api: Api, name: str, d: dict[str, str]) -> int:
    return (await api.request("DELETE", f"/v2/{name}/manifests/{TAG}")).status


async def op_delete_manifest(api: Api, name: str, d: dict[str, str]) -> int:
    return (await api.request("DELETE", f"/v2/{name}/manifests/{d['old']}")).status


OPERATIONS: dict[str, tuple[Setup, Operation, Callable[[dict[str, str]], set[str | None]], int]] = {
    "create": (setup_new, op_tag, lambda d: {None, d["new"]}, 201),
    "move": (setup_tagged, op_tag, lambda d: {d["old"], d["new"]}, 201),
    "delete-tag": (setup_tagged, op_delete_tag, lambda d: {d["old"], None}, 202),
    "delete-manifest": (setup_tagged, op_delete_manifest, lambda d: {d["old"], None}, 202),
}


@pytest.mark.parametrize("mode", ["enospc", "crash"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_tag_write_cut_short_at_every_step(
    backend: Backend, operation: str, mode: str
) -> None:
    setup, run, allowed, ok_status = OPERATIONS[operation]
    completed = False
    n = 0
    async with backend.open() as api:
        while not completed:
            assert n < 20, "the operation never completed"
            name = f"{operation}/n{n}"
            digests = await setup(api, name)
            meta = api.registry.stores.meta
            faulty = FaultyMetadataStore(meta.inner, n, mode)
            meta.inner = faulty
            try:
                status = await run(api, name, digests)
            finally:
                meta.inner = faulty.inner
            completed = not faulty.triggered
            assert status == (ok_status if completed else 503), (n, status)
            if mode == "crash":
                async with backend.open() as restarted:
                    await check_after(restarted, name, allowed(digests), digests)
            else:
                await check_after(api, name, allowed(digests), digests)
            n += 1
    assert n >= 2, "the operation wrote nothing"


async def check_after(api: Api, name: str, allowed: set[str | None], d: dict[str, str]) -> None:
    state = await tag_state(api, name, TAG)
    assert state in allowed, state
    if "old" in d:
        other = await tag_state(api, name, "other")
        assert other in (d["old"], None)
    await check_repairable(api, name, TAG)


# ---------------------------------------------------------------------- half-written tags


async def test_a_half_written_tag_of_an_older_writer_is_listed_and_deletable(
    backend: Backend,
) -> None:
    """An index entry without ``current``, as an older Angos or Distribution could leave
    (this version writes ``current`` first): listed, as Distribution lists it, answered 404
    by ``GET``, removed by ``DELETE`` (and reported by ``angos scrub``), tagged again by a
    push."""
    async with backend.open() as api:
        digest = await push_blobs(api, "lib/app", "half")
        assert (await api.put_manifest("lib/app", digest, image("half")[2])).status == 201
        assert (await api.put_manifest("lib/app", "kept", image("half")[2])).status == 201
        meta = api.registry.stores.meta
        await meta.create(layout.tag_index_key("lib/app", "half", digest), digest.encode())

        resp = await api.get("/v2/lib/app/tags/list")
        assert (await resp.json())["tags"] == ["half", "kept"]
        resp = await api.get("/v2/lib/app/manifests/half")
        assert resp.status == 404

        resp = await api.request("DELETE", "/v2/lib/app/manifests/half")
        assert resp.status == 202, await resp.text()
        resp = await api.get("/v2/lib/app/tags/list")
        assert (await resp.json())["tags"] == ["kept"]
        resp = await api.request("DELETE", "/v2/lib/app/manifests/half")
        assert resp.status == 404

        await meta.create(layout.tag_index_key("lib/app", "half", digest), digest.encode())
        assert (await api.put_manifest("lib/app", "half", image("half")[2])).status == 201
        assert await tag_state(api, "lib/app", "half") == digest
        assert await tag_state(api, "lib/app", "kept") == digest


async def test_a_tag_page_is_one_listing_and_reads_no_key(backend: Backend) -> None:
    """Every directory is a tag that resolves (the property the write and delete orders
    above keep), so a page lists names and reads no ``current`` link."""
    async with backend.open() as api:
        digest = await push_blobs(api, "lib/app", "page")
        body = image("page")[2]
        for tag in ("a", "b", "c", "d", "e"):
            assert (await api.put_manifest("lib/app", tag, body)).status == 201
        assert (await api.request("DELETE", "/v2/lib/app/manifests/d")).status == 202
        meta = api.registry.stores.meta
        counted = CountingMetadataStore(meta.inner)
        meta.inner = counted
        try:
            resp = await api.get("/v2/lib/app/tags/list?n=2")
            assert (await resp.json())["tags"] == ["a", "b"]
            assert resp.headers["Link"] == '</v2/lib/app/tags/list?n=2&last=b>; rel="next"'
            resp = await api.get("/v2/lib/app/tags/list?n=2&last=b")
            assert (await resp.json())["tags"] == ["c", "e"]
            assert "Link" not in resp.headers
        finally:
            meta.inner = counted.inner
        assert counted.calls == {"list_children_page": 2}, counted.calls
        assert await tag_state(api, "lib/app", "e") == digest


class CountingMetadataStore:
    """Counts the calls made to the store it wraps."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return call


# ---------------------------------------------------------------------- fs system calls


class _FsFaults:
    """``os`` for the fs plugin's modules, failing its ``fail_at``-th write call with ENOSPC."""

    CALLS = ("mkdir", "open", "write", "link", "replace", "fsync")

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.calls = 0
        self._mutex = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self.CALLS:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            if name == "open" and not (args[1] & os.O_CREAT):
                return real(*args, **kwargs)
            with self._mutex:
                n = self.calls
                self.calls += 1
            if n == self.fail_at:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return call


@pytest.mark.parametrize("operation", ["create", "move"])
async def test_fs_enospc_in_any_system_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    backend = Backend(tmp_path / "data", None)
    setup, run, allowed, ok_status = OPERATIONS[operation]
    async with backend.open() as api:
        for n in range(60):
            name = f"{operation}/n{n}"
            digests = await setup(api, name)
            faults = _FsFaults(n)
            with monkeypatch.context() as patch:
                patch.setattr(fs_metadata, "os", faults)
                patch.setattr(fs_files, "os", faults)
                status = await run(api, name, digests)
            if faults.calls <= n:
                assert status == ok_status
                break
            assert status == 503, (n, status)
            await check_after(api, name, allowed(digests), digests)
        else:
            raise AssertionError("the operation never completed")
        assert n >= 5
