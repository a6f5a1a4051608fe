"""The metadata-store contract every backend passes, run against the SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from angos_sqlite import SqliteConfig, SqliteMetadataStore

from angos_core.testing import MetadataStoreContract


class TestSqliteMetadataStore(MetadataStoreContract):
    @pytest.fixture
    async def metadata_store(self, tmp_path: Path) -> AsyncIterator[SqliteMetadataStore]:
        store = SqliteMetadataStore(SqliteConfig(path=tmp_path / "metadata.sqlite3"))
        await store.open()
        yield store
        await store.aclose()
