"""The entry point object: ``[project.entry-points.angos] angos-sqlite = "angos_sqlite.plugin"``.

Core registers this module with its pluggy plugin manager and calls the ``angos_*`` hooks
it implements. Hooks only describe backends; nothing here does I/O.
"""

from __future__ import annotations

from angos_core import CAP_ATOMIC_CREATE, BackendSpec, MetadataStore, hookimpl
from angos_sqlite.config import SqliteConfig

# The store (and with it sqlite3, about 0.9 MiB resident) is imported when a config selects
# it, not in every process that merely has this plugin installed.


def _build(config: SqliteConfig) -> MetadataStore:
    from angos_sqlite.store import build

    return build(config)


@hookimpl
def angos_metadata_stores() -> list[BackendSpec[MetadataStore]]:
    return [
        BackendSpec(
            name="sqlite",
            factory=_build,
            config_type=SqliteConfig,
            # create() is one INSERT OR IGNORE, atomic across processes sharing the file.
            capabilities=frozenset({CAP_ATOMIC_CREATE}),
            distribution="angos-sqlite",
            description="metadata in one SQLite database file (WAL mode)",
        )
    ]
