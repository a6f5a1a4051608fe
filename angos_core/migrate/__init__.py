"""``angos migrate``: copy a registry between any two pairs of stores, and verify the copy.

:mod:`.copy` does a pass, :mod:`.verify` compares, :mod:`.walk` lists the layout through
``MetadataStore.list_children``; docs/operations.md ("Migrating between backends") is the
operator's side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from angos_core.lazy import lazy_exports

if TYPE_CHECKING:
    from angos_core.migrate.copy import Migration
    from angos_core.migrate.progress import Progress
    from angos_core.migrate.report import PassReport
    from angos_core.migrate.transfer import SESSION_REPOSITORY
    from angos_core.migrate.verify import Verifier

#: Objects copied (or compared) at once: ``angos migrate --jobs``. Here, not in .copy, so
#: that the command's options are built without importing the copy.
DEFAULT_JOBS = 8

__all__ = ["DEFAULT_JOBS", "SESSION_REPOSITORY", "Migration", "PassReport", "Progress", "Verifier"]

# Loaded on first use: every `angos` process builds the migrate command's options, and a
# server imports this package only for a live migration's stores (.live).
__getattr__ = lazy_exports(
    __name__,
    {
        "Migration": "angos_core.migrate.copy",
        "Progress": "angos_core.migrate.progress",
        "PassReport": "angos_core.migrate.report",
        "SESSION_REPOSITORY": "angos_core.migrate.transfer",
        "Verifier": "angos_core.migrate.verify",
    },
)
