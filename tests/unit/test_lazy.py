"""``lazy_exports``: a plugin package's names resolve on first use, and only then."""

from __future__ import annotations

import subprocess
import sys

import pytest

from angos_core.lazy import lazy_exports

PROBE = """
import sys
import angos_redis
before = "redis" in sys.modules
cls = angos_redis.RedisCache
print(before, "redis" in sys.modules, cls.__module__)
"""


def test_a_listed_name_is_imported_on_first_access_only() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "True", "angos_redis.cache"]


def test_an_unlisted_name_is_an_attribute_error_naming_the_package() -> None:
    getattr_ = lazy_exports("some_pkg", {"Thing": "json"})
    with pytest.raises(AttributeError, match="module 'some_pkg' has no attribute 'Other'"):
        getattr_("Other")


def test_a_listed_name_comes_from_its_module() -> None:
    import json

    assert lazy_exports("some_pkg", {"dumps": "json"})("dumps") is json.dumps
