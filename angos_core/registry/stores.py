"""The wrapped storage backends a registry works on, built from the configuration.

Which kinds are storage, in which order they open, and how each is wrapped is declared in
:mod:`angos_core.kinds` (``ExtensionKind.stores_field``); the typed attributes below are
the domain's view of the core ones.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields
from typing import Any

from angos_core.config import AngosConfig, GlobalConfig
from angos_core.kinds import EXTENSION_KINDS, ExtensionKind
from angos_core.registry.wrappers import (
    Observer,
    WrappedBlobStore,
    WrappedCache,
    WrappedLockProvider,
    WrappedMetadataStore,
)


@dataclass
class Stores:
    blobs: WrappedBlobStore
    meta: WrappedMetadataStore
    locks: WrappedLockProvider
    cache: WrappedCache
    settings: GlobalConfig = field(default_factory=GlobalConfig)
    #: Every storage backend by kind name, in opening order, with its kind's declaration:
    #: the four above, and any other storage kind declared.
    by_kind: dict[str, tuple[ExtensionKind, Any]] = field(default_factory=dict)
    #: In a live migration, the old stores the blob and metadata stores read through.
    fallback: Stores | None = None

    def __post_init__(self) -> None:
        if not self.by_kind:  # built from the four backends directly
            self.by_kind = {
                kind.name: (kind, getattr(self, kind.stores_field))
                for kind in EXTENSION_KINDS
                if kind.stores_field is not None
            }

    @classmethod
    def from_config(
        cls, config: AngosConfig, observer: Observer | None = None, *, live: bool = False
    ) -> Stores:
        """Build (but do not open) every configured storage backend, each checked against
        its kind's protocol and wrapped once. ``live`` (``angos serve``): with a
        ``[migration]``, the blob and metadata stores read through from the old ones
        (:mod:`angos_core.migrate.live`); the commands work on the stores as configured."""
        fallback = None
        if live and config.migration is not None:
            fallback = cls.from_config(config.migration, observer)
        by_kind = {}
        for kind in config.kinds:
            if kind.stores_field is None:
                continue
            backend = config.backend(kind.name).build()
            if fallback is not None:
                backend = _read_through(kind.name, backend, fallback)
            by_kind[kind.name] = (kind, kind.wrap(backend, observer))
        attributes = {f.name for f in fields(cls)}
        typed = {
            kind.stores_field: backend
            for kind, backend in by_kind.values()
            if kind.stores_field in attributes
        }
        return cls(**typed, settings=config.global_, by_kind=by_kind, fallback=fallback)

    def backend(self, kind: str) -> Any:
        """The wrapped backend of storage kind ``kind``."""
        return self.by_kind[kind][1]

    def _all(self) -> list[Any]:
        return [backend for _, backend in self.by_kind.values()]

    async def open(self) -> None:
        if self.fallback is not None:
            await self.fallback.open()
        try:
            await self._open()
        except BaseException:
            if self.fallback is not None:
                await self.fallback.aclose()
            raise

    async def _open(self) -> None:
        opened = []
        try:
            for backend in self._all():
                await backend.open()
                opened.append(backend)
        except BaseException:
            for backend in reversed(opened):
                await backend.aclose()
            raise

    async def aclose(self) -> None:
        for backend in reversed(self._all()):
            # Closing the others matters more than this one's failure.
            with contextlib.suppress(Exception):
                await backend.aclose()
        if self.fallback is not None:
            await self.fallback.aclose()

    def describe(self) -> str:
        return ", ".join(f"{name}={backend.name}" for name, (_, backend) in self.by_kind.items())


def _read_through(kind: str, backend: Any, old: Stores) -> Any:
    """The new ``backend`` of storage kind ``kind`` reading through ``old``'s (blob and
    metadata stores only; the others are the new config's)."""
    from angos_core.migrate.live import LiveBlobStore, LiveMetadataStore

    if kind == "blob_store":
        return LiveBlobStore(backend, old.blobs)
    if kind == "metadata_store":
        return LiveMetadataStore(backend, old.meta)
    return backend
