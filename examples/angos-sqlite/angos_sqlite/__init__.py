"""Angos metadata store ``sqlite``: an example of a third-party Angos plugin."""

from angos_sqlite.config import SqliteConfig
from angos_sqlite.store import SqliteMetadataStore

__all__ = ["SqliteConfig", "SqliteMetadataStore"]
