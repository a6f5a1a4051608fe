"""Re-export: the logic lives in :mod:`angos_core.testing.api`
(shipped in the core wheel, for plugins' tests)."""

from angos_core.testing.api import *  # noqa: F403
