"""Metadata store ``fs``: one small file per key under ``root_dir``.

Writes go to a temporary file beside the target (named ``.tmp-*``, hidden from listings)
and become visible with one atomic rename (``put``) or hard link (``create``).

Directories are as on S3, where a prefix exists only through its objects: a write whose
directory is missing builds it, key included, in a hidden temporary directory and renames
that into place, and ``delete_prefix`` renames the directory away before removing it. So a
listing never shows a directory that a write or a ``delete_prefix`` cut short (a crash, a
full disk) left without keys. (``delete`` of a key prunes the directories it empties
afterwards; a crash in between can leave them.)
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import heapq
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from angos_core.errors import BackendError
from angos_core.protocols import BlockingLister, Children
from angos_fs import files
from angos_fs.files import BACKEND, FsBackend, unavailable

T = TypeVar("T")

# Filesystems without hard links (some FUSE and SMB mounts) answer link() with these.
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}


class FsMetadataStore(FsBackend):
    # ------------------------------------------------------------------ objects

    async def get(self, key: str) -> bytes | None:
        path = self.paths.path(key)
        try:
            return await files.run(_read, path)
        except OSError as exc:
            raise unavailable(exc, f"cannot read {key}") from exc

    async def put(self, key: str, data: bytes) -> None:
        path = self.paths.path(key)
        sync = self.sync
        root = self.paths.root

        def put() -> None:
            if _write_in_new_directory(path, data, sync, root):
                return
            tmp = _write_temp(path, data, sync, root)
            try:
                os.replace(tmp, path)
            except BaseException:
                _unlink_quietly(tmp)
                raise
            if sync:
                files.fsync_dir(os.path.dirname(path))

        try:
            await files.run(files.retry_on_pruned, put)
        except OSError as exc:
            raise unavailable(exc, f"cannot write {key}") from exc

    async def create(self, key: str, data: bytes) -> bool:
        path = self.paths.path(key)
        sync = self.sync
        root = self.paths.root

        def existing() -> bool:
            if sync:
                # A racing creator may not have fsynced it into place yet: whoever made it,
                # "already there" is only said once it is durable.
                files.makedirs(os.path.dirname(path), durable=True, root=root)
                files.fsync_dir(os.path.dirname(path))
            return False

        def create() -> bool:
            if os.path.lexists(path):
                return existing()
            # Its directory did not exist, so neither did the key: the create won.
            if _write_in_new_directory(path, data, sync, root):
                return True
            tmp = _write_temp(path, data, sync, root)
            try:
                # link() fails if the target exists: the complete file appears at once, and
                # only one of any number of racing creators wins.
                os.link(tmp, path)
            except FileExistsError:
                return existing()
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                return _create_exclusive(path, data, sync) or existing()
            finally:
                _unlink_quietly(tmp)
            if sync:
                files.fsync_dir(os.path.dirname(path))
            return True

        try:
            return await files.run(files.retry_on_pruned, create)
        except OSError as exc:
            raise unavailable(exc, f"cannot create {key}") from exc

    async def delete(self, key: str) -> bool:
        path = self.paths.path(key)
        root = self.paths.root
        sync = self.sync

        def delete() -> bool:
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):
                return False
            except IsADirectoryError:
                return False
            if sync:
                files.fsync_dir(os.path.dirname(path))
            files.prune_empty_dirs(os.path.dirname(path), root)
            return True

        try:
            return await files.run(delete)
        except OSError as exc:
            raise unavailable(exc, f"cannot delete {key}") from exc

    async def delete_prefix(self, prefix: str) -> None:
        if not prefix:
            raise BackendError(BACKEND, "refusing to delete the whole store (empty prefix)")
        path = self.paths.dir_path(prefix)
        root = self.paths.root
        sync = self.sync

        def delete_tree() -> None:
            if not os.path.isdir(path):
                return
            parent = os.path.dirname(path)
            # Renamed away first: every key goes at once, and a removal cut short leaves a
            # hidden directory, not part of the prefix (a tag's index without its
            # ``current`` link, say).
            trash = os.path.join(parent, files.temp_name())
            try:
                os.replace(path, trash)
            except (FileNotFoundError, NotADirectoryError):
                return
            if sync:
                files.fsync_dir(parent)
            files.DURABLE_DIRS.forget(os.path.abspath(path), tree=True)
            files.remove_tree(trash)
            files.prune_empty_dirs(parent, root)

        try:
            await files.run(delete_tree)
        except OSError as exc:
            raise unavailable(exc, f"cannot delete {prefix}") from exc

    async def list_children(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        page = await self.list_children_page(prefix, start_after=start_after, limit=limit)
        return page.names

    async def list_children_page(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Children:
        path = self.paths.dir_path(prefix)
        try:
            if self.config.cache_listings:
                return await files.run(_LISTINGS.page, path, start_after, limit)
            return await files.run(
                _uncached_page, path, start_after, limit, self.config.listing_snapshot_secs
            )
        except OSError as exc:
            raise unavailable(exc, f"cannot list {prefix}") from exc

    async def run_listing(self, fn: Callable[[BlockingLister], T]) -> T:
        # MetadataBlockingList: a stretch of the catalog walk in one hop to the I/O pool.
        failed: list[tuple[str, OSError]] = []
        paths = self.paths
        cached = self.config.cache_listings
        snapshot_secs = self.config.listing_snapshot_secs

        def list_children(prefix: str, start_after: str | None, limit: int | None) -> list[str]:
            path = paths.dir_path(prefix)
            try:
                if cached:
                    return _LISTINGS.page(path, start_after, limit).names
                return _uncached_page(path, start_after, limit, snapshot_secs).names
            except OSError as exc:
                failed.append((prefix, exc))
                raise

        try:
            return await files.run(fn, list_children)
        except OSError as exc:
            if failed and failed[-1][1] is exc:
                raise unavailable(exc, f"cannot list {failed[-1][0]}") from exc
            raise


# ---------------------------------------------------------------------- pool functions


def _read(path: str) -> bytes | None:
    # os.open and os.read, not open(): no file object, no fstat and seek, about half the
    # time for a small file (a page of tags reads 1,000 links).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    try:
        data = os.read(fd, _READ_SIZE)
        if not data:
            return data
        chunks = [data]
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_READ_SIZE = 1 << 16


def _write_temp(path: str, data: bytes, sync: bool, root: str) -> str:
    directory = os.path.dirname(path)
    files.makedirs(directory, durable=sync, root=root)
    tmp = os.path.join(directory, files.temp_name())
    try:
        files.write_file(tmp, data, sync=sync)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _write_in_new_directory(path: str, data: bytes, sync: bool, root: str) -> bool:
    """Write the key at ``path`` if its directory is missing, with the directories: they
    are made, the key's file in them, under a hidden temporary name beside the topmost
    missing one, and renamed into place at once. False if the directory exists, or was made
    by a concurrent writer meanwhile: the caller then writes into it as usual."""
    directory = os.path.dirname(path)
    if os.path.isdir(directory):
        return False
    top = directory
    stop = os.path.abspath(root)
    while not os.path.isdir(os.path.dirname(top)):
        top = os.path.dirname(top)
        if not os.path.abspath(top).startswith(stop + os.sep):
            return False  # the root itself is missing: the usual write reports it
    staging = os.path.join(os.path.dirname(top), files.temp_name())
    parts = os.path.relpath(path, top).split(os.sep)
    try:
        made = staging
        os.mkdir(made)
        for part in parts[:-1]:
            made = os.path.join(made, part)
            os.mkdir(made)
        files.write_file(os.path.join(made, parts[-1]), data, sync=sync)
        if sync:
            while made != staging:
                files.fsync_dir(made)
                made = os.path.dirname(made)
            files.fsync_dir(staging)
        try:
            # rename(2) replaces an empty directory: one a concurrent writer has just made
            # and not yet written into, which then writes into this one instead.
            os.replace(staging, top)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            files.remove_tree(staging, ignore_errors=True)
            return False
    except BaseException:
        files.remove_tree(staging, ignore_errors=True)
        raise
    if sync:
        files.fsync_dir(os.path.dirname(top))
    return True


def _create_exclusive(path: str, data: bytes, sync: bool) -> bool:
    """create() where hard links are unsupported: exclusive, but not atomic for readers."""
    try:
        files.write_file(path, data, sync=sync)
    except FileExistsError:
        return False
    if sync:
        files.fsync_dir(os.path.dirname(path))
    return True


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class _Listings:
    """Sorted directory listings, reused while the directory is unchanged.

    A paginated listing (10 pages of 1,000 tags) would otherwise scan and sort the whole
    directory once per page. An entry is valid while the directory's (inode, mtime, link
    count) are unchanged; it is only kept when the mtime was already older than
    ``SETTLED_NS`` when the scan ended, so a change in the same timestamp tick as the scan
    (mtime comes from a coarse clock) can never hide behind an unchanged mtime.
    """

    SETTLED_NS = 50_000_000
    MAX_ENTRIES = 256
    #: Names held across all entries (some 7 MB): bounded in names, not only in
    #: directories, so that a walk of every ``v2/blobs/<alg>/<xx>/`` fan-out (the garbage
    #: collector's) does not keep the whole store's names. A bigger listing is not kept.
    MAX_NAMES = 100_000
    #: A smaller listing is not kept: it costs little more to scan again than to check,
    #: and keeping every repository directory a catalog walk visits (three names each)
    #: would push out the big listings the cache is for (the repositories root, a
    #: namespace, a tags directory) every ``MAX_ENTRIES`` directories.
    MIN_NAMES = 32

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._entries: OrderedDict[str, tuple[tuple[int, int, int], list[str]]] = OrderedDict()
        self._names = 0

    def page(self, path: str, start_after: str | None, limit: int | None) -> Children:
        return _page(self.names(path), start_after, limit)

    def names(self, path: str) -> list[str]:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        stamp = (st.st_ino, st.st_mtime_ns, st.st_nlink)
        with self._mutex:
            hit = self._entries.get(path)
            if hit is not None and hit[0] == stamp:
                self._entries.move_to_end(path)
                return hit[1]
        names = _children(path)
        if (
            self.MIN_NAMES <= len(names) <= self.MAX_NAMES
            and time.time_ns() - st.st_mtime_ns > self.SETTLED_NS
        ):
            with self._mutex:
                old = self._entries.pop(path, None)
                if old is not None:
                    self._names -= len(old[1])
                self._entries[path] = (stamp, names)
                self._names += len(names)
                while len(self._entries) > self.MAX_ENTRIES or self._names > self.MAX_NAMES:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    self._names -= len(dropped)
        return names


_LISTINGS = _Listings()


class _Snapshots:
    """Recent scans of uncached listings, for the pages that continue them.

    With ``cache_listings`` off every page would scan its directory, so a walk of 50,000
    tags in pages of 1,000 would scan it 50 times. A scan that leaves names for a next page
    keeps what it read (the names after its cursor; one scan per directory, the newest),
    and a page whose cursor is at or after that scan's cursor is cut from it while the
    directory's (inode, mtime, link count) are unchanged and the scan is younger than the
    store's ``listing_snapshot_secs``: the scan's age bounds what a walk can miss. A page
    without a cursor (a walk's first) always scans. As in the listing cache, a scan of a
    directory changed in the last ``SETTLED_NS`` is not kept.
    """

    MAX_ENTRIES = 64
    SETTLED_NS = _Listings.SETTLED_NS
    #: Names held across all entries: as many as the listing cache's.
    MAX_NAMES = _Listings.MAX_NAMES
    #: A scan that read fewer names costs little more to repeat than to keep.
    MIN_NAMES = _Listings.MIN_NAMES

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._entries: OrderedDict[str, _Snapshot] = OrderedDict()
        self._names = 0

    def page(
        self, path: str, cursor: str, stamp: tuple[int, int, int], limit: int
    ) -> Children | None:
        """The page after ``cursor`` from a kept scan, or None (scan the directory)."""
        with self._mutex:
            kept = self._entries.get(path)
            if kept is None:
                return None
            if kept.stamp != stamp or time.monotonic() > kept.deadline:
                self._drop(path)
                return None
            if kept.cursor is not None and cursor < kept.cursor:
                return None
            self._entries.move_to_end(path)
        names = kept.ordered()
        i = bisect.bisect_right(names, cursor)
        end = i + limit
        return Children(names[i:end], len(names) > end)

    def keep(self, path: str, snapshot: _Snapshot) -> None:
        if not self.MIN_NAMES <= len(snapshot.names) <= self.MAX_NAMES:
            return
        with self._mutex:
            self._drop(path)
            self._entries[path] = snapshot
            self._names += len(snapshot.names)
            while len(self._entries) > self.MAX_ENTRIES or self._names > self.MAX_NAMES:
                self._drop(next(iter(self._entries)))

    def _drop(self, path: str) -> None:
        dropped = self._entries.pop(path, None)
        if dropped is not None:
            self._names -= len(dropped.names)


@dataclass
class _Snapshot:
    stamp: tuple[int, int, int]
    deadline: float
    #: The scan's cursor (None: from the start) and the visible names after it, sorted by
    #: the first page that reads them (only a walk that goes on pays for the sort).
    cursor: str | None
    names: list[str]
    in_order: bool = False

    def ordered(self) -> list[str]:
        if not self.in_order:
            # A new list, not an in-place sort: another thread may be reading this one.
            self.names = sorted(self.names)
            self.in_order = True
        return self.names


_SNAPSHOTS = _Snapshots()


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_nlink)


def _uncached_page(
    path: str, start_after: str | None, limit: int | None, snapshot_secs: float = 0.0
) -> Children:
    stamp = None
    if snapshot_secs > 0 and limit is not None and limit > 0:
        # Taken before the scan, so a change during it shows as a new stamp next time.
        stamp = _stamp(path)
        if stamp is None:
            return Children([], False)
        if start_after is not None:
            kept = _SNAPSHOTS.page(path, start_after, stamp, limit)
            if kept is not None:
                return kept
        deadline = time.monotonic() + snapshot_secs
    # An uncached page scans the directory; sorting only the page's names (and the one
    # after it, which says whether more follow), not all of them, keeps a page of 1,000
    # among 50,000 tags from costing a sort of the whole.
    try:
        names = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return Children([], False)
    # Filtered into a list first: half the time of a generator feeding nsmallest (50,000).
    if start_after is None:
        wanted = [name for name in names if name[0] != "."]
    else:
        wanted = [name for name in names if name > start_after and name[0] != "."]
    if limit is None:
        return Children(sorted(wanted), False)
    limit = max(limit, 0)
    first = heapq.nsmallest(limit + 1, wanted)
    page = Children(first[:limit], len(first) > limit)
    if stamp is not None and page.more and time.time_ns() - stamp[1] > _Snapshots.SETTLED_NS:
        _SNAPSHOTS.keep(path, _Snapshot(stamp, deadline, start_after, wanted))
    return page


def _page(names: list[str], start_after: str | None, limit: int | None) -> Children:
    i = bisect.bisect_right(names, start_after) if start_after is not None else 0
    if limit is None:
        return Children(names[i:], False)
    end = i + max(limit, 0)
    return Children(names[i:end], len(names) > end)


def _children(path: str) -> list[str]:
    # Code-point order of str is the byte order of its UTF-8 encoding.
    try:
        names = [name for name in os.listdir(path) if name[0] != "."]
    except (FileNotFoundError, NotADirectoryError):
        return []
    names.sort()
    return names
