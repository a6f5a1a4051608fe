"""``FsBlobStore.list_uploads`` on what only disk can hold: a ``startedat`` as Distribution
writes it, one that is missing or unreadable, and directories the walk must skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from angos_fs import FsBlobStore, FsConfig

from angos_core import layout
from angos_core.protocols import UploadRef
from angos_core.testing.blob_store import listed_uploads

WEEK_AGO = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FsBlobStore]:
    blob_store = FsBlobStore(FsConfig(root_dir=str(tmp_path)))
    await blob_store.open()
    yield blob_store
    await blob_store.aclose()


async def started(store: FsBlobStore, name: str = "team/app") -> tuple[UploadRef, Path]:
    upload = UploadRef(name, str(uuid.uuid4()))
    await store.upload_start(upload)
    return upload, Path(store.paths.root) / layout.upload_prefix(upload)


@pytest.mark.parametrize(
    "text",
    [b"2026-01-02T03:04:05Z", b"2026-01-02T05:04:05+02:00\n", b"2026-01-02T03:04:05"],
)
async def test_start_time_is_read_from_startedat(store: FsBlobStore, text: bytes) -> None:
    upload, where = await started(store)
    (where / layout.STARTED_AT).write_bytes(text)
    assert await listed_uploads(store) == {upload: WEEK_AGO}


@pytest.mark.parametrize("damage", ["missing", "garbage"])
async def test_unreadable_start_time_falls_back_to_the_oldest_file(
    store: FsBlobStore, damage: str
) -> None:
    upload, where = await started(store)
    stamp = where / layout.STARTED_AT
    if damage == "missing":
        stamp.unlink()
    else:
        stamp.write_bytes(b"\xff not a time")
        os.utime(stamp, (WEEK_AGO.timestamp() + 60,) * 2)
    os.utime(where / "data", (WEEK_AGO.timestamp(),) * 2)
    os.utime(where, (WEEK_AGO.timestamp() + 120,) * 2)
    assert await listed_uploads(store) == {upload: WEEK_AGO}


async def test_an_emptied_session_directory_is_dated_by_itself(store: FsBlobStore) -> None:
    upload, where = await started(store)
    for child in where.iterdir():
        child.unlink()
    os.utime(where, (WEEK_AGO.timestamp(),) * 2)
    assert await listed_uploads(store) == {upload: WEEK_AGO}


async def test_the_walk_skips_what_cannot_be_a_name(store: FsBlobStore) -> None:
    upload, _ = await started(store, "team/app")
    root = Path(store.paths.root) / layout.REPOSITORIES
    # Sessions-looking directories where no repository can be: under reserved directories,
    # under a temporary file's name, and _uploads at the top (an empty name).
    for odd in ("team/app/_layers/x", "team/.tmp-1/y", "team/app/_manifests/z", ""):
        (root / odd / layout.UPLOADS_DIR / str(uuid.uuid4())).mkdir(parents=True)
    (root / "team" / "file-not-dir").write_bytes(b"")
    (root / "team" / "app" / layout.UPLOADS_DIR / "a-file").write_bytes(b"")
    assert set(await listed_uploads(store)) == {upload}


async def test_a_young_session_is_dated_now(store: FsBlobStore) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    upload, _ = await started(store)
    found = await listed_uploads(store)
    assert before <= found[upload] <= datetime.now(UTC) + timedelta(seconds=1)
