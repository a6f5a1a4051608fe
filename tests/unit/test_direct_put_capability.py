"""A blob store that declares ``direct_put`` must implement ``BlobPut``; the core wrapper
says whether a store has it, and a plain store's ``put_blob`` refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from angos_fs import FsBlobStore, FsConfig

from angos_core import CAP_DIRECT_PUT, BackendSpec
from angos_core.config import BackendChoice
from angos_core.errors import BackendError, PluginError
from angos_core.kinds import EXTENSION_KINDS
from angos_core.registry.wrappers import WrappedBlobStore, blob_put_of
from angos_core.testing.blob_store import stream

BLOB_KIND = next(k for k in EXTENSION_KINDS if k.name == "blob_store")


class NoPut:
    """An fs blob store without ``put_blob`` (an older plugin)."""

    def __init__(self, config: FsConfig) -> None:
        self._inner = FsBlobStore(config)
        self.name = "noput"

    def __getattr__(self, name: str) -> Any:
        if name == "put_blob":
            raise AttributeError(name)
        return getattr(self._inner, name)


def choice(factory: Any, capabilities: frozenset[str], root: Path) -> BackendChoice:
    spec = BackendSpec(
        name="x",
        factory=factory,
        config_type=FsConfig,
        capabilities=capabilities,
        distribution="angos-x",
    )
    return BackendChoice(
        kind=BLOB_KIND,
        name="x",
        spec=spec,
        settings=FsConfig(root_dir=str(root)),
        table={},
        path="blob_store.x",
    )


def test_declaring_direct_put_without_put_blob_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"declares 'direct_put'.*lacks put_blob"):
        choice(NoPut, frozenset({CAP_DIRECT_PUT}), tmp_path).build()
    assert choice(FsBlobStore, frozenset({CAP_DIRECT_PUT}), tmp_path).build() is not None


async def test_the_wrapper_tells_and_refuses(tmp_path: Path) -> None:
    with_put = WrappedBlobStore(FsBlobStore(FsConfig(root_dir=str(tmp_path / "a"))))
    without = WrappedBlobStore(NoPut(FsConfig(root_dir=str(tmp_path / "b"))))
    assert with_put.direct_put and blob_put_of(with_put) is with_put
    assert not without.direct_put and blob_put_of(without) is None
    with pytest.raises(BackendError, match="no direct put"):
        await without.put_blob("sha256:" + "0" * 64, stream(b""), 0)
