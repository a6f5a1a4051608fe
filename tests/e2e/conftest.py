"""The registry the end-to-end tests talk to.

Angos by default. ``ANGOS_E2E_REGISTRY=distribution`` points the same tests at CNCF
Distribution (``docker-registry``, Debian package docker-registry) instead: the reference
implementation passing them shows the tests ask only what the spec and the clients need.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.e2e.oci_images import Source, build_source
from tests.support.angos_server import AngosServerFactory, free_port, fs_config, loopback
from tests.support.moto_server import S3Bucket
from tests.support.tools import require_tool


class Registry(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def url(self) -> str: ...


class DistributionServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"


def _start_distribution(root: Path) -> Iterator[DistributionServer]:
    binary = require_tool("docker-registry", "apt-get install docker-registry")
    server = DistributionServer(free_port())
    config = root / "distribution.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {server.host}\n"
    )
    with open(root / "distribution.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with loopback.open(f"{server.url}/v2/", timeout=2):
                    break
            except (OSError, urllib.error.URLError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "docker-registry did not start:\n"
                        + (root / "distribution.log").read_text(errors="replace")
                    ) from None
                time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


#: Storage shapes the Angos end-to-end tests run on: the same clients must work on each.
STORAGES = ("fs", "s3", "s3-blobs+fs-metadata", "fs-blobs+s3-metadata")
_MODE = os.environ.get("ANGOS_E2E_REGISTRY", "angos")


def angos_config(storage: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The Angos config for one storage shape; S3 shapes get a fresh bucket on moto."""
    fs_root = tmp_path / "registry-data"
    if storage == "fs":
        return fs_config(fs_root)
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    fs_table = f'root_dir = "{fs_root}"\n'
    if storage == "s3":
        return bucket.toml("blob_store")
    if storage == "s3-blobs+fs-metadata":
        return bucket.toml("blob_store") + "[metadata_store.fs]\n" + fs_table
    if storage == "fs-blobs+s3-metadata":
        return "[blob_store.fs]\n" + fs_table + bucket.toml("metadata_store")
    raise ValueError(f"unknown storage shape {storage!r}")


@pytest.fixture(params=("distribution",) if _MODE == "distribution" else STORAGES)
def registry(
    request: pytest.FixtureRequest, angos_server_factory: AngosServerFactory, tmp_path: Path
) -> Iterator[Registry]:
    """A running, empty registry on 127.0.0.1 (plain HTTP, no auth), on each storage shape."""
    if request.param == "distribution":
        yield from _start_distribution(tmp_path)
    else:
        yield angos_server_factory(angos_config(request.param, tmp_path, request))


@pytest.fixture
def fs_registry(angos_server_factory: AngosServerFactory, tmp_path: Path) -> Iterator[Registry]:
    """One registry on local disk, for tests whose subject is the server, not the storage."""
    if _MODE == "distribution":
        yield from _start_distribution(tmp_path)
    else:
        yield angos_server_factory(fs_config(tmp_path / "registry-data"))


@pytest.fixture
def skopeo() -> str:
    return require_tool("skopeo", "apt-get install skopeo (or run scripts/test)")


@pytest.fixture
def source(tmp_path: Path) -> Source:
    """An OCI layout in ``tmp_path/source``: a two-platform index and a single image."""
    return build_source(tmp_path / "source")
