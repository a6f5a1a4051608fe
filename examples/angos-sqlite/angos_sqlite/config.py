"""The settings of ``[metadata_store.sqlite]``.

Core parses the TOML table into this dataclass: unknown keys and wrong types are startup
errors naming the key, and a field without a default is a required key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class SqliteConfig:
    #: The database file. Created, with its parent directories, when absent.
    path: Path
    #: How long a write waits for another process holding the database's write lock
    #: before failing with ``BackendUnavailable`` (503, the client retries).
    busy_timeout_ms: int = 5000
    #: SQLite's ``PRAGMA synchronous``. With WAL, "normal" survives a crash of the process
    #: but may lose the last writes on power loss; "full" fsyncs every commit.
    synchronous: Literal["off", "normal", "full", "extra"] = "normal"

    def __post_init__(self) -> None:
        # A ValueError here becomes a ConfigError under the table's dotted path, e.g.
        # "metadata_store.sqlite: busy_timeout_ms: cannot be negative, got -1".
        if self.busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms: cannot be negative, got {self.busy_timeout_ms}")
