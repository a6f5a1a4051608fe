"""A refused direct put leaves no file (the contract itself: test_fs_contracts.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from angos_fs import FsBlobStore, FsConfig

from angos_core.errors import BlobDigestMismatch
from angos_core.testing.blob_store import digest_of, stream


async def test_a_refused_put_leaves_no_file_behind(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = FsBlobStore(FsConfig(root_dir=str(root)))
    await store.open()
    data = os.urandom(3 * 1024 * 1024)
    with pytest.raises(BlobDigestMismatch):
        await store.put_blob(digest_of(data), stream(data[:-1] + b"?"), len(data))
    left = [p for p in root.rglob("*") if p.is_file()]
    assert left == []
