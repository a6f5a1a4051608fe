"""Names a package exports but imports only when first used.

A plugin's package is imported whenever the catalogue is built, so anything it imports up
front (aioboto3, redis-py, PyJWT, cryptography) is resident in every process, used or not.
A package lists such names once and assigns the result to its module ``__getattr__``
(PEP 562); its ``TYPE_CHECKING`` imports keep the names visible to type checkers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name of ``sources``
    (name -> the module defining it) on first access; any other name is an AttributeError,
    as for a module without one."""

    def __getattr__(name: str) -> Any:
        if name in sources:
            return getattr(importlib.import_module(sources[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
