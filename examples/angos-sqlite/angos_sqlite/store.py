"""Metadata store ``sqlite``: every object is one row of one table in one SQLite file.

Threading: the stdlib ``sqlite3`` module blocks, so every call runs on one dedicated worker
thread that owns the only connection. That thread serialises all statements of this
process (no lock needed); other processes sharing the file are coordinated by SQLite's own
file locks, WAL mode and ``busy_timeout``.

Ordering: ``list_children`` must return names in byte order. Stored as is, the keys of
tag ``1.0-rc`` (``.../1.0-rc/current/link``) sort *before* those of tag ``1.0``
(``.../1.0/current/link``) because ``-`` < ``/``. So the primary key stores each key with
``/`` replaced by ``\\x01``, a character that sorts below every character a key may hold:
then keys sort exactly as their path components do, and every directory's children appear
in name order in the index. Listing a directory is one indexed seek per child returned
(skipping each child's whole subtree), however many objects lie below.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from angos_core.errors import BackendError, BackendUnavailable
from angos_core.protocols import Children
from angos_sqlite.config import SqliteConfig

BACKEND = "sqlite"

T = TypeVar("T")

SEP = "\x01"  # stands for "/" in stored keys
_AFTER_SEP = "\x02"  # the first character above SEP: "<dir>\x02" bounds "<dir>\x01..."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key   TEXT PRIMARY KEY,  -- the object's key with "/" stored as char(1)
    value BLOB NOT NULL
) WITHOUT ROWID
"""


def _row_key(key: str) -> str:
    if "\x00" in key or SEP in key or _AFTER_SEP in key:
        # Layout keys are built from validated names; a control character is a bug upstream.
        raise ValueError(f"control character in metadata key {key!r}")
    return key.replace("/", SEP)


def _upper_bound(row_prefix: str) -> str | None:
    """The smallest string above every string starting with ``row_prefix`` (None: no bound)."""
    if not row_prefix:
        return None
    return row_prefix[:-1] + chr(ord(row_prefix[-1]) + 1)


class SqliteMetadataStore:
    """A :class:`angos_core.protocols.MetadataStore` on one SQLite database file."""

    name = BACKEND

    def __init__(self, config: SqliteConfig) -> None:
        self.config = config
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    # ----------------------------------------------------------------- running statements

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the worker thread; map sqlite3 errors to typed ones."""
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise BackendUnavailable(BACKEND, f"database {self.config.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, conn)
        except RuntimeError as exc:  # the executor was shut down by aclose()
            raise BackendUnavailable(BACKEND, f"database {self.config.path} is closed") from exc
        except sqlite3.OperationalError as exc:
            # "database is locked" (busy_timeout ran out), disk I/O errors, a vanished
            # directory: conditions a later retry may not meet, reported as 503.
            raise BackendUnavailable(BACKEND, f"{self.config.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise BackendError(BACKEND, f"{self.config.path}: {exc}") from exc

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        if self._conn is not None:
            return
        path = self.config.path
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="angos-sqlite")

        def connect() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, so every statement is its own transaction
            # and a write is durable (per `synchronous`) when the call returns.
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout_ms)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.config.synchronous.upper()}")
                conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except (OSError, sqlite3.Error) as exc:
            executor.shutdown(wait=False)
            raise BackendUnavailable(BACKEND, f"cannot open database {path}: {exc}") from exc
        self._executor, self._conn = executor, conn

    async def health(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1 FROM objects LIMIT 1").fetchall())

    async def aclose(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        if executor is None or conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    # ----------------------------------------------------------------- objects

    async def get(self, key: str) -> bytes | None:
        row_key = _row_key(key)

        def get(c: sqlite3.Connection) -> bytes | None:
            row = c.execute("SELECT value FROM objects WHERE key = ?", (row_key,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(get)

    async def put(self, key: str, data: bytes) -> None:
        row_key, value = _row_key(key), bytes(data)

        def put(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO objects (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (row_key, value),
            )

        await self._run(put)

    async def create(self, key: str, data: bytes) -> bool:
        row_key, value = _row_key(key), bytes(data)

        def create(c: sqlite3.Connection) -> bool:
            # One statement, so atomic against every other writer of the file.
            cur = c.execute(
                "INSERT OR IGNORE INTO objects (key, value) VALUES (?, ?)", (row_key, value)
            )
            return cur.rowcount == 1

        return await self._run(create)

    async def delete(self, key: str) -> bool:
        row_key = _row_key(key)

        def delete(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM objects WHERE key = ?", (row_key,)).rowcount > 0

        return await self._run(delete)

    async def delete_prefix(self, prefix: str) -> None:
        row_prefix = _row_key(prefix)
        upper = _upper_bound(row_prefix)

        def delete_prefix(c: sqlite3.Connection) -> None:
            if upper is None:
                c.execute("DELETE FROM objects")
            else:
                c.execute("DELETE FROM objects WHERE key >= ? AND key < ?", (row_prefix, upper))

        await self._run(delete_prefix)

    async def list_children(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        page = await self.list_children_page(prefix, start_after=start_after, limit=limit)
        return page.names

    async def list_children_page(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Children:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        row_prefix = _row_key(prefix)
        upper = _upper_bound(row_prefix)
        # Children strictly after `start_after` have keys at or above "<start_after>\x02":
        # that skips the object `start_after` itself and everything in its directory.
        lower = row_prefix + (_row_key(start_after) + _AFTER_SEP if start_after else "")
        # One child past the page says whether more follow.
        want = None if limit is None else max(limit, 0) + 1

        def list_children(c: sqlite3.Connection) -> list[str]:
            names: list[str] = []
            seek = lower
            while want is None or len(names) < want:
                if upper is None:
                    row = c.execute(
                        "SELECT key FROM objects WHERE key >= ? ORDER BY key LIMIT 1", (seek,)
                    ).fetchone()
                else:
                    row = c.execute(
                        "SELECT key FROM objects WHERE key >= ? AND key < ? ORDER BY key LIMIT 1",
                        (seek, upper),
                    ).fetchone()
                if row is None:
                    break
                child = row[0][len(row_prefix) :].split(SEP, 1)[0]
                names.append(child)
                seek = row_prefix + child + _AFTER_SEP  # jump over the child's subtree
            return names

        names = await self._run(list_children)
        if want is None:
            return Children(names, False)
        return Children(names[: want - 1], len(names) == want)


def build(config: SqliteConfig) -> SqliteMetadataStore:
    """The factory core calls with the parsed ``[metadata_store.sqlite]`` table."""
    return SqliteMetadataStore(config)
