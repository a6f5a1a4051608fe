"""The fs stores pass the shipped contracts (the blob store also the direct-put one), with
and without ``sync_to_disk``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from angos_fs import FsBlobStore, FsConfig, FsMetadataStore

from angos_core.protocols import BlobStore, MetadataStore
from angos_core.testing import (
    BlobPutContract,
    BlobStoreContract,
    BlockingListContract,
    LeftoversContract,
    MetadataStoreContract,
)


class TestFsBlobStore(BlobStoreContract, BlobPutContract):
    @pytest.fixture
    async def blob_store(self, tmp_path: Path) -> AsyncIterator[BlobStore]:
        store = FsBlobStore(FsConfig(root_dir=str(tmp_path / "data")))
        await store.open()
        yield store
        await store.aclose()


class TestFsBlobStoreSynced(BlobStoreContract, BlobPutContract):
    @pytest.fixture
    async def blob_store(self, tmp_path: Path) -> AsyncIterator[BlobStore]:
        store = FsBlobStore(FsConfig(root_dir=str(tmp_path / "data"), sync_to_disk=True))
        await store.open()
        yield store
        await store.aclose()


class TestFsMetadataStore(MetadataStoreContract, BlockingListContract, LeftoversContract):
    @pytest.fixture
    async def metadata_store(self, tmp_path: Path) -> AsyncIterator[MetadataStore]:
        store = FsMetadataStore(FsConfig(root_dir=str(tmp_path / "data")))
        await store.open()
        yield store
        await store.aclose()


class TestFsMetadataStoreSynced(MetadataStoreContract, BlockingListContract, LeftoversContract):
    @pytest.fixture
    async def metadata_store(self, tmp_path: Path) -> AsyncIterator[MetadataStore]:
        store = FsMetadataStore(FsConfig(root_dir=str(tmp_path / "data"), sync_to_disk=True))
        await store.open()
        yield store
        await store.aclose()


class TestFsMetadataStoreUncachedListings(
    MetadataStoreContract, BlockingListContract, LeftoversContract
):
    @pytest.fixture
    async def metadata_store(self, tmp_path: Path) -> AsyncIterator[MetadataStore]:
        store = FsMetadataStore(FsConfig(root_dir=str(tmp_path / "data"), cache_listings=False))
        await store.open()
        yield store
        await store.aclose()
