"""The ``[blob_store.fs]`` / ``[metadata_store.fs]`` table."""

from __future__ import annotations

from dataclasses import dataclass

from angos_core.config import DEFAULT_ROOT_DIR


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
