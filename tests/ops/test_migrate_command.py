"""``angos migrate`` in process: every storage shape as the source, what a pass writes and in
which order, what it refuses to copy, what ``--verify`` reports, and the command's errors.

The online runs with pushes and a SIGKILL are in tests/integration/test_migrate_backends.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from angos_core import layout
from angos_core.cli import main
from angos_core.http.app import config_from_toml
from angos_core.migrate import SESSION_REPOSITORY, Migration, Progress, Verifier
from angos_core.migrate.pace import Pace
from angos_core.registry import Stores
from tests.integration.migrate_support import push_extras, push_images, snapshot
from tests.support.api import serve_config
from tests.support.storage import Storage


def fs_toml(root: Path) -> str:
    return f'[global]\nenable_redirect = false\n\n[blob_store.fs]\nroot_dir = "{root}"\n'


@asynccontextmanager
async def stores_of(toml: str) -> AsyncIterator[Stores]:
    stores = Stores.from_config(config_from_toml(toml))
    await stores.open()
    try:
        yield stores
    finally:
        await stores.aclose()


def migration(src: Stores, dst: Stores, **kw: Any) -> Migration:
    return Migration(src.blobs, src.meta, dst.blobs, dst.meta, **kw)


def verifier(src: Stores, dst: Stores, **kw: Any) -> Verifier:
    return Verifier(src.blobs, src.meta, dst.blobs, dst.meta, **kw)


async def seed(toml: str, root: Path) -> dict[str, Any]:
    async with serve_config(toml, root=root) as api:
        await push_images(api, "lib", 6)
        await push_extras(api)
        return await snapshot(api)


async def test_every_shape_migrates_to_fs(storage: Storage, tmp_path: Path) -> None:
    before = await seed(storage.toml(), storage.root)
    target = fs_toml(tmp_path / "new")
    async with stores_of(storage.toml()) as src, stores_of(target) as dst:
        report = await migration(src, dst, jobs=3).run()
        assert report.total_failed == 0, report.failures
        assert report.counts["blob"].copied > 0 and report.counts["tag"].copied == 9
        again = await migration(src, dst).run()
        assert again.total_copied == 0 and again.total_failed == 0
        assert again.counts["tag"].skipped == 9
        assert await verifier(src, dst, deep=True).run() == []
    async with serve_config(target, root=tmp_path / "new") as api:
        assert await snapshot(api) == before


class Recording:
    """A store wrapper that logs each write (``put``, ``create``, ``upload_commit``,
    ``put_blob``) in order."""

    def __init__(self, inner: Any, log: list[str]) -> None:
        self._inner, self._log = inner, log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def put(self, key: str, data: bytes) -> None:
        self._log.append(f"meta:{key}")
        await self._inner.put(key, data)

    async def create(self, key: str, data: bytes) -> bool:
        self._log.append(f"meta:{key}")
        created: bool = await self._inner.create(key, data)
        return created

    async def upload_commit(self, upload: Any, digest: str) -> None:
        self._log.append(f"blob:{digest}")
        await self._inner.upload_commit(upload, digest)

    async def put_blob(self, digest: str, chunks: Any, size: int) -> bool:
        self._log.append(f"blob:{digest}")
        put: bool = await self._inner.put_blob(digest, chunks, size)
        return put


async def test_writes_in_dependency_order(tmp_path: Path) -> None:
    """A tag is written after its revision, which follows its body, its layer links and
    their blobs, and its index entries after it: a process killed between any two writes
    leaves no tag with a missing part and no tag directory without ``current``."""
    source = fs_toml(tmp_path / "old")
    async with serve_config(source, root=tmp_path / "old") as api:
        await push_extras(api)
    log: list[str] = []
    # Blobs in one store, metadata in another: manifest bodies are metadata writes.
    target = (
        fs_toml(tmp_path / "blobs") + f'\n[metadata_store.fs]\nroot_dir = "{tmp_path / "meta"}"\n'
    )
    async with stores_of(source) as src, stores_of(target) as dst:
        m = Migration(src.blobs, src.meta, Recording(dst.blobs, log), Recording(dst.meta, log))
        report = await m.run()
        assert report.total_failed == 0, report.failures
        position = {key: i for i, key in enumerate(log)}
        assert len(position) == len(log)  # nothing written twice
        # The source's one fs tree lists manifest bodies as blobs too: they are copied as
        # blobs (its blob store lists them) and as metadata (bodies are metadata).
        checked = 0
        meta = {key[5:]: i for key, i in position.items() if key.startswith("meta:")}
        for key, index in meta.items():
            if not key.endswith("/current/link"):
                continue
            name = key[len(layout.REPOSITORIES) : key.index("/_manifests/")]
            tag = key.split("/_manifests/tags/")[1].split("/")[0]
            target_digest = (await dst.meta.get(key) or b"").decode()
            revision = layout.revision_link_key(name, target_digest)
            body = layout.blob_data_key(target_digest)
            # The index entry after ``current``, as a push writes them: the tag's
            # directory appears only with its ``current`` link.
            assert index < meta[layout.tag_index_key(name, tag, target_digest)]
            assert meta[body] < meta[revision] < index
            body_bytes = await dst.meta.get(body)
            assert body_bytes is not None
            doc = json.loads(body_bytes)
            for child in doc.get("manifests", []):
                child_revision = layout.revision_link_key(name, child["digest"])
                assert meta[child_revision] < meta[revision]
            for desc in [d for d in [doc.get("config"), *doc.get("layers", [])] if d]:
                link = layout.layer_link_key(name, desc["digest"])
                assert position[f"blob:{desc['digest']}"] < meta[link] < meta[revision]
            checked += 1
        assert checked == 3  # extras/multi:1, :latest, extras/big:v1


class Tampered:
    """A source blob store whose bytes for one digest are not the digest's."""

    def __init__(self, inner: Any, digest: str) -> None:
        self._inner, self._digest = inner, digest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        async for chunk in self._inner.read(digest, offset, length):
            yield bytes([chunk[0] ^ 1]) + chunk[1:] if digest == self._digest else chunk


async def test_a_blob_that_does_not_hash_to_its_digest_is_not_copied(tmp_path: Path) -> None:
    source = fs_toml(tmp_path / "old")
    async with serve_config(source, root=tmp_path / "old") as api:
        digest = await api.push_blob("lib/app", os.urandom(300_000))
        await api.push_image("lib/app", "v1", layer=b"fine")
    async with stores_of(source) as src, stores_of(fs_toml(tmp_path / "new")) as dst:
        report = await Migration(Tampered(src.blobs, digest), src.meta, dst.blobs, dst.meta).run()
        assert report.counts["blob"].failed == 1
        assert any(digest in f and "hash to" in f for f in report.failures)
        assert report.counts["layer_link"].failed == 1  # its link waits for the blob
        assert await dst.blobs.stat(digest) is None
        assert await dst.meta.get(layout.layer_link_key("lib/app", digest)) is None
        assert [u async for u in dst.blobs.list_uploads()] == []  # the session was aborted
        assert report.counts["tag"].copied == 1  # the rest of the registry still copies


async def test_sessions_a_killed_run_left_are_aborted(tmp_path: Path) -> None:
    from angos_core.protocols import UploadRef

    source, target = fs_toml(tmp_path / "old"), fs_toml(tmp_path / "new")
    async with serve_config(source, root=tmp_path / "old") as api:
        await api.push_image("lib/app", "v1")
    async with stores_of(source) as src, stores_of(target) as dst:
        left = UploadRef(SESSION_REPOSITORY, "0b0e4d4a-7b8e-4c1e-9d8f-111111111111")
        other = UploadRef("lib/app", "0b0e4d4a-7b8e-4c1e-9d8f-222222222222")
        await dst.blobs.upload_start(left)
        await dst.blobs.upload_start(other)
        await migration(src, dst).run()
        assert [u async for u, _ in dst.blobs.list_uploads()] == [other]


async def test_verify_reports_every_difference(tmp_path: Path) -> None:
    source, target = fs_toml(tmp_path / "old"), fs_toml(tmp_path / "new")
    async with serve_config(source, root=tmp_path / "old") as api:
        await push_images(api, "lib", 3)
        layer = await api.push_blob("lib/app0", os.urandom(5000))
    async with stores_of(source) as src, stores_of(target) as dst:
        await migration(src, dst).run()
        assert await verifier(src, dst).run() == []
        # Plant one difference of each kind.
        await dst.blobs.delete(layer)
        blob_file = tmp_path / "new" / layout.blob_data_key(layer)
        blob_file.parent.mkdir(parents=True, exist_ok=True)
        blob_file.write_bytes(b"short")
        tag = layout.tag_current_key("lib/app1", "v1")
        await dst.meta.put(tag, b"sha256:" + b"0" * 64)
        extra = layout.tag_current_key("lib/app1", "ghost")
        await dst.meta.put(extra, b"sha256:" + b"1" * 64)
        gone = layout.layer_link_key("lib/app2", layer)
        await src.meta.put(gone, layout.link_content(layer))
        differences = await verifier(src, dst).run()
        assert f"blob {layer}: 5 bytes at the destination, 5000 at the source" in differences
        assert f"tag {tag}: different bytes" in differences
        assert f"tag {extra}: only at the destination" in differences
        assert f"layer_link {gone}: missing at the destination" in differences
        assert len(differences) == 4
        # --deep re-hashes what has the right size.
        blob_file.write_bytes(b"x" * 5000)
        deep = await verifier(src, dst, deep=True).run()
        assert any(d.startswith(f"blob {layer}: the destination's bytes hash to") for d in deep)


async def test_retention_times_are_copied_and_verified(tmp_path: Path) -> None:
    """The push and pull records ``angos prune`` reads (v2/_retention/) move with their
    manifests; the later time wins, and --verify reports a push time missing or older (not
    a pull time: the old registry serves pulls after the last pass)."""
    source, target = fs_toml(tmp_path / "old"), fs_toml(tmp_path / "new")
    async with serve_config(source, root=tmp_path / "old") as api:
        digest, _ = await api.push_image("lib/app", "v1", layer=b"timed")
        assert (await api.get("/v2/lib/app/manifests/v1")).status == 200
    pushed = layout.manifest_time_key("lib/app", layout.PUSHED, digest)
    pulled = layout.manifest_time_key("lib/app", layout.PULLED, digest)
    async with stores_of(source) as src, stores_of(target) as dst:
        assert await src.meta.get(pushed) and await src.meta.get(pulled)  # flushed at shutdown
        report = await migration(src, dst).run()
        assert report.counts["retention_time"].copied == 2, report.failures
        for key in (pushed, pulled):
            assert await dst.meta.get(key) == await src.meta.get(key)
        assert await verifier(src, dst).run() == []
        # An older push time at the destination is reported, then replaced; a newer pull
        # time there (a pull it served) is kept.
        await dst.meta.put(pushed, b"2001-01-01T00:00:00+00:00")
        await dst.meta.put(pulled, b"2099-01-01T00:00:00+00:00")
        differences = await verifier(src, dst).run()
        assert differences == [
            f"retention_time {pushed}: 2001-01-01T00:00:00+00:00 at the destination, "
            f"{(await src.meta.get(pushed) or b'').decode()} at the source"
        ]
        again = await migration(src, dst).run()
        assert again.counts["retention_time"].copied == 1
        assert await dst.meta.get(pushed) == await src.meta.get(pushed)
        assert await dst.meta.get(pulled) == b"2099-01-01T00:00:00+00:00"
        await dst.meta.delete(pulled)
        assert await verifier(src, dst).run() == []
        await dst.meta.delete(pushed)
        assert await verifier(src, dst).run() == [
            f"retention_time {pushed}: missing at the destination"
        ]


def test_progress_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out, bar=False, interval_secs=0)
    progress.phase("blobs", 4)
    progress.add_bytes(2048)
    progress.advance()
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("angos migrate: blobs 0/4")
    assert any("blobs 1/4, 2.0 KiB" in line and "ETA" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "0"], "--jobs: must be at least 1, got 0"),
        (["--passes", "0"], "--passes: must be at least 1, got 0"),
        (["--deep"], "--deep: only applies with --verify"),
        (
            ["--max-writes-per-sec", "-1"],
            "--max-writes-per-sec: must be 0 (no limit) or more, got -1",
        ),
        (
            ["--max-writes-per-sec", "nan"],
            "--max-writes-per-sec: must be 0 (no limit) or more, got nan",
        ),
    ],
)
def test_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(fs_toml(tmp_path / "r"))
    assert main(["migrate", "--from", str(config), "--to", str(config), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_copies_then_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(fs_toml(tmp_path / "old"))
    new.write_text(fs_toml(tmp_path / "new"))
    assert main(["migrate", "--from", str(old), "--to", str(new), "--verify"]) == 0  # both empty

    async def push() -> None:
        async with serve_config(old.read_text(), root=tmp_path / "old") as api:
            await api.push_image("lib/app", "v1")

    asyncio.run(push())
    assert main(["migrate", "--from", str(old), "--to", str(new), "--verify"]) == 1
    assert "missing at the destination" in capsys.readouterr().out
    assert main(["migrate", "--from", str(old), "--to", str(new)]) == 0
    out = capsys.readouterr().out
    assert "pass 1: blob 3 copied" in out  # config, layer, and the manifest body (one fs tree)
    # The catch-up pass finds nothing new, so there is no third.
    assert "pass 2: blob 0 copied" in out and "pass 3" not in out
    assert main(["migrate", "--from", str(old), "--to", str(new), "--verify", "--deep"]) == 0


async def test_a_pace_spaces_writes_across_jobs_without_saving_up_a_burst() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    pace = Pace(4, clock=lambda: now[0], sleep=sleep)  # 0.25 s apart
    await asyncio.gather(*(pace.wait() for _ in range(4)))  # four jobs at once
    assert slept == [0.25, 0.5, 0.75]  # the first goes at once
    now[0] += 10  # idle for a while: no four-at-once burst afterwards
    slept.clear()
    await pace.wait()
    await pace.wait()
    assert slept == [0.25]
    with pytest.raises(ValueError):
        Pace(0)


async def test_max_writes_per_sec_paces_a_real_copy(tmp_path: Path) -> None:
    source = fs_toml(tmp_path / "old")
    async with serve_config(source, root=tmp_path / "old") as api:
        await push_images(api, "lib", 3)
    async with stores_of(source) as src, stores_of(fs_toml(tmp_path / "new")) as dst:
        started = time.monotonic()
        report = await migration(src, dst, jobs=8, max_writes_per_sec=50).run()
        elapsed = time.monotonic() - started
    assert report.total_failed == 0, report.failures
    written = report.total_copied
    assert written >= 20  # blobs, bodies, layer links, revisions, tags
    # ``written`` writes 1/50 s apart (the first at once), whatever 8 jobs would do.
    assert elapsed >= (written - 1) / 50
