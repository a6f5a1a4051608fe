"""Fixtures shared by every test in the repository, plugins' included.

angos_core.testing.pytest_plugin starts the real components a plugin's tests need too (redis,
moto S3, ``angos serve``, dockerd); tests/support adds what only this repository's tests use.
"""

pytest_plugins = [
    "angos_core.testing.pytest_plugin",
    "tests.support.storage",
    "tests.support.containerd_engine",
    "tests.support.xdist_groups",
]
