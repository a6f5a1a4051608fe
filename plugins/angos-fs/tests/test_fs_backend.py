"""What only the fs stores promise: the on-disk layout, containment under ``root_dir``,
hidden temporary files, ``sync_to_disk``, and OS errors as typed backend errors."""

# Tests inspect the tree on disk directly; blocking the loop for that is fine here.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from angos_fs import FsBlobStore, FsConfig, FsMetadataStore
from angos_fs import files as fs_files

from angos_core import layout
from angos_core.config import parse_table
from angos_core.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    UploadOffsetMismatch,
)
from angos_core.plugins import load_catalogue
from angos_core.protocols import UploadRef

DIGEST = "sha256:" + "ab" * 32


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
async def blobs(root: Path) -> AsyncIterator[FsBlobStore]:
    store = FsBlobStore(FsConfig(root_dir=str(root)))
    await store.open()
    yield store
    await store.aclose()


@pytest.fixture
async def meta(root: Path) -> AsyncIterator[FsMetadataStore]:
    store = FsMetadataStore(FsConfig(root_dir=str(root)))
    await store.open()
    yield store
    await store.aclose()


# ---------------------------------------------------------------------- registration, config


def test_registered_through_the_entry_point() -> None:
    catalogue = load_catalogue()
    blob = catalogue.get("blob_store", "fs")
    meta = catalogue.get("metadata_store", "fs")
    assert blob.distribution == meta.distribution == "angos-fs"
    assert blob.config_type is FsConfig and meta.config_type is FsConfig
    assert {"local_files", "shared"} <= blob.capabilities
    assert {"atomic_create", "shared"} <= meta.capabilities
    assert isinstance(blob.factory(FsConfig()), FsBlobStore)
    assert isinstance(meta.factory(FsConfig()), FsMetadataStore)


def test_config_table() -> None:
    assert parse_table(FsConfig, {}, "blob_store.fs") == FsConfig("./registry-data", False)
    parsed = parse_table(FsConfig, {"root_dir": "/d", "sync_to_disk": True}, "blob_store.fs")
    assert parsed == FsConfig("/d", True)
    with pytest.raises(ConfigError) as info:
        parse_table(FsConfig, {"sync_to_disk": "yes"}, "blob_store.fs")
    assert info.value.key == "blob_store.fs.sync_to_disk"
    with pytest.raises(ConfigError) as info:
        parse_table(FsConfig, {"rootdir": "/d"}, "blob_store.fs")
    assert info.value.key == "blob_store.fs.rootdir"


async def test_open_creates_root_dir(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "c"
    await FsBlobStore(FsConfig(root_dir=str(root))).open()
    assert root.is_dir()


# ---------------------------------------------------------------------- layout on disk


async def test_blobs_and_uploads_use_the_distribution_layout(
    blobs: FsBlobStore, root: Path
) -> None:
    upload = UploadRef("library/ubuntu", str(uuid.uuid4()))
    await blobs.upload_start(upload)
    upload_dir = root / layout.upload_prefix(upload)
    assert (upload_dir / "data").is_file()
    started = (upload_dir / "startedat").read_text()
    assert started.endswith("Z") and "T" in started  # RFC 3339, as Distribution writes
    await blobs.upload_append(upload, 0, chunks(b"layer"))
    digest = sha256(b"layer")
    await blobs.upload_commit(upload, digest)
    hexpart = digest.split(":")[1]
    blob_file = root / "v2" / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"
    assert blob_file.read_bytes() == b"layer"
    assert blobs.local_path(digest) == str(blob_file)
    assert not upload_dir.exists()
    # The repository's now-empty _uploads directory is not left behind.
    assert not (root / layout.repository_prefix("library/ubuntu")).exists()


async def test_serves_a_store_distribution_wrote(root: Path) -> None:
    data = b"written by another registry"
    digest = sha256(data)
    path = root / layout.blob_data_key(digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    (root / "v2" / "blobs" / "sha256" / "ff" / ("f" * 64)).mkdir(parents=True)  # no data
    (root / "v2" / "blobs" / "sha256" / "stray-file").write_bytes(b"")
    link = root / layout.tag_current_key("library/app", "latest")
    link.parent.mkdir(parents=True)
    link.write_bytes(digest.encode())
    store = FsBlobStore(FsConfig(root_dir=str(root)))
    assert await store.stat(digest) == len(data)
    assert [d async for d in store.list_digests()] == [digest]
    meta = FsMetadataStore(FsConfig(root_dir=str(root)))
    assert await meta.get(layout.tag_current_key("library/app", "latest")) == digest.encode()
    assert await meta.list_children(layout.tags_prefix("library/app")) == ["latest"]


async def test_metadata_keys_are_files_under_root(meta: FsMetadataStore, root: Path) -> None:
    key = layout.revision_link_key("a/b", DIGEST)
    await meta.put(key, DIGEST.encode())
    assert (root / key).read_bytes() == DIGEST.encode()


async def test_deleting_prunes_empty_directories(
    blobs: FsBlobStore, meta: FsMetadataStore, root: Path
) -> None:
    upload = UploadRef("r", str(uuid.uuid4()))
    await blobs.upload_start(upload)
    await blobs.upload_append(upload, 0, chunks(b"x"))
    await blobs.upload_commit(upload, sha256(b"x"))
    await meta.put(layout.layer_link_key("r", sha256(b"x")), b"")
    await blobs.delete(sha256(b"x"))
    await meta.delete(layout.layer_link_key("r", sha256(b"x")))
    # Only the root itself and the blobs/repositories roots' parents may remain, all empty.
    assert not any(p.is_file() for p in root.rglob("*"))
    assert not (root / "v2" / "blobs" / "sha256").exists()
    assert not (root / "v2" / "repositories" / "r").exists()
    assert root.is_dir()


async def test_a_put_raced_by_a_prune_of_its_directory_still_lands(
    meta: FsMetadataStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.makedirs(exist_ok=True)`` raises ``FileExistsError`` when its mkdir finds the
    directory made by another writer and a delete's prune removes it (empty still) before
    makedirs checks it: the put makes it again (gc deletes tombstones 16 at a time)."""
    real = os.makedirs
    raced: list[str] = []

    def makedirs(name: str, *args: Any, **kw: Any) -> None:
        if not raced:
            raced.append(name)
            raise FileExistsError(17, "File exists", name)
        real(name, *args, **kw)

    monkeypatch.setattr(os, "makedirs", makedirs)
    fs_files.makedirs(str(root / "v2/_gc/doomed/sha256"), durable=False)
    assert raced
    monkeypatch.undo()
    await meta.put("v2/_gc/doomed/sha256/ab", b"")
    assert (root / "v2/_gc/doomed/sha256/ab").is_file()


async def test_a_put_whose_new_directory_loses_its_parent_to_a_prune_still_lands(
    meta: FsMetadataStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put into a missing directory makes it beside the topmost missing one: a delete's
    prune may remove that parent (empty) in between, and the put goes round again."""
    await meta.put("v2/_gc/keep", b"")
    real = os.mkdir
    pruned: list[str] = []

    def mkdir(name: str, *args: Any, **kw: Any) -> None:
        if not pruned:
            pruned.append(name)
            raise FileNotFoundError(2, "No such file or directory", name)
        real(name, *args, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    await meta.put("v2/_gc/doomed/sha256/ab", b"x")
    assert pruned
    assert (root / "v2/_gc/doomed/sha256/ab").read_bytes() == b"x"
    assert sorted(p.name for p in (root / "v2/_gc").iterdir()) == ["doomed", "keep"]


# ---------------------------------------------------------------------- containment

BAD_KEYS = [
    "../escape",
    "v2/../../escape",
    "/etc/passwd",
    "v2//double",
    "v2/./dot",
    "v2/nul\x00byte",
    ".hidden",
    "v2/.tmp-0123",
    "v2\\..\\escape",
    "",
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_keys_cannot_escape_root(
    meta: FsMetadataStore, root: Path, tmp_path: Path, key: str
) -> None:
    before = tree(tmp_path)
    operations: list[Callable[[], Any]] = [
        lambda: meta.get(key),
        lambda: meta.put(key, b"x"),
        lambda: meta.create(key, b"x"),
        lambda: meta.delete(key),
    ]
    for operation in operations:
        with pytest.raises(BackendError) as info:
            await operation()
        assert info.value.backend == "fs"
    assert tree(tmp_path) == before


@pytest.mark.parametrize("prefix", ["../", "v2/../../", "/etc/", "v2//", "v2/no-slash"])
async def test_prefixes_cannot_escape_root(
    meta: FsMetadataStore, tmp_path: Path, prefix: str
) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep").write_bytes(b"keep")
    with pytest.raises(BackendError):
        await meta.list_children(prefix)
    with pytest.raises(BackendError):
        await meta.delete_prefix(prefix)
    with pytest.raises(BackendError):
        await meta.delete_prefix("")  # never the whole store
    assert (tmp_path / "outside" / "keep").read_bytes() == b"keep"


async def test_blob_and_upload_keys_cannot_escape_root(blobs: FsBlobStore, tmp_path: Path) -> None:
    before = tree(tmp_path)
    with pytest.raises(BackendError):
        await blobs.stat("sha256:../../../../escape")
    with pytest.raises(BackendError):
        await blobs.upload_start(UploadRef("../../escape", str(uuid.uuid4())))
    with pytest.raises(BackendError):
        await blobs.upload_start(UploadRef("ok", "../../escape"))
    assert tree(tmp_path) == before


# ---------------------------------------------------------------------- temporary files


async def test_temp_files_are_never_keys(meta: FsMetadataStore, root: Path) -> None:
    base = layout.tags_prefix("repo")
    await meta.put(layout.tag_current_key("repo", "v1"), b"1")
    # Leftovers of a crash half way through a write.
    (root / base / ".tmp-crashed").write_bytes(b"partial")
    (root / base / "v1" / "current" / ".tmp-crashed").write_bytes(b"partial")
    assert await meta.list_children(base) == ["v1"]
    assert await meta.list_children(f"{base}v1/current/") == ["link"]
    for _ in range(20):
        await meta.put(layout.tag_current_key("repo", "v1"), os.urandom(100))
    results = await asyncio.gather(
        *(meta.create(layout.tag_current_key("repo", "v2"), b"x") for _ in range(10))
    )
    assert results.count(True) == 1
    written = {p.name for p in (root / base).rglob("*") if p.is_file()}
    assert written == {"link", ".tmp-crashed"}  # our own temp files never stay


# ---------------------------------------------------------------------- sync_to_disk


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record what os.fsync is called on ("file" or "dir"), still syncing for real."""
    calls: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return calls


@pytest.mark.parametrize("sync", [True, False])
async def test_sync_to_disk_fsyncs_file_and_directory(
    root: Path, fsyncs: list[str], sync: bool
) -> None:
    meta = FsMetadataStore(FsConfig(root_dir=str(root), sync_to_disk=sync))
    blobs = FsBlobStore(FsConfig(root_dir=str(root), sync_to_disk=sync))
    await meta.open()
    await blobs.open()

    fsyncs.clear()
    await meta.put("v2/repositories/r/key", b"value")
    assert ({"file", "dir"} <= set(fsyncs)) is sync and (fsyncs == []) is not sync

    fsyncs.clear()
    assert await meta.create("v2/repositories/r/new", b"value")
    assert ({"file", "dir"} <= set(fsyncs)) is sync and (fsyncs == []) is not sync

    upload = UploadRef("r", str(uuid.uuid4()))
    await blobs.upload_start(upload)
    fsyncs.clear()
    await blobs.upload_append(upload, 0, chunks(b"bytes"))
    assert (fsyncs == ["file"]) is sync and (fsyncs == []) is not sync

    fsyncs.clear()
    await blobs.upload_commit(upload, sha256(b"bytes"))
    assert ("dir" in fsyncs) is sync and (fsyncs == []) is not sync
    assert await blobs.stat(sha256(b"bytes")) == 5


# ---------------------------------------------------------------------- errors


async def test_disk_full_is_backend_unavailable(blobs: FsBlobStore, root: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    upload = UploadRef("r", str(uuid.uuid4()))
    await blobs.upload_start(upload)
    data = root / layout.upload_key(upload)
    data.unlink()
    data.symlink_to("/dev/full")
    with pytest.raises(BackendUnavailable) as info:
        await blobs.upload_append(upload, 0, chunks(b"x" * (2 * 1024 * 1024)))
    assert info.value.backend == "fs"
    assert "no space left on device" in str(info.value)


async def test_root_dir_that_is_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    for store in (
        FsBlobStore(FsConfig(root_dir=str(not_a_dir))),
        FsMetadataStore(FsConfig(root_dir=str(not_a_dir))),
    ):
        with pytest.raises(BackendUnavailable) as info:
            await store.open()
        assert info.value.backend == "fs"
        assert str(not_a_dir) in str(info.value)
    meta = FsMetadataStore(FsConfig(root_dir=str(not_a_dir / "sub")))
    with pytest.raises(BackendUnavailable):
        await meta.put("v2/x", b"")


async def test_health_notices_a_vanished_root(blobs: FsBlobStore, root: Path) -> None:
    await blobs.health()
    root.rmdir()
    with pytest.raises(BackendUnavailable):
        await blobs.health()


# ---------------------------------------------------------------------- appends


async def test_concurrent_append_to_one_session_is_refused(blobs: FsBlobStore) -> None:
    upload = UploadRef("r", str(uuid.uuid4()))
    await blobs.upload_start(upload)
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * 10
        started.set()
        await release.wait()
        yield b"b" * 10

    first = asyncio.create_task(blobs.upload_append(upload, 0, slow()))
    await asyncio.wait_for(started.wait(), 10)
    with pytest.raises(UploadOffsetMismatch):
        await blobs.upload_append(upload, 0, chunks(b"interleaved"))
    release.set()
    assert await first == 20
    assert b"".join([c async for c in blobs.upload_read(upload)]) == b"a" * 10 + b"b" * 10


async def test_large_streamed_append(blobs: FsBlobStore) -> None:
    upload = UploadRef("r", str(uuid.uuid4()))
    await blobs.upload_start(upload)
    hasher = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for i in range(320):  # 20 MiB in 64 KiB chunks, as a client streams it
            chunk = bytes([i % 256]) * 65536
            hasher.update(chunk)
            yield chunk

    assert await blobs.upload_append(upload, 0, body()) == 320 * 65536
    digest = "sha256:" + hasher.hexdigest()
    await blobs.upload_commit(upload, digest)
    check = hashlib.sha256()
    async for piece in blobs.read(digest):
        check.update(piece)
    assert "sha256:" + check.hexdigest() == digest


async def test_cancelled_append_leaves_a_usable_session(blobs: FsBlobStore) -> None:
    upload = UploadRef("r", str(uuid.uuid4()))
    await blobs.upload_start(upload)
    sent = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"z" * 300_000
            sent.set()
            await asyncio.sleep(0)

    task = asyncio.create_task(blobs.upload_append(upload, 0, endless()))
    await asyncio.wait_for(sent.wait(), 10)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)  # writes already handed to the I/O pool finish
    size = await blobs.upload_size(upload)
    assert size % 300_000 == 0
    assert await blobs.upload_append(upload, size, chunks(b"end")) == size + 3
    data = b"".join([c async for c in blobs.upload_read(upload)])
    assert data == b"z" * size + b"end"


async def test_cached_listing_sees_every_later_change(meta: FsMetadataStore) -> None:
    """A listing kept in the cache is dropped as soon as the directory changes."""
    prefix = "v2/repositories/r/_manifests/tags/"
    for tag in ("a", "c"):
        await meta.put(f"{prefix}{tag}/current/link", b"x")
    await asyncio.sleep(0.1)  # old enough for the listing to be cached
    assert await meta.list_children(prefix) == ["a", "c"]
    assert await meta.list_children(prefix, start_after="a", limit=1) == ["c"]

    await meta.put(f"{prefix}b/current/link", b"x")
    assert await meta.list_children(prefix) == ["a", "b", "c"]
    await asyncio.sleep(0.1)
    assert await meta.list_children(prefix) == ["a", "b", "c"]

    await meta.delete_prefix(f"{prefix}a/")
    assert await meta.list_children(prefix) == ["b", "c"]
    await meta.delete(f"{prefix}c/current/link")
    assert await meta.list_children(prefix) == ["b"]
