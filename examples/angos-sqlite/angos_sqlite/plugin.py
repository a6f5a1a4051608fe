"""The entry point object: ``[project.entry-points.angos] angos-sqlite = "angos_sqlite.plugin"``.

Core registers this module with its pluggy plugin manager and calls the ``angos_*`` hooks
it implements. Hooks only describe backends; nothing here does I/O.
"""

from __future__ import annotations

from angos_core import CAP_ATOMIC_CREATE, BackendSpec, MetadataStore, hookimpl
from angos_sqlite.config import SqliteConfig
from angos_sqlite.store import BACKEND, build


@hookimpl
def angos_metadata_stores() -> list[BackendSpec[MetadataStore]]:
    return [
        BackendSpec(
            name=BACKEND,
            factory=build,
            config_type=SqliteConfig,
            # create() is one INSERT OR IGNORE, atomic across processes sharing the file.
            capabilities=frozenset({CAP_ATOMIC_CREATE}),
            distribution="angos-sqlite",
            description="metadata in one SQLite database file (WAL mode)",
        )
    ]
