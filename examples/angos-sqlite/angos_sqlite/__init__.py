"""Angos metadata store ``sqlite``: an example of a third-party Angos plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from angos_core.lazy import lazy_exports
from angos_sqlite.config import SqliteConfig

if TYPE_CHECKING:
    from angos_sqlite.store import SqliteMetadataStore

__all__ = ["SqliteConfig", "SqliteMetadataStore"]

# Loaded on first use, so that finding the plugin does not import sqlite3.
__getattr__ = lazy_exports(__name__, {"SqliteMetadataStore": "angos_sqlite.store"})
