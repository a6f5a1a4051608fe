"""The ``[blob_store.fs]`` / ``[metadata_store.fs]`` table."""

from __future__ import annotations

from dataclasses import dataclass

from angos_core.config import DEFAULT_ROOT_DIR
from angos_core.errors import ConfigError


@dataclass
class FsConfig:
    #: Directory holding the key tree (``v2/blobs/...``, ``v2/repositories/...``). Created at
    #: startup if missing. Relative paths are relative to the working directory.
    root_dir: str = DEFAULT_ROOT_DIR
    #: fsync every written file and its directory before a write is acknowledged.
    sync_to_disk: bool = False
    #: Reuse a directory's sorted listing while its (inode, mtime, link count) are unchanged,
    #: so paging through 10,000 tags scans the directory once. Turn off on network
    #: filesystems (NFS) whose attribute cache can report an old mtime.
    cache_listings: bool = True
    #: With ``cache_listings`` off: how long the rest of a scanned directory is kept for the
    #: page that continues from the scanned page's last name (the next page of a tag list or
    #: of a catalog walk), while the directory's (inode, mtime, link count) are unchanged. A
    #: walk of 50,000 tags then scans the directory once instead of once per page; a
    #: continuation page may miss a change made less than this long ago that the attribute
    #: cache hides. 0 scans for every page.
    listing_snapshot_secs: float = 10.0

    def __post_init__(self) -> None:
        if self.listing_snapshot_secs < 0:
            raise ConfigError(
                "listing_snapshot_secs",
                f"must be 0 or more, got {self.listing_snapshot_secs}: 0 scans the directory "
                "for every page",
            )
