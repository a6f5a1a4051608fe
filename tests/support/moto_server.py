"""Re-export: the logic lives in :mod:`angos_core.testing.moto_server`
(shipped in the core wheel, for plugins' tests)."""

from angos_core.testing.moto_server import *  # noqa: F403
