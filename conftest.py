"""Fixtures shared by every test in the repository, plugins' included.

Each module under tests/support starts one kind of real component for the tests.
"""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.moto_server",
    "tests.support.angos_server",
    "tests.support.storage",
    "tests.support.docker_engine",
    "tests.support.containerd_engine",
]
