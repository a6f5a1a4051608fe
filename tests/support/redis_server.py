"""Re-export: the logic lives in :mod:`angos_core.testing.redis_server`
(shipped in the core wheel, for plugins' tests)."""

from angos_core.testing.redis_server import *  # noqa: F403
