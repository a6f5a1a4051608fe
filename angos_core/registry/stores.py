"""The four wrapped backends a registry works on, built from the configuration."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from angos_core.config import AngosConfig, GlobalConfig
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

    @classmethod
    def from_config(cls, config: AngosConfig, observer: Observer | None = None) -> Stores:
        """Build (but do not open) every configured backend, each wrapped once."""
        return cls(
            blobs=WrappedBlobStore(config.blob_store.build(), observer),
            meta=WrappedMetadataStore(config.metadata_store.build(), observer),
            locks=WrappedLockProvider(config.lock_provider.build(), observer),
            cache=WrappedCache(config.cache.build(), observer),
            settings=config.global_,
        )

    def _all(
        self,
    ) -> tuple[WrappedBlobStore | WrappedMetadataStore | WrappedLockProvider | WrappedCache, ...]:
        return (self.blobs, self.meta, self.locks, self.cache)

    async def open(self) -> None:
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

    def describe(self) -> str:
        return (
            f"blob_store={self.blobs.name}, metadata_store={self.meta.name}, "
            f"lock_provider={self.locks.name}, cache={self.cache.name}"
        )
