"""``angos migrate``: copy a registry between any two pairs of stores, and verify the copy.

:mod:`.copy` does a pass, :mod:`.verify` compares, :mod:`.walk` lists the layout through
``MetadataStore.list_children``; docs/operations.md ("Migrating between backends") is the
operator's side.
"""

from angos_core.migrate.copy import DEFAULT_JOBS, Migration
from angos_core.migrate.progress import Progress
from angos_core.migrate.report import PassReport
from angos_core.migrate.transfer import SESSION_REPOSITORY
from angos_core.migrate.verify import Verifier

__all__ = ["DEFAULT_JOBS", "SESSION_REPOSITORY", "Migration", "PassReport", "Progress", "Verifier"]
