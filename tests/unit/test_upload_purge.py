"""The upload purger (angos_core.registry.upload_purge) on a real fs blob store in tmp_path:
old against young sessions, dry run, a failing abort, a store that cannot be listed, the
loop that survives it, the app's background task, and the config section.

A session is made old the way a store that has run for a week holds it: its ``startedat``
record says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from angos_fs.blob_store import FsBlobStore
from angos_fs.config import FsConfig

from angos_core import layout
from angos_core.config import UploadPurgingConfig
from angos_core.errors import ConfigError, UploadNotFound
from angos_core.http import make_app_from_toml
from angos_core.http.app import config_from_toml, make_app
from angos_core.http.context import REGISTRY
from angos_core.http.metrics import Metrics
from angos_core.protocols import UploadRef
from angos_core.registry.upload_purge import UploadPurger
from angos_core.registry.wrappers import WrappedBlobStore
from angos_core.testing.blob_store import digest_of, listed_uploads, put_blob, stream

HOUR = 3600.0


def age_session(root: Path, upload: UploadRef, secs: float) -> None:
    """Record that ``upload`` started ``secs`` ago."""
    started = datetime.now(UTC) - timedelta(seconds=secs)
    path = root / layout.upload_key(upload, layout.STARTED_AT)
    path.write_bytes(layout.started_at_content(started))


def session_dir(root: Path, upload: UploadRef) -> Path:
    return root / layout.upload_prefix(upload)


class Faults:
    def __init__(self) -> None:
        self.abort_fails: set[str] = set()
        self.listing_fails = False


class FaultyFs(FsBlobStore):
    """The real fs store, with I/O errors where a test asks for them."""

    def __init__(self, config: FsConfig, faults: Faults) -> None:
        super().__init__(config)
        self.faults = faults

    async def upload_abort(self, upload: UploadRef) -> None:
        if upload.upload_id in self.faults.abort_fails:
            raise OSError(5, "Input/output error")
        await super().upload_abort(upload)

    async def list_uploads(self) -> AsyncIterator[tuple[UploadRef, datetime]]:
        async for found in super().list_uploads():
            if self.faults.listing_fails:
                raise OSError(107, "Transport endpoint is not connected")
            yield found


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def store(tmp_path: Path, faults: Faults) -> AsyncIterator[WrappedBlobStore]:
    inner = FaultyFs(FsConfig(root_dir=str(tmp_path)), faults)
    wrapped = WrappedBlobStore(inner)
    await wrapped.open()
    yield wrapped
    await wrapped.aclose()


async def start(store: WrappedBlobStore, name: str, data: bytes = b"") -> UploadRef:
    upload = UploadRef(name, str(uuid.uuid4()))
    await store.upload_start(upload)
    if data:
        await store.upload_append(upload, 0, stream(data))
    return upload


def purger(
    store: WrappedBlobStore, metrics: Metrics | None = None, **settings: Any
) -> UploadPurger:
    config = UploadPurgingConfig(**{"age_secs": HOUR, "interval_secs": HOUR, **settings})
    return UploadPurger(store, config, observer=metrics)


def sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def is_open(store: WrappedBlobStore, upload: UploadRef) -> bool:
    try:
        await store.upload_size(upload)
    except UploadNotFound:
        return False
    return True


# --------------------------------------------------------------------------- passes


async def test_purges_old_sessions_and_keeps_young_ones(
    store: WrappedBlobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    committed = await put_blob(store, b"a committed blob")
    old = await start(store, "team/app", b"half a layer")
    old_nested = await start(store, "team/app/sub/deeper")
    young = await start(store, "team/app", b"still coming")
    age_session(tmp_path, old, 2 * HOUR)
    age_session(tmp_path, old_nested, 24 * HOUR)
    age_session(tmp_path, young, HOUR - 60)  # a minute short of the age
    metrics = Metrics()

    with caplog.at_level(logging.INFO, logger="angos.upload_purge"):
        result = await purger(store, metrics).run_pass()

    assert (result.found, result.purged, result.failed, result.complete) == (3, 2, 0, True)
    assert result.left_open == 1
    assert not await is_open(store, old)
    assert not await is_open(store, old_nested)
    assert not session_dir(tmp_path, old).exists()
    assert not session_dir(tmp_path, old_nested).exists()
    assert await is_open(store, young)
    assert await store.upload_size(young) == len(b"still coming")
    assert await store.stat(committed) == len(b"a committed blob")
    assert set(await listed_uploads(store)) == {young}
    assert sample(metrics, "angos_uploads_purged_total") == 2
    assert sample(metrics, "angos_upload_sessions_open") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f"purged upload {old.upload_id} of repository team/app, started 2h0m" in m for m in messages
    )
    assert any(f"purged upload {old_nested.upload_id}" in m and "1d0h" in m for m in messages)
    assert any(
        "pass done: 3 session(s) found, 2 purged, 0 failed, 1 left open" in m for m in messages
    )


async def test_a_young_session_can_still_be_completed_after_a_pass(
    store: WrappedBlobStore, tmp_path: Path
) -> None:
    young = await start(store, "team/app", b"first ")
    await purger(store).run_pass()
    await store.upload_append(young, 6, stream(b"second"))
    digest = digest_of(b"first second")
    await store.upload_commit(young, digest)
    assert await store.stat(digest) == len(b"first second")


async def test_dry_run_only_logs(
    store: WrappedBlobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = await start(store, "team/app", b"bytes")
    age_session(tmp_path, old, 2 * HOUR)
    young = await start(store, "team/app")
    metrics = Metrics()

    with caplog.at_level(logging.INFO, logger="angos.upload_purge"):
        result = await purger(store, metrics, dry_run=True).run_pass()

    assert (result.found, result.purged, result.would_purge) == (2, 0, 1)
    assert await is_open(store, old) and await is_open(store, young)
    assert sample(metrics, "angos_uploads_purged_total") == 0
    assert sample(metrics, "angos_upload_sessions_open") == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"would purge upload {old.upload_id} of repository team/app" in m for m in messages)
    assert not any(young.upload_id in m for m in messages)
    assert any("1 would be purged: dry run" in m for m in messages)


async def test_a_failing_abort_does_not_stop_the_pass(
    store: WrappedBlobStore, tmp_path: Path, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    uploads = [await start(store, f"team/r{i}", b"x") for i in range(4)]
    for upload in uploads:
        age_session(tmp_path, upload, 2 * HOUR)
    stuck = uploads[1]
    faults.abort_fails.add(stuck.upload_id)
    metrics = Metrics()

    with caplog.at_level(logging.INFO, logger="angos.upload_purge"):
        result = await purger(store, metrics).run_pass()

    assert (result.found, result.purged, result.failed, result.complete) == (4, 3, 1, True)
    assert [await is_open(store, u) for u in uploads] == [False, True, False, False]
    assert sample(metrics, "angos_upload_sessions_open") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"cannot abort upload {stuck.upload_id} of repository team/r1" in w for w in warnings
    )

    faults.abort_fails.clear()  # the next pass tries again
    result = await purger(store, metrics).run_pass()
    assert (result.found, result.purged) == (1, 1)
    assert not await is_open(store, stuck)
    assert sample(metrics, "angos_uploads_purged_total") == 4


async def test_a_store_that_cannot_be_listed_makes_a_warning(
    store: WrappedBlobStore, tmp_path: Path, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    old = await start(store, "team/app")
    age_session(tmp_path, old, 2 * HOUR)
    faults.listing_fails = True
    metrics = Metrics()
    metrics.upload_sessions_left(7)  # what an earlier pass found

    with caplog.at_level(logging.INFO, logger="angos.upload_purge"):
        result = await purger(store, metrics).run_pass()  # does not raise

    assert (result.complete, result.purged) == (False, 0)
    assert await is_open(store, old)
    assert sample(metrics, "angos_upload_sessions_open") == 7  # not replaced by a partial count
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot list the upload sessions of blob store fs" in w for w in warnings)
    assert any("BackendUnavailable" in w or "not connected" in w for w in warnings)


async def test_the_loop_survives_an_outage_and_purges_once_the_store_is_back(
    store: WrappedBlobStore, tmp_path: Path, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    old = await start(store, "team/app")
    age_session(tmp_path, old, 2 * HOUR)
    faults.listing_fails = True
    task = asyncio.create_task(purger(store, interval_secs=0.05).run_forever(0))
    try:
        with caplog.at_level(logging.INFO, logger="angos.upload_purge"):
            deadline = asyncio.get_running_loop().time() + 30
            while not any("cannot list" in r.getMessage() for r in caplog.records):
                assert asyncio.get_running_loop().time() < deadline, "no pass ran"
                await asyncio.sleep(0.02)
            assert await is_open(store, old)
            faults.listing_fails = False
            while await is_open(store, old):
                assert asyncio.get_running_loop().time() < deadline, "never purged"
                assert not task.done(), task
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_entries_that_are_not_sessions_are_left_alone(
    store: WrappedBlobStore, tmp_path: Path
) -> None:
    old = await start(store, "team/app")
    age_session(tmp_path, old, 2 * HOUR)
    junk = tmp_path / layout.uploads_prefix("team/app") / "not-a-uuid"
    junk.mkdir()
    os.utime(junk, (0, 0))  # as old as it gets
    result = await purger(store).run_pass()
    assert (result.found, result.skipped, result.purged) == (2, 1, 1)
    assert junk.is_dir()
    assert not await is_open(store, old)


async def test_an_empty_store(store: WrappedBlobStore) -> None:
    metrics = Metrics()
    result = await purger(store, metrics).run_pass()
    assert (result.found, result.purged, result.complete) == (0, 0, True)
    assert sample(metrics, "angos_upload_sessions_open") == 0


# --------------------------------------------------------------------------- in the app


def purge_toml(root: Path, **settings: object) -> str:
    lines = [f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items()]
    return (
        f'[blob_store.fs]\nroot_dir = "{root}"\n\n[maintenance.upload_purging]\n'
        + "\n".join(lines)
        + "\n"
    )


async def test_the_app_purges_in_the_background_and_stops_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "data"
    app = make_app_from_toml(purge_toml(root, age_secs=HOUR, interval_secs=0.05))
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/v2/team/app/blobs/uploads/")
        assert resp.status == 202
        upload = UploadRef("team/app", resp.headers["Docker-Upload-UUID"])
        age_session(root, upload, 2 * HOUR)
        deadline = asyncio.get_running_loop().time() + 30
        while session_dir(root, upload).exists():
            assert asyncio.get_running_loop().time() < deadline, "never purged"
            await asyncio.sleep(0.02)
        resp = await client.patch(resp.headers["Location"], data=b"late")
        assert resp.status == 404
        assert (await resp.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        # The counter moves right after the session is gone: poll it, too.
        while "angos_uploads_purged_total 1.0" not in (
            metrics_text := await (await client.get("/metrics")).text()
        ):
            assert asyncio.get_running_loop().time() < deadline, metrics_text
            await asyncio.sleep(0.02)
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "angos-upload-purge"]
    assert tasks == []


@pytest.mark.parametrize(("enabled", "maintenance"), [(False, True), (True, False)])
async def test_no_purging_when_disabled_or_not_this_process(
    tmp_path: Path, enabled: bool, maintenance: bool
) -> None:
    root = tmp_path / "data"
    config = config_from_toml(purge_toml(root, enabled=enabled, age_secs=HOUR, interval_secs=0.01))
    app = make_app(config, maintenance=maintenance)
    async with TestClient(TestServer(app)):
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "angos-upload-purge"]
        upload = await app[REGISTRY].uploads.start("team/app")
        age_session(root, upload, 2 * HOUR)
        await asyncio.sleep(0.1)  # ten intervals: a purger would have run
        assert session_dir(root, upload).exists()


# --------------------------------------------------------------------------- config


def test_config_defaults_match_distribution(tmp_path: Path) -> None:
    settings = config_from_toml(purge_toml(tmp_path)).maintenance.upload_purging
    # Distribution's age; passes hourly (not daily) so that empty sessions go within hours.
    assert settings == UploadPurgingConfig(
        enabled=True, age_secs=604800, empty_age_secs=3600, interval_secs=3600, dry_run=False
    )
    default = config_from_toml(f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n')
    assert default.maintenance.upload_purging == settings


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ("age_secs = 0", "maintenance.upload_purging.age_secs", "must be positive"),
        ("interval_secs = -5", "maintenance.upload_purging.interval_secs", "e.g. 3600"),
        ("age = 10", "maintenance.upload_purging.age", "unknown key"),
        ('interval_secs = "1d"', "maintenance.upload_purging.interval_secs", "expected float"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, table: str, key: str, words: str) -> None:
    toml = f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n[maintenance.upload_purging]\n{table}\n'
    with pytest.raises(ConfigError) as info:
        config_from_toml(toml)
    assert info.value.key == key
    assert words in str(info.value)


def test_unknown_maintenance_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_toml(f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n[maintenance.none]\nx = 1\n')
    assert info.value.key == "maintenance.none"


async def test_a_blob_store_without_list_uploads_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class OlderPlugin:
        """A third-party blob store written before ``list_uploads`` existed."""

        name = "older"

        async def upload_abort(self, upload: UploadRef) -> None:
            raise AssertionError("nothing was listed, nothing may be aborted")

    with caplog.at_level(logging.WARNING, logger="angos.upload_purge"):
        result = await purger(WrappedBlobStore(OlderPlugin())).run_pass()
    assert (result.complete, result.found) == (False, 0)
    assert any(
        "cannot list the upload sessions of blob store older" in r.getMessage()
        for r in caplog.records
    )
