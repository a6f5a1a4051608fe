"""Re-export: the logic lives in :mod:`angos_core.testing.docker_engine`
(shipped in the core wheel, for plugins' tests)."""

from angos_core.testing.docker_engine import *  # noqa: F403
