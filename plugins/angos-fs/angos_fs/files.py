"""What both fs stores share: mapping keys to paths, durable directory operations, the
I/O thread pool and turning ``OSError`` into the typed backend errors."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from angos_core.errors import BackendError, BackendReadOnly, BackendUnavailable
from angos_fs.config import FsConfig

BACKEND = "fs"

log = logging.getLogger("angos.fs")

#: Temporary files start with this; every listing hides names starting with ".", and no
#: key the layout builds has a component starting with one.
TEMP_PREFIX = ".tmp-"

P = ParamSpec("P")
R = TypeVar("R")

# Blocking file I/O runs here, never on the event loop. A pool of our own so that a slow
# disk cannot starve whatever else uses the loop's default executor.
_EXECUTOR = ThreadPoolExecutor(max_workers=16, thread_name_prefix="angos-fs")


def submit(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Future[R]:
    return _EXECUTOR.submit(fn, *args, **kwargs)


async def run(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` in the I/O pool. If the caller is cancelled the call still completes."""
    return await asyncio.wrap_future(_EXECUTOR.submit(fn, *args, **kwargs))


def temp_name() -> str:
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}"


def find_leftovers(root: str, min_age_secs: float) -> list[str]:
    """The absolute paths of the temporary files and directories under ``root`` (a write
    or a ``delete_prefix`` cut short) not modified for ``min_age_secs``, in order."""
    cutoff = time.time() - min_age_secs
    found = []
    for top, directories, names in os.walk(root):
        temporary = [name for name in directories + names if name.startswith(TEMP_PREFIX)]
        # A temporary directory is one leftover, whatever it holds: not walked into.
        directories[:] = [name for name in directories if not name.startswith(TEMP_PREFIX)]
        found += [
            path for path in (os.path.join(top, name) for name in temporary) if _older(path, cutoff)
        ]
    return sorted(found)


def remove_leftover(root: str, path: str, min_age_secs: float) -> bool:
    """Remove ``path`` (from :func:`find_leftovers`) if it still is a leftover that old."""
    if not (
        os.path.basename(path).startswith(TEMP_PREFIX)
        and os.path.isabs(path)
        and os.path.normpath(path) == path  # no "..": commonpath does not resolve it
        and os.path.commonpath([root, path]) == root
        and _older(path, time.time() - min_age_secs)
    ):
        return False
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _older(path: str, cutoff: float) -> bool:
    try:
        return os.lstat(path).st_mtime < cutoff
    except FileNotFoundError:
        return False


def unavailable(exc: OSError, action: str) -> BackendUnavailable:
    """An ``OSError`` as the 503-mapped backend error, saying what failed and why."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    elif exc.errno == errno.EROFS:
        reason = "read-only file system"
    # The action names the key; the absolute path is for the log only.
    where = f"path {exc.filename}" if exc.filename else ""
    return BackendUnavailable(BACKEND, f"{action}: {reason}", log_detail=where)


#: A key every part of which is a plain name: not empty, no leading ".", no "/", "\\" or NUL.
_SAFE_KEY = re.compile(r"[^/\\\x00.][^/\\\x00]*(?:/[^/\\\x00.][^/\\\x00]*)*")


class KeyPaths:
    """Keys (relative, ``/``-separated, from ``angos_core.layout``) as paths under a root.

    Core validates every name, tag and digest before it becomes a key; this refuses any key
    that could still leave the root, as defense in depth.
    """

    def __init__(self, root_dir: str) -> None:
        self.root = os.path.abspath(root_dir)

    def path(self, key: str) -> str:
        # The hot path (every link read and write): one match, and the key
        # is already its own relative path once every part is known to be a plain name.
        if _SAFE_KEY.fullmatch(key):
            return f"{self.root}/{key}" if self.root != "/" else f"/{key}"
        return os.path.join(self.root, *self._parts(key, allow_empty=False))

    def dir_path(self, prefix: str) -> str:
        """The directory a ``/``-ended prefix names (the root for ``""``)."""
        if prefix and not prefix.endswith("/"):
            raise BackendError(BACKEND, f"a prefix must end with '/': {prefix!r}")
        if prefix and _SAFE_KEY.fullmatch(prefix, 0, len(prefix) - 1):
            # The hot path of the catalog walk (a listing per directory): as ``path``.
            return f"{self.root}/{prefix[:-1]}" if self.root != "/" else f"/{prefix[:-1]}"
        return os.path.join(self.root, *self._parts(prefix[:-1], allow_empty=True))

    @staticmethod
    def _parts(key: str, *, allow_empty: bool) -> list[str]:
        if not key:
            if allow_empty:
                return []
            raise BackendError(BACKEND, "empty key")
        if "\x00" in key or key.startswith("/") or "\\" in key:
            raise BackendError(BACKEND, f"refusing key outside root_dir: {key!r}")
        parts = key.split("/")
        for part in parts:
            if part in ("", ".", "..") or part.startswith("."):
                raise BackendError(BACKEND, f"refusing key outside root_dir: {key!r}")
        return parts


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _DurableDirs:
    """Directories whose entry in their parent this process has seen fsynced.

    A directory another thread (or process) created may be in use before its creator's fsync
    of the parent has run: finding it there proves nothing. So a durable write makes every
    directory on its path durable itself, the first time this process uses it, whoever
    created it, and remembers that here. Removing a directory forgets it and everything
    below it, so a re-created one is fsynced again.
    """

    MAX_ENTRIES = 16384

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._known: OrderedDict[str, None] = OrderedDict()
        # Bumped by every removal: a directory fsynced while a removal ran may since have
        # been removed and made again by someone who has not fsynced it yet.
        self._removals = 0

    def epoch(self) -> int:
        with self._mutex:
            return self._removals

    def __contains__(self, path: str) -> bool:
        with self._mutex:
            if path in self._known:
                self._known.move_to_end(path)
                return True
            return False

    def add(self, path: str, epoch: int) -> None:
        with self._mutex:
            if epoch != self._removals:
                return
            self._known[path] = None
            self._known.move_to_end(path)
            while len(self._known) > self.MAX_ENTRIES:
                self._known.popitem(last=False)

    def forget(self, path: str, *, tree: bool = False) -> None:
        with self._mutex:
            self._removals += 1
            self._known.pop(path, None)
            if tree:
                below = path.rstrip(os.sep) + os.sep
                for known in [k for k in self._known if k.startswith(below)]:
                    del self._known[known]


DURABLE_DIRS = _DurableDirs()


#: Attempts of ``makedirs`` raced by prunes of the directories it makes.
MAKEDIRS_ATTEMPTS = 5


def makedirs(path: str, *, durable: bool, root: str | None = None) -> None:
    """``os.makedirs(path, exist_ok=True)``.

    With ``durable``, every directory on the path below ``root`` (all of them if ``None``)
    is in its parent durably before this returns: each one this process has not yet seen
    durable gets its parent fsynced after it exists, whether this call or a concurrent one
    created it. Callers then write into ``path`` and fsync ``path`` itself.
    """
    if not durable:
        for attempt in range(MAKEDIRS_ATTEMPTS):
            if os.path.isdir(path):
                return
            try:
                os.makedirs(path, exist_ok=True)
                return
            except FileExistsError:
                # mkdir found it made by a concurrent writer, and a concurrent prune removed
                # it (empty still) before makedirs could see it: make it again. A file in
                # the way fails every attempt.
                if attempt == MAKEDIRS_ATTEMPTS - 1:
                    raise
        return
    if path in DURABLE_DIRS and os.path.isdir(path):
        return
    stop = os.path.abspath(root) if root is not None else None
    pending = []
    p = os.path.abspath(path)
    while p != stop and not (p in DURABLE_DIRS and os.path.isdir(p)):
        parent = os.path.dirname(p)
        if parent == p:
            break
        pending.append(p)
        p = parent
    for d in reversed(pending):
        epoch = DURABLE_DIRS.epoch()
        # Made by someone else, maybe not durably yet: the fsync below covers it.
        with contextlib.suppress(FileExistsError):
            os.mkdir(d)
        fsync_dir(os.path.dirname(d))
        DURABLE_DIRS.add(d, epoch)


def prune_empty_dirs(path: str, stop: str) -> None:
    """Remove ``path`` and its parents while they are empty, never ``stop`` or above.

    A directory that holds nothing is not a "child" a listing may show, as on S3 where
    prefixes exist only through their objects. Writers retry when a prune races them.
    """
    stop = os.path.abspath(stop)
    p = os.path.abspath(path)
    while p != stop and p.startswith(stop + os.sep):
        try:
            os.rmdir(p)
        except OSError:  # not empty, already gone, or busy: stop here
            return
        DURABLE_DIRS.forget(p)
        p = os.path.dirname(p)


#: Passes of ``remove_tree`` over a tree that concurrent writers keep adding to.
REMOVE_TREE_ATTEMPTS = 5


def remove_tree(path: str, *, ignore_errors: bool = False) -> None:
    """``shutil.rmtree``; the removed directories are no longer known durable.

    A writer may create a file in the tree while it is removed (a tag's index entry is
    created without the tag's lock): the directory is then not empty when its turn comes,
    so the removal goes round again. ``FileNotFoundError`` if ``path`` does not exist.
    """
    DURABLE_DIRS.forget(os.path.abspath(path), tree=True)
    if ignore_errors:
        shutil.rmtree(path, ignore_errors=True)
        return
    last: OSError | None = None
    for attempt in range(REMOVE_TREE_ATTEMPTS):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError as exc:
            if not os.path.lexists(path):
                if attempt == 0:
                    raise
                return  # gone: a concurrent removal finished it
            last = exc  # an entry vanished under us (a writer's temporary file)
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise
            last = exc
    assert last is not None
    raise last


def fsync_file(path: str) -> None:
    """fsync a file's data by path (a file another call wrote, before it is renamed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def retry_on_pruned(fn: Callable[[], R], attempts: int = 5) -> R:
    """Run ``fn``, which creates its directories then writes; retry when a concurrent
    prune removed a directory in between (``FileNotFoundError``)."""
    for _ in range(attempts - 1):
        try:
            return fn()
        except FileNotFoundError:
            continue
    return fn()


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_file(path: str, data: bytes, *, sync: bool, flags: int = os.O_EXCL) -> None:
    """Create the file ``path`` holding ``data`` (``flags``: ``O_EXCL``, or ``O_TRUNC`` to
    replace one), fsynced with ``sync``. A failure after the create leaves the file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o644)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(root: str) -> None:
    probe = os.path.join(root, temp_name())
    try:
        if not os.path.isdir(root):
            raise BackendUnavailable(
                BACKEND, "root_dir is not a directory", log_detail=f"root_dir {root}"
            )
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        error = unavailable(exc, "root_dir is not writable")
        try:
            # A read-only mount or a full disk still serves every blob and link already
            # there: say so, and /readyz keeps the registry in service for pulls.
            os.listdir(root)
        except OSError:
            raise error from exc
        raise BackendReadOnly(BACKEND, error.message, log_detail=error.log_detail) from exc


class FsBackend:
    """What both fs stores share: the key paths under ``root_dir`` and their lifecycle."""

    name = BACKEND

    def __init__(self, config: FsConfig) -> None:
        self.config = config
        self.paths = KeyPaths(config.root_dir)
        self.sync = config.sync_to_disk

    async def open(self) -> None:
        try:
            await run(makedirs, self.paths.root, durable=False)
        except OSError as exc:
            raise unavailable(exc, "cannot create root_dir") from exc
        try:
            await self.health()
        except BackendReadOnly as exc:
            # Start anyway: pulls work, pushes get 503 and /readyz?write=1 says why.
            log.warning("%s; serving reads only until it is writable again", exc)

    async def health(self) -> None:
        await run(check_writable, self.paths.root)

    async def aclose(self) -> None:
        return None

    # StoreLeftovers: the temporary names of writes and deletes cut short.

    async def leftovers(self, min_age_secs: float) -> list[str]:
        try:
            return await run(find_leftovers, self.paths.root, min_age_secs)
        except OSError as exc:
            raise unavailable(exc, "cannot look for leftover temporary files") from exc

    async def remove_leftover(self, leftover: str, min_age_secs: float) -> bool:
        try:
            return await run(remove_leftover, self.paths.root, leftover, min_age_secs)
        except OSError as exc:
            raise unavailable(exc, f"cannot remove {leftover}") from exc
