"""Contract test suites every backend must pass, shipped for third-party plugins.

Each suite is a plain pytest class of async tests (run with pytest-asyncio in auto mode).
Subclass it in a ``Test*`` class and override its one fixture; pytest collects every
inherited test. For a metadata store::

    import pytest
    from angos_core.testing import MetadataStoreContract
    from angos_mything import MyMetadataStore, MyConfig

    class TestMyMetadataStore(MetadataStoreContract):
        @pytest.fixture
        async def metadata_store(self, tmp_path):
            store = MyMetadataStore(MyConfig(path=str(tmp_path / "db")))
            await store.open()
            yield store
            await store.aclose()

The fixture to override per suite:

* :class:`BlobStoreContract` -- ``blob_store``: an opened, empty blob store.
* :class:`BlobPutContract` -- ``blob_store`` again, for a blob store declaring
  ``direct_put``: subclass it beside :class:`BlobStoreContract`.
* :class:`MetadataStoreContract` -- ``metadata_store``: an opened, empty metadata store.
* :class:`BlockingListContract` -- ``metadata_store`` again, for a metadata store with
  ``run_listing`` (:class:`~angos_core.protocols.MetadataBlockingList`): subclass it beside
  :class:`MetadataStoreContract`.
* :class:`LeftoversContract` -- ``metadata_store`` again, for a metadata store with
  ``leftovers`` (:class:`~angos_core.protocols.StoreLeftovers`): beside
  :class:`MetadataStoreContract`.
* :class:`CacheContract` -- ``cache``: an opened, empty cache.
* :class:`LockProviderContract` -- ``lock_provider_factory``: an async callable
  ``make(ttl=..., max_retries=..., retry_delay_ms=...)`` returning an opened provider; every
  provider it makes shares one lock space (for a networked provider: separate clients of one
  server), and the fixture closes them at teardown.
* :class:`AuthenticatorContract` -- ``authenticator_case``: an :class:`AuthenticatorCase`
  holding an opened authenticator plus good, bad and foreign credentials (see
  :mod:`angos_core.testing.authenticator`).

The suites need ``pytest`` and ``pytest-asyncio`` (``asyncio_mode = "auto"``).
"""

from angos_core.testing.authenticator import AuthenticatorCase, AuthenticatorContract
from angos_core.testing.blob_put import BlobPutContract
from angos_core.testing.blob_store import BlobStoreContract
from angos_core.testing.cache import CacheContract
from angos_core.testing.lock_provider import LockProviderContract, LockProviderFactory
from angos_core.testing.metadata_pages import BlockingListContract, LeftoversContract
from angos_core.testing.metadata_store import MetadataStoreContract

__all__ = [
    "AuthenticatorCase",
    "AuthenticatorContract",
    "BlobPutContract",
    "BlobStoreContract",
    "BlockingListContract",
    "CacheContract",
    "LeftoversContract",
    "LockProviderContract",
    "LockProviderFactory",
    "MetadataStoreContract",
]
