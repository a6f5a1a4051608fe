"""``/readyz`` tells "cannot write" from "cannot serve" (issue 10, finding 10).

A full or read-only disk still serves every pull, so ``GET /readyz`` (the reads check a
load balancer uses) stays 200 while ``GET /readyz?write=1`` answers 503. The read-only
disk is a real read-only bind mount over the fs root where the test may mount (root, as
here and in CI), else the same ``EROFS`` injected into the fs plugin's writes; the full
disk is ``ENOSPC`` injected into every write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import Api, digest_of, open_api


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def fail_writes(root: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> Iterator[None]:
    """Opening a file under ``root`` for writing fails with ``code``; reads are untouched."""
    real_open = os.open

    def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and os.fspath(path).startswith(f"{root}{os.sep}"):
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", refusing_open)
        yield


@contextlib.contextmanager
def read_only(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``root`` becomes read-only: a bind mount if this process may mount, else EROFS."""
    if shutil.which("mount") and _mount("--bind", str(root), str(root)):
        try:
            if _mount("-o", "remount,bind,ro", str(root), str(root)):
                yield "bind mount"
                return
        finally:
            subprocess.run(["umount", str(root)], check=True)
    with fail_writes(root, monkeypatch, errno.EROFS):
        yield "EROFS injected"


async def readyz(api: Api, query: str = "") -> tuple[int, dict[str, Any]]:
    resp = await api.get(f"/readyz{query}")
    return resp.status, await resp.json()


async def assert_pulls_work_and_pushes_do_not(api: Api, digest: str, layer: bytes) -> None:
    manifest = await api.get(f"/v2/lib/app/manifests/{digest}")
    assert manifest.status == 200
    blob = await api.get(f"/v2/lib/app/blobs/{digest_of(layer)}")
    assert blob.status == 200
    assert await blob.read() == layer
    assert (await api.get("/v2/lib/app/tags/list")).status == 200
    assert (await api.request("POST", "/v2/lib/app/blobs/uploads/")).status == 503


async def test_read_only_root_stays_ready_for_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "d"
    layer = b"read-only layer" * 100
    async with open_api(root) as api:
        digest, _ = await api.push_image("lib/app", "v1", layer=layer)
        assert (await readyz(api, "?write=1"))[0] == 200
        with read_only(root, monkeypatch) as how:
            status, body = await readyz(api)
            assert status == 200, (how, body)
            assert body["status"] == "read-only"
            assert body["read"] is True and body["write"] is False
            store = body["backends"]["blob_store"]
            assert store["read"] is True and store["write"] is False
            assert "read-only file system" in store["error"]
            assert body["backends"]["lock_provider"]["write"] is True
            status, body = await readyz(api, "?write=1")
            assert status == 503
            assert body["status"] == "read-only"
            assert body["failing"] == ["blob_store (fs)", "metadata_store (fs)"]
            await assert_pulls_work_and_pushes_do_not(api, digest, layer)
        status, body = await readyz(api, "?write=1")
        assert (status, body["status"]) == (200, "ready")


async def test_full_disk_stays_ready_for_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = b"full-disk layer" * 100
    async with open_api(tmp_path / "d") as api:
        digest, _ = await api.push_image("lib/app", "v1", layer=layer)
        with fail_writes(tmp_path / "d", monkeypatch, errno.ENOSPC):
            status, body = await readyz(api)
            assert status == 200
            assert body["backends"]["metadata_store"]["read"] is True
            assert "no space left on device" in body["backends"]["metadata_store"]["error"]
            assert (await readyz(api, "?write=true"))[0] == 503
            await assert_pulls_work_and_pushes_do_not(api, digest, layer)


async def test_missing_root_fails_both_checks(tmp_path: Path) -> None:
    root = tmp_path / "d"
    async with open_api(root) as api:
        shutil.rmtree(root)
        for query in ("", "?write=1"):
            status, body = await readyz(api, query)
            assert status == 503
            assert body["status"] == "unavailable"
            assert body["read"] is False
            assert body["backends"]["blob_store"]["read"] is False


async def test_write_parameter_is_checked(tmp_path: Path) -> None:
    async with open_api(tmp_path / "d") as api:
        assert (await readyz(api, "?write=0"))[0] == 200
        status, body = await readyz(api, "?write=maybe")
        assert status == 400
        assert "write must be 1 or 0" in body["error"]


async def test_fs_starts_on_a_read_only_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart on a full disk serves pulls instead of crash-looping."""
    root = tmp_path / "d"
    layer = b"restart layer" * 100
    async with open_api(root) as api:
        digest, _ = await api.push_image("lib/app", "v1", layer=layer)
    with read_only(root, monkeypatch):
        async with open_api(root) as api:
            assert (await readyz(api))[0] == 200
            await assert_pulls_work_and_pushes_do_not(api, digest, layer)
