"""What is particular to the SQLite store, beyond the shared contract."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from angos_sqlite import SqliteConfig, SqliteMetadataStore

from angos_core import layout
from angos_core.errors import BackendError, BackendUnavailable

KEY = layout.tag_current_key("lib/app", "1.0")


async def test_objects_survive_a_restart(tmp_path: Path) -> None:
    config = SqliteConfig(path=tmp_path / "deep" / "dir" / "meta.db")
    first = SqliteMetadataStore(config)
    await first.open()
    await first.put(KEY, b"sha256:abc")
    await first.aclose()

    second = SqliteMetadataStore(config)
    await second.open()
    try:
        assert await second.get(KEY) == b"sha256:abc"
        assert await second.list_children(layout.tags_prefix("lib/app")) == ["1.0"]
    finally:
        await second.aclose()


async def test_two_stores_on_one_file_share_create(tmp_path: Path) -> None:
    # Two connections stand for two registry processes on one host.
    config = SqliteConfig(path=tmp_path / "meta.db")
    a, b = SqliteMetadataStore(config), SqliteMetadataStore(config)
    await a.open()
    await b.open()
    try:
        assert await a.create(KEY, b"from a") is True
        assert await b.create(KEY, b"from b") is False
        assert await b.get(KEY) == b"from a"
    finally:
        await a.aclose()
        await b.aclose()


async def test_wal_mode_and_readable_keys(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    store = SqliteMetadataStore(SqliteConfig(path=path, synchronous="full"))
    await store.open()
    await store.put(KEY, b"x")
    await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # What the README tells operators to run to read keys by hand.
        rows = conn.execute("SELECT replace(key, char(1), '/') FROM objects").fetchall()
    conn.close()
    assert rows == [(KEY,)]


async def test_a_held_write_lock_is_unavailable_after_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    store = SqliteMetadataStore(SqliteConfig(path=path, busy_timeout_ms=50))
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(BackendUnavailable) as info:
            await store.put(KEY, b"x")
        assert info.value.backend == "sqlite"
        assert "locked" in str(info.value)
        other.execute("ROLLBACK")
        await store.put(KEY, b"x")
        assert await store.get(KEY) == b"x"
    finally:
        other.close()
        await store.aclose()


async def test_unopenable_path_is_unavailable_naming_the_backend(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    store = SqliteMetadataStore(SqliteConfig(path=blocker / "meta.db"))
    with pytest.raises(BackendUnavailable) as info:
        await store.open()
    assert info.value.backend == "sqlite"
    assert str(blocker) in str(info.value)


async def test_not_a_database_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    store = SqliteMetadataStore(SqliteConfig(path=path))
    with pytest.raises(BackendError) as info:
        await store.open()
    assert info.value.backend == "sqlite"


async def test_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteMetadataStore(SqliteConfig(path=tmp_path / "meta.db"))
    with pytest.raises(BackendUnavailable):
        await store.get(KEY)  # before open()
    await store.open()
    await store.health()
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(BackendUnavailable) as info:
        await store.health()
    assert info.value.backend == "sqlite"


async def test_root_listing_and_whole_store_delete(tmp_path: Path) -> None:
    store = SqliteMetadataStore(SqliteConfig(path=tmp_path / "meta.db"))
    await store.open()
    try:
        await store.put(KEY, b"x")
        await store.put(layout.blob_data_key("sha256:" + "a" * 64), b"y")
        assert await store.list_children("") == ["v2"]
        assert await store.list_children("v2/") == ["blobs", "repositories"]
        await store.delete_prefix("")
        assert await store.list_children("") == []
    finally:
        await store.aclose()
