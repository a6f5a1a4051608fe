"""What both fs stores share: mapping keys to paths, durable directory operations, the
I/O thread pool and turning ``OSError`` into the typed backend errors."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import uuid
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


def unavailable(exc: OSError, action: str) -> BackendUnavailable:
    """An ``OSError`` as the 503-mapped backend error, saying what failed and why."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    elif exc.errno == errno.EROFS:
        reason = "read-only file system"
    where = f" ({exc.filename})" if exc.filename else ""
    return BackendUnavailable(BACKEND, f"{action}: {reason}{where}")


class KeyPaths:
    """Keys (relative, ``/``-separated, from ``angos_core.layout``) as paths under a root.

    Core validates every name, tag and digest before it becomes a key; this refuses any key
    that could still leave the root, as defense in depth.
    """

    def __init__(self, root_dir: str) -> None:
        self.root = os.path.abspath(root_dir)

    def path(self, key: str) -> str:
        return os.path.join(self.root, *self._parts(key, allow_empty=False))

    def dir_path(self, prefix: str) -> str:
        """The directory a ``/``-ended prefix names (the root for ``""``)."""
        if prefix and not prefix.endswith("/"):
            raise BackendError(BACKEND, f"a prefix must end with '/': {prefix!r}")
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


def makedirs(path: str, *, durable: bool) -> None:
    """``os.makedirs(path, exist_ok=True)``; with ``durable``, every directory it creates is
    fsynced into its parent, so the new path survives a crash."""
    if os.path.isdir(path):
        return
    if not durable:
        os.makedirs(path, exist_ok=True)
        return
    missing = []
    p = path
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            continue
        fsync_dir(os.path.dirname(d))


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
        p = os.path.dirname(p)


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


def check_writable(root: str) -> None:
    probe = os.path.join(root, temp_name())
    try:
        if not os.path.isdir(root):
            raise BackendUnavailable(BACKEND, f"root_dir {root} is not a directory")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        error = unavailable(exc, f"root_dir {root} is not writable")
        try:
            # A read-only mount or a full disk still serves every blob and link already
            # there: say so, and /readyz keeps the registry in service for pulls.
            os.listdir(root)
        except OSError:
            raise error from exc
        raise BackendReadOnly(BACKEND, error.message) from exc


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
