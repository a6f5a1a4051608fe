"""The fs listing cache keeps big directory listings, not the small ones a walk visits."""

from __future__ import annotations

import os
import time
from pathlib import Path

from angos_fs.metadata_store import _Listings


def settled(directory: Path) -> None:
    old = time.time() - 10
    os.utime(directory, (old, old))


def test_a_big_listing_is_kept_until_the_directory_changes(tmp_path: Path) -> None:
    listings = _Listings()
    big = tmp_path / "tags"
    big.mkdir()
    for i in range(_Listings.MIN_NAMES):
        (big / f"t{i:03d}").mkdir()
    settled(big)
    first = listings.names(str(big))
    assert listings.names(str(big)) is first
    (big / "t999").mkdir()
    assert listings.names(str(big))[-1] == "t999"


def test_a_small_listing_is_not_kept(tmp_path: Path) -> None:
    # A catalog walk lists every repository directory (three names each): kept, they would
    # push the big listings out of the cache every MAX_ENTRIES directories.
    listings = _Listings()
    root = tmp_path / "root"
    for i in range(_Listings.MAX_ENTRIES + 1):
        (root / f"r{i:04d}/_manifests").mkdir(parents=True)
    settled(root)
    names = listings.names(str(root))
    for name in names:
        small = root / name
        settled(small)
        assert listings.names(str(small)) == ["_manifests"]
    assert listings.names(str(root)) is names
