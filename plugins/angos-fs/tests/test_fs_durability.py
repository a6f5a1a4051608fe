"""``sync_to_disk = true``: what is acknowledged is on disk, in the order that keeps it there.

The system calls the stores make are recorded (``mkdir``, ``fsync`` with the path of its fd,
``replace``, ``link``), still performed for real, and the order checked: a file's data is
fsynced before the name that publishes it appears, that name's directory is fsynced after
it appears and before the call returns, and every directory a write goes through is fsynced
into its parent first, including one a concurrent call created and has not fsynced yet
(issue 10, finding 8).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from angos_fs import FsBlobStore, FsConfig, FsMetadataStore

from angos_core import layout
from angos_core.protocols import UploadRef

Event = tuple[str, str, str]  # (call, path, thread name)


class Syscalls:
    """The recorded calls under one root, and hooks that may hold a call after it ran."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.events: list[Event] = []
        self._mutex = threading.Lock()
        #: (call, path) -> callback run in the calling thread after the real call.
        self.after: dict[tuple[str, str], Callable[[], None]] = {}

    def record(self, call: str, path: str) -> None:
        if not path.startswith(self.root):
            return
        with self._mutex:
            self.events.append((call, path, threading.current_thread().name))
        hook = self.after.pop((call, path), None)
        if hook is not None:
            hook()

    def clear(self) -> None:
        with self._mutex:
            self.events.clear()

    def index(self, call: str, path: str, start: int = 0) -> int:
        """The position of the first ``call`` on ``path`` at or after ``start``."""
        for i, (c, p, _) in enumerate(self.events[start:], start):
            if c == call and p == path:
                return i
        raise AssertionError(f"no {call} of {path} after #{start} in {self.calls()}")

    def calls(self) -> list[tuple[str, str]]:
        return [(c, os.path.relpath(p, self.root)) for c, p, _ in self.events]

    def check_dirs_durable_before(self, path: str, until: int) -> None:
        """Every directory made on the way to ``path`` was fsynced into its parent after
        it was made and before event ``until``."""
        for i, (c, d, _) in enumerate(self.events[:until]):
            if c == "mkdir":
                j = self.index("fsync", os.path.dirname(d), i + 1)
                assert j < until, f"{d} used before its parent was fsynced: {self.calls()}"


@pytest.fixture
def syscalls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Syscalls]:
    rec = Syscalls(tmp_path)
    real_mkdir, real_fsync, real_replace, real_link = os.mkdir, os.fsync, os.replace, os.link

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        real_mkdir(path, *args, **kwargs)
        rec.record("mkdir", os.fspath(path))

    def fsync(fd: int) -> None:
        real_fsync(fd)
        rec.record("fsync", os.readlink(f"/proc/self/fd/{fd}"))

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real_replace(src, dst, *args, **kwargs)
        rec.record("replace", os.fspath(dst))

    def link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real_link(src, dst, *args, **kwargs)
        rec.record("link", os.fspath(dst))

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    yield rec


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[FsBlobStore, FsMetadataStore]]:
    config = FsConfig(root_dir=str(tmp_path / "data"), sync_to_disk=True)
    blobs, meta = FsBlobStore(config), FsMetadataStore(config)
    await blobs.open()
    await meta.open()
    yield blobs, meta


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def path_of(store: FsBlobStore | FsMetadataStore, key: str) -> str:
    return store.paths.path(key)


class Held:
    """Hold a pool thread inside a call, right after the recorded system call ``what``."""

    def __init__(self, rec: Syscalls, call: str, path: str) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

        def hold() -> None:
            self.reached.set()
            assert self.release.wait(30), "never released"

        rec.after[(call, path)] = hold

    async def wait_reached(self) -> None:
        assert await asyncio.to_thread(self.reached.wait, 30), "the held call never got there"


# ---------------------------------------------------------------------- blob commit


async def test_blob_commit_fsyncs_file_then_renames_then_fsyncs_dir(
    stores: tuple[FsBlobStore, FsMetadataStore], syscalls: Syscalls
) -> None:
    blobs, _ = stores
    upload = UploadRef("lib/app", str(uuid.uuid4()))
    await blobs.upload_start(upload)
    await blobs.upload_append(upload, 0, chunks(b"layer bytes"))
    source = path_of(blobs, layout.upload_key(upload))
    digest = sha256(b"layer bytes")
    target = path_of(blobs, layout.blob_data_key(digest))

    syscalls.clear()
    await blobs.upload_commit(upload, digest)
    file_synced = syscalls.index("fsync", source)
    renamed = syscalls.index("replace", target)
    assert file_synced < renamed, syscalls.calls()
    syscalls.index("fsync", os.path.dirname(target), renamed + 1)
    syscalls.check_dirs_durable_before(target, renamed)


async def test_blob_commit_after_an_append_cut_short_still_fsyncs(
    stores: tuple[FsBlobStore, FsMetadataStore], syscalls: Syscalls
) -> None:
    """An append whose stream broke keeps its bytes (the client resumes) without fsync; a
    commit right after it must not acknowledge them before they are on disk."""
    blobs, _ = stores
    upload = UploadRef("lib/app", str(uuid.uuid4()))
    await blobs.upload_start(upload)

    class ClientGone(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ClientGone

    with pytest.raises(ClientGone):
        await blobs.upload_append(upload, 0, broken())
    digest = sha256(b"partial")
    syscalls.clear()
    await blobs.upload_commit(upload, digest)
    source = path_of(blobs, layout.upload_key(upload))
    assert syscalls.index("fsync", source) < syscalls.index(
        "replace", path_of(blobs, layout.blob_data_key(digest))
    )


async def test_blob_commit_racing_a_commit_that_has_not_synced_yet(
    stores: tuple[FsBlobStore, FsMetadataStore], syscalls: Syscalls
) -> None:
    """The second commit of one digest finds the blob in place before the first commit
    fsynced its directory: it must not return until the blob is durable."""
    blobs, _ = stores
    digest = sha256(b"same")
    target = path_of(blobs, layout.blob_data_key(digest))
    first, second = (UploadRef("lib/app", str(uuid.uuid4())) for _ in range(2))
    for upload in (first, second):
        await blobs.upload_start(upload)
        await blobs.upload_append(upload, 0, chunks(b"same"))

    held = Held(syscalls, "replace", target)
    racing = asyncio.ensure_future(blobs.upload_commit(first, digest))
    try:
        await held.wait_reached()
        syscalls.clear()
        await blobs.upload_commit(second, digest)
        syscalls.index("fsync", os.path.dirname(target))
    finally:
        held.release.set()
        await racing
    assert await blobs.stat(digest) == 4


# ---------------------------------------------------------------------- metadata


@pytest.mark.parametrize("operation", ["put", "create"])
async def test_metadata_write_order(
    stores: tuple[FsBlobStore, FsMetadataStore], syscalls: Syscalls, operation: str
) -> None:
    """Into an existing directory: a temporary file, fsynced, published by rename or link,
    then its directory fsynced."""
    _, meta = stores
    key = "v2/repositories/lib/app/_manifests/tags/v1/current/link"
    target = path_of(meta, key)
    await meta.put(os.path.dirname(key) + "/placeholder", b"")
    syscalls.clear()
    if operation == "put":
        await meta.put(key, b"sha256:" + b"0" * 64)
        published = syscalls.index("replace", target)
    else:
        assert await meta.create(key, b"sha256:" + b"0" * 64)
        published = syscalls.index("link", target)
    temp_fsyncs = [
        i
        for i, (c, p, _) in enumerate(syscalls.events)
        if c == "fsync" and os.path.basename(p).startswith(".tmp-")
    ]
    assert temp_fsyncs and temp_fsyncs[0] < published, syscalls.calls()
    syscalls.index("fsync", os.path.dirname(target), published + 1)


@pytest.mark.parametrize("operation", ["put", "create"])
async def test_metadata_write_into_new_directories_order(
    stores: tuple[FsBlobStore, FsMetadataStore], syscalls: Syscalls, operation: str
) -> None:
    """Into missing directories: they and the file are made under a hidden name, every one
    fsynced, then renamed into place at once, and the parent fsynced after."""
    _, meta = stores
    await meta.put("v2/repositories/lib/app/_layers/placeholder", b"x")
    key = "v2/repositories/lib/app/_manifests/tags/v1/current/link"
    top = path_of(meta, "v2/repositories/lib/app/_manifests")
    syscalls.clear()
    write = meta.put if operation == "put" else meta.create
    assert await write(key, b"sha256:" + b"0" * 64) in (None, True)
    published = syscalls.index("replace", top)
    made = [p for c, p, _ in syscalls.events[:published] if c == "mkdir"]
    assert len(made) == 4, syscalls.calls()  # _manifests, tags, v1, current
    staging = made[0]
    assert os.path.basename(staging).startswith(".tmp-"), made
    assert os.path.dirname(staging) == os.path.dirname(top)
    file_synced = syscalls.index("fsync", os.path.join(made[-1], "link"))
    for directory in made:
        assert file_synced < syscalls.index("fsync", directory) < published, syscalls.calls()
    syscalls.index("fsync", os.path.dirname(top), published + 1)
    assert await meta.get(key) == b"sha256:" + b"0" * 64
    assert await meta.list_children("v2/repositories/lib/app/") == ["_layers", "_manifests"]


async def test_directory_made_by_a_concurrent_write_is_fsynced_before_use(
    stores: tuple[FsBlobStore, FsMetadataStore], syscalls: Syscalls
) -> None:
    """Two writes into one new directory: the first made it and is held before fsyncing
    its parent; the second must not publish a file in it until the parent is fsynced."""
    _, meta = stores
    await meta.put("v2/repositories/lib/app/_layers/placeholder", b"x")
    new_dir = path_of(meta, "v2/repositories/lib/app/_manifests")
    # Held after renaming the new directory into place, before fsyncing its parent.
    held = Held(syscalls, "replace", new_dir)
    first = asyncio.ensure_future(meta.put("v2/repositories/lib/app/_manifests/a", b"a"))
    try:
        await held.wait_reached()
        syscalls.clear()
        for key, write in (
            ("v2/repositories/lib/app/_manifests/b", meta.put),
            ("v2/repositories/lib/app/_manifests/c", meta.create),
        ):
            await write(key, b"b")
            call = "replace" if write == meta.put else "link"
            published = syscalls.index(call, path_of(meta, key))
            parent_synced = syscalls.index("fsync", os.path.dirname(new_dir))
            assert parent_synced < published, syscalls.calls()
    finally:
        held.release.set()
        await first
    assert await meta.get("v2/repositories/lib/app/_manifests/a") == b"a"


async def test_create_of_a_key_a_racing_create_has_not_synced(
    stores: tuple[FsBlobStore, FsMetadataStore], syscalls: Syscalls
) -> None:
    """``create`` answering "already there" must mean "there, durably"."""
    _, meta = stores
    key = "v2/repositories/lib/app/_layers/sha256/" + "1" * 64 + "/link"
    target = path_of(meta, key)
    await meta.put(os.path.dirname(key) + "/placeholder", b"")
    held = Held(syscalls, "link", target)
    first = asyncio.ensure_future(meta.create(key, b"sha256:" + b"1" * 64))
    try:
        await held.wait_reached()
        syscalls.clear()
        assert not await meta.create(key, b"sha256:" + b"1" * 64)
        syscalls.index("fsync", os.path.dirname(target))
    finally:
        held.release.set()
        assert await first


async def test_removed_directory_is_fsynced_again_when_made_again(
    stores: tuple[FsBlobStore, FsMetadataStore], syscalls: Syscalls
) -> None:
    _, meta = stores
    key = "v2/repositories/lib/app/_manifests/tags/v1/current/link"
    await meta.put(key, b"x")
    await meta.put("v2/repositories/lib/app/_manifests/tags/v2/current/link", b"x")
    await meta.delete_prefix("v2/repositories/lib/app/_manifests/tags/v1/")
    syscalls.clear()
    await meta.put(key, b"y")
    tag_dir = path_of(meta, "v2/repositories/lib/app/_manifests/tags/v1")
    published = syscalls.index("replace", tag_dir)
    staging = next(p for c, p, _ in syscalls.events if c == "mkdir")
    assert syscalls.index("fsync", staging) < published, syscalls.calls()
    syscalls.index("fsync", os.path.dirname(tag_dir), published + 1)


# ---------------------------------------------------------------------- delete_prefix


async def test_delete_prefix_takes_the_tree_away_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``delete_prefix`` renames the directory to a hidden name, then removes that: while
    the removal runs (or if it is cut short) no listing shows any of the prefix, and a key
    written meanwhile (after the delete, so kept) is whole."""
    meta = FsMetadataStore(FsConfig(root_dir=str(tmp_path / "data")))
    await meta.open()
    tags = "v2/repositories/lib/app/_manifests/tags/"
    await meta.put(tags + "v1/current/link", b"a")
    await meta.create(tags + "v1/index/sha256/" + "a" * 64 + "/link", b"a")
    await meta.put(tags + "v2/current/link", b"b")
    real_rmdir = os.rmdir
    seen: list[list[str]] = []

    def rmdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if not seen:
            root = path_of(meta, tags + "v1/current/link").split("/v2/repositories")[0]
            seen.append(sorted(os.listdir(root + "/v2/repositories/lib/app/_manifests/tags")))
        real_rmdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", rmdir)
    await meta.delete_prefix(tags + "v1/")
    assert seen and [n for n in seen[0] if not n.startswith(".")] == ["v2"], seen
    assert await meta.list_children(tags) == ["v2"]
    monkeypatch.undo()
    await meta.put(tags + "v1/current/link", b"c")
    assert await meta.list_children(tags) == ["v1", "v2"]
    assert await meta.get(tags + "v1/current/link") == b"c"
    assert await meta.list_children(tags + "v1/") == ["current"]
