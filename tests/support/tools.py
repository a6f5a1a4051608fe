"""Re-export: the logic lives in :mod:`angos_core.testing.tools`
(shipped in the core wheel, for plugins' tests)."""

from angos_core.testing.tools import *  # noqa: F403
