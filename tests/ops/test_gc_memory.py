"""``angos gc`` holds memory bounded in the number of blobs (issue 13): its marks, the blob
listing and the layer links are spilled to per-shard files (angos_core/registry/gc_spill.py),
so ten times the blobs must not take anything like ten times the memory.

Measured with tracemalloc (the Python heap, where the mark set used to live) around one
collection of a store built on disk: a store of N blobs, half of them referenced by
manifests of ten layers, in repositories of ten manifests; the other half is garbage.
The caches on the way, each bounded by its own fixed size (the manifest-body cache, the
memory cache, the fs metadata store's listing cache, the collector's parse cache, the
spill buffer), are set small here, so that
they fill in both stores and what grows is what is left.
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import angos_fs.metadata_store as fs_metadata
import pytest

from angos_core import layout
from angos_core.config import load_config
from angos_core.oci import mediatypes as mt
from angos_core.plugins import load_catalogue
from angos_core.registry import Registry, gc_spill, manifests
from angos_core.registry import gc as gc_module
from angos_core.registry.gc import GarbageCollector, GcResult
from angos_core.registry.stores import Stores
from tests.support.api import OCI_CONFIG, OCI_LAYER

LAYERS = 10
MANIFESTS_PER_REPO = 10
#: Linear growth would be 10x; the spill keeps it to the fixed buffers and one shard.
MAX_GROWTH = 3.0
SMALL = 1_000


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write(root: Path, key: str, data: bytes) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_store(root: Path, blobs: int) -> int:
    """``blobs`` blobs, half referenced; the number of manifests."""
    data = [f"blob {i} of {blobs}".encode() for i in range(blobs)]
    for blob in data:
        write(root, layout.blob_data_key(sha256(blob)), blob)
    referenced = data[: blobs // 2]
    manifests = 0
    for start in range(0, len(referenced), LAYERS):
        layers = referenced[start : start + LAYERS]
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256(layers[0]), "size": 1},
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b in layers
                ],
            }
        ).encode()
        name, digest = f"mem/r{manifests // MANIFESTS_PER_REPO}", sha256(body)
        write(root, layout.blob_data_key(digest), body)
        write(root, layout.revision_link_key(name, digest), layout.link_content(digest))
        for b in layers:
            key = layout.layer_link_key(name, sha256(b))
            write(root, key, layout.link_content(sha256(b)))
        manifests += 1
    return manifests


async def collect_traced(tmp_path: Path, blobs: int) -> tuple[GcResult, int]:
    root = tmp_path / f"store-{blobs}"
    manifests = build_store(root, blobs)
    config = tmp_path / f"config-{blobs}.toml"
    config.write_text(f'[blob_store.fs]\nroot_dir = "{root}"\n[cache.memory]\nmax_entries = 64\n')
    stores = Stores.from_config(load_config(config, load_catalogue()))
    await stores.open()
    try:
        collector = GarbageCollector(Registry(stores), min_age_secs=0, out=lambda line: None)
        tracemalloc.start()
        try:
            result = await collector.run()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await stores.aclose()
    assert result.manifests_marked == manifests
    assert result.blobs_marked == blobs // 2
    assert result.blobs_deleted == blobs - blobs // 2
    return result, peak


@pytest.fixture
def small_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "BODY_CACHE_BYTES", 16 * 1024)
    monkeypatch.setattr(gc_module, "PARSED_CACHE", 16)
    monkeypatch.setattr(gc_module, "WALKED_CACHE", 64)
    monkeypatch.setattr(gc_spill, "BUFFER_LINES", 256)
    monkeypatch.setattr(fs_metadata._LISTINGS, "MAX_NAMES", 512)


@pytest.mark.heavy
@pytest.mark.usefixtures("small_caches")
async def test_gc_peak_memory_grows_far_less_than_the_number_of_blobs(tmp_path: Path) -> None:
    _, small = await collect_traced(tmp_path, SMALL)
    _, large = await collect_traced(tmp_path, 10 * SMALL)
    growth = large / small
    print(f"tracemalloc peak: {SMALL} blobs {small} B, {10 * SMALL} blobs {large} B, x{growth:.2f}")
    assert growth < MAX_GROWTH, (small, large)
