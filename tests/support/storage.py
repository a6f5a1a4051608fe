"""The storage shapes the in-process API tests run on, and the fixtures that serve them.

A *shape* is which backend holds the blobs and which holds the metadata. :data:`SHAPES`
lists them; a new shape is one line there (plus, for a new backend, one section writer in
:data:`_SECTIONS`). Fixtures (registered in the root conftest.py):

``storage`` (function) -> :class:`Storage`
    Fresh storage of one shape: a directory under ``tmp_path`` and, when the shape uses S3,
    a fresh bucket on the session's moto server (over HTTP). Every test that asks for it
    (directly or through ``api``) runs once per shape, with the shape id in the test id::

        test_x[fs]  test_x[s3]  test_x[s3-blobs+fs-metadata]  test_x[fs-blobs+s3-metadata]

``api`` (function) -> :class:`~angos_core.testing.api.Api`
    The app served in process on ``storage`` (aiohttp test client). For extra config or a
    second app on the same storage (another replica), use ``storage.open_api(extra_toml)``.

A test that only makes sense on some shapes names them with the ``shapes`` marker, on the
test or on the module (``pytestmark``)::

    @pytest.mark.shapes("fs")
    async def test_stored_under_distribution_layout(api): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from angos_core.testing.api import Api, serve_config, without_gc_bookkeeping
from angos_core.testing.moto_server import S3Bucket, s3_client

#: The key prefix of the S3 stores: the tests check nothing is written outside it.
KEY_PREFIX = "registry/"


@dataclass(frozen=True)
class Shape:
    """Which backend holds the blobs and which the metadata (backend names)."""

    id: str
    blobs: str
    metadata: str

    @property
    def uses_s3(self) -> bool:
        return "s3" in (self.blobs, self.metadata)


SHAPES = [
    Shape("fs", blobs="fs", metadata="fs"),
    Shape("s3", blobs="s3", metadata="s3"),
    Shape("s3-blobs+fs-metadata", blobs="s3", metadata="fs"),
    Shape("fs-blobs+s3-metadata", blobs="fs", metadata="s3"),
]
SHAPES_BY_ID = {shape.id: shape for shape in SHAPES}


def _fs_section(section: str, storage: Storage) -> str:
    return f'[{section}.fs]\nroot_dir = "{storage.root}"\n'


def _s3_section(section: str, storage: Storage) -> str:
    assert storage.bucket is not None
    return storage.bucket.toml(section, key_prefix=KEY_PREFIX, multipart_part_size="5MiB")


#: backend name -> writer of its ``[<section>.<backend>]`` table for a storage.
_SECTIONS: dict[str, Callable[[str, Storage], str]] = {"fs": _fs_section, "s3": _s3_section}

# The tests read blob bodies and headers from the registry itself; redirects to presigned
# URLs have their own tests (tests/integration/test_s3_serve.py).
_GLOBAL = "enable_redirect = false\n"


@dataclass
class Storage:
    """One shape's storage for one test: a local root and, if the shape needs it, a bucket."""

    shape: Shape
    root: Path
    bucket: S3Bucket | None = None

    def toml(self, extra: str = "") -> str:
        """The config of this storage, with ``extra`` tables (a ``[global]`` table in
        ``extra`` is merged with the shape's own global settings)."""
        if "enable_redirect" in extra:
            glob = ""
        elif "[global]\n" in extra:
            extra, glob = extra.replace("[global]\n", "[global]\n" + _GLOBAL, 1), ""
        else:
            glob = "[global]\n" + _GLOBAL
        parts = [glob, extra, _SECTIONS[self.shape.blobs]("blob_store", self)]
        if self.shape.metadata != self.shape.blobs:
            parts.append(_SECTIONS[self.shape.metadata]("metadata_store", self))
        return "\n".join(p for p in parts if p)

    def bucket_keys(self) -> set[str]:
        """Every object key in the bucket, below :data:`KEY_PREFIX` (asserted)."""
        if self.bucket is None:
            return set()
        client: Any = s3_client(self.bucket.endpoint)
        keys: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket.name):
            for obj in page.get("Contents", []):
                assert obj["Key"].startswith(KEY_PREFIX), obj["Key"]
                keys.add(obj["Key"][len(KEY_PREFIX) :])
        return keys

    def files(self) -> set[str]:
        """Every stored object's relative path: files under the root and keys in the bucket,
        less the garbage collector's marks (``without_gc_bookkeeping``)."""
        disk = (
            {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}
            if self.root.exists()
            else set()
        )
        return without_gc_bookkeeping(disk | self.bucket_keys())

    @asynccontextmanager
    async def open_api(
        self, extra_toml: str = "", extra_plugins: Iterable[object] = ()
    ) -> AsyncIterator[Api]:
        """The app on this storage, served in process; several may be open at once."""
        async with serve_config(
            self.toml(extra_toml), root=self.root, extra_plugins=extra_plugins, files=self.files
        ) as api:
            yield api


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "shapes(*ids): run a test using `storage` only on these storage shapes"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage_shape" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("shapes")
    ids = list(marker.args) if marker else [shape.id for shape in SHAPES]
    unknown = [i for i in ids if i not in SHAPES_BY_ID]
    if unknown:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: unknown storage shapes {unknown}; "
            f"known: {list(SHAPES_BY_ID)}"
        )
    metafunc.parametrize("storage_shape", [SHAPES_BY_ID[i] for i in ids], ids=ids)


@pytest.fixture
def storage(storage_shape: Shape, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    """Fresh storage of the test's shape (see the module docstring)."""
    # Only S3 shapes start (and wait for) the session's moto server.
    bucket = request.getfixturevalue("s3_bucket") if storage_shape.uses_s3 else None
    return Storage(storage_shape, tmp_path / "data", bucket)


@pytest.fixture
async def api(storage: Storage) -> AsyncIterator[Api]:
    """The app on ``storage``, served in process."""
    async with storage.open_api() as api:
        yield api
