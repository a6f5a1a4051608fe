"""``angos scrub``: a store with known damage beside healthy images, on every storage shape.

The damage is made below the registry (store writes, deletes, a file or object overwritten),
as a crash, a lost disk block or a hand edit would leave it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from angos_core import layout
from angos_core.cli import main
from angos_core.oci import mediatypes as mt
from angos_core.registry import scrub
from angos_core.registry.scrub import Kind, Scrubber
from angos_core.testing.moto_server import s3_client
from tests.support.api import OCI_CONFIG, OCI_LAYER, Api, descriptor, digest_of
from tests.support.storage import KEY_PREFIX, Storage

Key = tuple[str, str | None, str | None, str | None]


@pytest.fixture(autouse=True)
def _no_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    # No push is in flight in these tests: a half-written tag need not be looked at twice
    # seconds apart (tests/ops/test_scrub_race.py covers the wait).
    monkeypatch.setattr(scrub, "HALF_WRITTEN_SETTLE_SECS", 0.0)


async def scrub_cli(config: Path, *args: str) -> tuple[int, str, str]:
    # main() runs its own event loop, so it runs in a thread; its output is captured here.
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                return main(["scrub", "-c", str(config), *args])
            except SystemExit as exc:  # a usage error, from argparse
                return int(exc.code or 0)

    code = await asyncio.to_thread(run)
    return code, out.getvalue(), err.getvalue()


async def push_image(api: Api, name: str, tag: str | None, *layers: bytes, **extra: Any) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": repr(layers)}).encode()
    for blob in (config, *layers):
        await api.push_blob(name, blob)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config, OCI_CONFIG),
        "layers": [descriptor(layer, OCI_LAYER) for layer in layers],
        **extra,
    }
    body = json.dumps(doc).encode()
    resp = await api.put_manifest(name, tag or digest_of(body), body)
    assert resp.status == 201, await resp.text()
    return digest_of(body)


async def body_of(api: Api, name: str, digest: str) -> bytes:
    resp = await api.get(f"/v2/{name}/manifests/{digest}", headers={"Accept": mt.OCI_MANIFEST})
    assert resp.status == 200
    return await resp.read()


def overwrite_blob(storage: Storage, digest: str, data: bytes) -> None:
    """Replace a blob's stored bytes behind the registry (a flipped disk block)."""
    key = layout.blob_data_key(digest)
    if storage.shape.blobs == "fs":
        (storage.root / key).write_bytes(data)
    else:
        assert storage.bucket is not None
        client = s3_client(storage.bucket.endpoint)
        client.put_object(Bucket=storage.bucket.name, Key=KEY_PREFIX + key, Body=data)


@dataclass
class Damaged:
    """The store with its healthy images and the damage done to it."""

    config: Path
    storage: Storage
    #: (repository, reference) -> manifest body, and (repository, digest) -> blob bytes.
    healthy_manifests: dict[tuple[str, str], bytes]
    healthy_blobs: dict[tuple[str, str], bytes]
    #: (kind, repository, digest, tag) of every damage.
    expected: set[Key]
    #: What --repair may remove, and what then stays wrong.
    removable: set[str]
    after_repair: set[Key]
    #: What --repair writes again.
    relinked: set[str]
    #: A healthy manifest of lib/app and its one referrer.
    good: str
    signature: str


def key_of(finding: dict[str, Any]) -> Key:
    return (finding["kind"], finding["repository"], finding["digest"], finding["tag"])


@pytest.fixture
async def damaged(api: Api, storage: Storage, tmp_path: Path) -> Damaged:
    meta = api.registry.stores.meta
    blobs = api.registry.stores.blobs
    app, other = "lib/app", "other/repo"
    healthy_layers = [b"healthy layer one", b"shared healthy layer"]
    good = await push_image(api, app, "v1", *healthy_layers)
    signature = await push_image(
        api,
        app,
        None,
        b"signature",
        subject=descriptor(await body_of(api, app, good), mt.OCI_MANIFEST),
    )
    stable = await push_image(api, other, "stable", b"shared healthy layer", b"other layer")

    # 1. A layer's data lost behind its link (and the manifest that needs it).
    lost = b"lost layer"
    d1 = await push_image(api, app, "d1", lost)
    await blobs.delete(digest_of(lost))
    # 2. A manifest body lost behind its revision link.
    d2 = await push_image(api, app, "d2", b"layer of d2")
    await meta.delete(layout.blob_data_key(d2))
    # 3. A blob's bytes corrupted.
    flipped = b"flipped layer"
    d3 = await push_image(api, app, "d3", flipped)
    overwrite_blob(storage, digest_of(flipped), b"flipped layeR")
    # 4. A tag pointing at a revision that is gone.
    d4 = await push_image(api, app, "d4", b"layer of d4")
    await meta.delete(layout.revision_link_key(app, d4))
    # 5. A half-written tag: an index entry without its current link.
    await meta.put(layout.tag_index_key(app, "half", good), layout.link_content(good))
    # 6. A referrer link to a referrer that is not in the repository.
    ghost = digest_of(b"no such referrer")
    await meta.put(layout.referrer_link_key(app, good, ghost), layout.link_content(ghost))
    # 7. A revision whose body (matching its digest) does not parse.
    junk = b"not a manifest"
    await meta.put(layout.blob_data_key(digest_of(junk)), junk)
    await meta.put(
        layout.revision_link_key("broken/one", digest_of(junk)),
        layout.link_content(digest_of(junk)),
    )

    # 8. A manifest body whose bytes changed (with fs for both stores, also a blob's file).
    d8 = await push_image(api, "broken/two", "v1", b"layer of a damaged manifest")
    body8 = await body_of(api, "broken/two", d8)
    await meta.put(layout.blob_data_key(d8), body8 + b" ")

    # 9. A manifest's layer stored but no longer linked in its repository.
    unlinked = b"unlinked layer"
    d9 = await push_image(api, app, "d9", unlinked)
    await meta.delete(layout.layer_link_key(app, digest_of(unlinked)))
    # 10. An index whose child manifest is gone from the repository.
    children = [await push_image(api, "broken/three", None, bytes([i]) * 8) for i in range(2)]
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            descriptor(await body_of(api, "broken/three", c), mt.OCI_MANIFEST) for c in children
        ],
    }
    assert (await api.put_manifest("broken/three", "multi", index, mt.OCI_INDEX)).status == 201
    await meta.delete(layout.revision_link_key("broken/three", children[1]))

    healthy_manifests = {}
    for name, ref in [
        (app, "v1"),
        (app, good),
        (app, signature),
        (other, "stable"),
        (other, stable),
    ]:
        healthy_manifests[(name, ref)] = await body_of(api, name, ref)
    healthy_blobs = {(app, digest_of(b)): b for b in [*healthy_layers, b"signature"]}
    healthy_blobs.update(
        {(other, digest_of(b)): b for b in [b"shared healthy layer", b"other layer"]}
    )

    flipped_d = digest_of(flipped)
    expected: set[Key] = {
        (Kind.LAYER_LINK_MISSING_BLOB, app, digest_of(lost), None),
        (Kind.MANIFEST_BLOB_MISSING, app, digest_of(lost), None),
        (Kind.REVISION_BODY_MISSING, app, d2, None),
        (Kind.BLOB_CORRUPT, None, flipped_d, None),
        (Kind.MANIFEST_BLOB_CORRUPT, app, flipped_d, None),
        (Kind.TAG_MANIFEST_MISSING, app, d4, "d4"),
        (Kind.TAG_HALF_WRITTEN, app, None, "half"),
        (Kind.REFERRER_MISSING, app, ghost, None),
        (Kind.REVISION_BODY_UNPARSABLE, "broken/one", digest_of(junk), None),
        (Kind.REVISION_BODY_CORRUPT, "broken/two", d8, None),
        (Kind.MANIFEST_BLOB_UNLINKED, app, digest_of(unlinked), None),
        (Kind.MANIFEST_CHILD_MISSING, "broken/three", children[1], None),
    }
    removable = {
        layout.layer_link_key(app, digest_of(lost)),
        layout.blob_data_key(flipped_d),
        layout.layer_link_key(app, flipped_d),
        layout.tag_current_key(app, "d4"),
        layout.tag_index_key(app, "d4", d4),
        layout.tag_index_key(app, "half", good),
        layout.referrer_link_key(app, good, ghost),
    }
    after_repair: set[Key] = {
        (Kind.MANIFEST_BLOB_MISSING, app, digest_of(lost), None),
        (Kind.REVISION_BODY_MISSING, app, d2, None),
        # The corrupt bytes are gone now: the manifest misses the blob until pushed again.
        (Kind.MANIFEST_BLOB_MISSING, app, flipped_d, None),
        (Kind.REVISION_BODY_UNPARSABLE, "broken/one", digest_of(junk), None),
        (Kind.REVISION_BODY_CORRUPT, "broken/two", d8, None),
        (Kind.MANIFEST_CHILD_MISSING, "broken/three", children[1], None),
    }
    relinked = {layout.layer_link_key(app, digest_of(unlinked))}
    assert d1 and d9 and d3
    cfg = tmp_path / "config.toml"
    cfg.write_text(storage.toml())
    return Damaged(
        cfg,
        storage,
        healthy_manifests,
        healthy_blobs,
        expected,
        removable,
        after_repair,
        relinked,
        good,
        signature,
    )


def keys(report: dict[str, Any]) -> set[Key]:
    found = [key_of(f) for f in report["findings"]]
    assert len(found) == len(set(found)), found  # each problem once
    return set(found)


async def assert_healthy(api: Api, damaged: Damaged) -> None:
    for (name, ref), body in damaged.healthy_manifests.items():
        assert await body_of(api, name, ref) == body, (name, ref)
    for (name, digest), data in damaged.healthy_blobs.items():
        resp = await api.get(f"/v2/{name}/blobs/{digest}")
        assert resp.status == 200, (name, digest)
        assert await resp.read() == data
    resp = await api.get(f"/v2/lib/app/referrers/{damaged.good}")
    referrers = await resp.json()
    assert [m["digest"] for m in referrers["manifests"]] == [damaged.signature]


async def test_scrub_finds_exactly_the_damage(api: Api, damaged: Damaged) -> None:
    before = api.files()
    code, out, err = await scrub_cli(damaged.config, "--json")
    assert code == 1, err
    report = json.loads(out)
    assert keys(report) == damaged.expected
    assert not any(f["repaired"] for f in report["findings"])
    assert report["exit_code"] == 1
    assert report["repositories"] == 5
    # Seven healthy-or-damaged images with a config and layers each, and the referrer.
    assert report["blobs_checked"] >= 14
    assert "12 problems found" in err
    assert api.files() == before  # read-only

    # Without --json: one human line per finding and the summary on stdout.
    code, out, _ = await scrub_cli(damaged.config)
    assert code == 1
    assert "tag_half_written: lib/app:half" in out
    assert "revision_body_missing: lib/app@" in out
    assert out.rstrip().splitlines()[-1].startswith("scrub: ")


async def test_scrub_repair_fixes_what_can_be_derived(api: Api, damaged: Damaged) -> None:
    before = api.files()
    code, out, err = await scrub_cli(damaged.config, "--repair", "--dry-run", "--json")
    assert code == 1, err
    report = json.loads(out)
    assert keys(report) == damaged.expected
    would = {key_of(f) for f in report["findings"] if f["outcome"].startswith("would ")}
    assert would == damaged.expected - {
        (k, r, d, t) for (k, r, d, t) in damaged.expected if k not in scrub.REPAIRS
    }
    assert api.files() == before

    code, out, err = await scrub_cli(damaged.config, "--repair", "--json")
    assert code == 1, err  # some damage cannot be repaired
    report = json.loads(out)
    assert keys(report) == damaged.expected
    repaired = {key_of(f) for f in report["findings"] if f["repaired"]}
    assert repaired == {k for k in damaged.expected if k[0] in scrub.REPAIRS}
    for finding in report["findings"]:
        assert finding["repaired"] == finding["repairable"], finding
        assert finding["outcome"].startswith("repaired: " if finding["repaired"] else "not "), (
            finding
        )
    after = api.files()
    assert after - before == damaged.relinked
    gone = before - after
    # The removed keys are exactly the damaged ones (a tag directory may hold more files).
    assert damaged.removable <= gone
    for key in gone - damaged.removable:
        assert key.startswith(layout.tag_prefix("lib/app", "d4")), key
    await assert_healthy(api, damaged)
    unlinked = (
        next(iter(damaged.relinked)).split("/_layers/")[1].replace("/", ":", 1)[: -len("/link")]
    )
    resp = await api.get(f"/v2/lib/app/blobs/{unlinked}")
    assert resp.status == 200 and await resp.read() == b"unlinked layer"
    for tag in ("d4", "half"):
        assert (await api.head(f"/v2/lib/app/manifests/{tag}")).status == 404
    listed = await (await api.get("/v2/lib/app/tags/list")).json()
    assert sorted(listed["tags"]) == ["d1", "d2", "d3", "d9", "v1"]

    # A second scrub reports only what cannot be repaired.
    code, out, err = await scrub_cli(damaged.config, "--json")
    assert code == 1, err
    assert keys(json.loads(out)) == damaged.after_repair
    code, out, _ = await scrub_cli(damaged.config, "--repair", "--json")
    assert code == 1
    assert keys(json.loads(out)) == damaged.after_repair
    assert api.files() == after


async def test_scrub_of_a_healthy_store_exits_0(api: Api, tmp_path: Path, storage: Storage) -> None:
    good = await push_image(api, "a", "v1", b"one", b"two")
    await push_image(
        api, "a", None, b"sig", subject=descriptor(await body_of(api, "a", good), mt.OCI_MANIFEST)
    )
    children = [await push_image(api, "a", None, bytes([i]) * 10) for i in range(2)]
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [descriptor(await body_of(api, "a", c), mt.OCI_MANIFEST) for c in children],
    }
    assert (await api.put_manifest("a", "multi", index, mt.OCI_INDEX)).status == 201
    cfg = tmp_path / "c.toml"
    cfg.write_text(storage.toml())
    before = api.files()
    code, out, err = await scrub_cli(cfg, "--repair", "--json")
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["findings"] == []
    assert report["manifests_checked"] == 5
    assert report["tags_checked"] == 2
    assert api.files() == before


@pytest.mark.shapes("fs", "s3")
async def test_scrub_rate_limit_bounds_throughput(
    api: Api, tmp_path: Path, storage: Storage
) -> None:
    size = 2 * 1024 * 1024
    await api.push_blob("big/one", b"x" * size)
    cfg = tmp_path / "c.toml"
    cfg.write_text(storage.toml())
    started = time.monotonic()
    code, out, err = await scrub_cli(cfg, "--json", "--rate-limit", "1MiB")
    elapsed = time.monotonic() - started
    assert code == 0, err
    report = json.loads(out)
    assert report["bytes_checked"] == size
    # 2 MiB at 1 MiB/s: at least about 2 s (the first chunk is read before any wait).
    assert elapsed >= 1.5, elapsed
    assert report["seconds"] >= 1.5


@pytest.mark.shapes("fs")
async def test_scrub_usage_errors(tmp_path: Path, storage: Storage) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(storage.toml())
    code, _, err = await scrub_cli(cfg, "--dry-run")
    assert code == 2
    assert "--dry-run" in err and "--repair" in err
    code, _, err = await scrub_cli(cfg, "--rate-limit", "fast")
    assert code == 2
    assert "--rate-limit" in err and "bytes per second" in err


@pytest.mark.shapes("fs")
async def test_scrub_progress_on_a_terminal(api: Api) -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    await api.push_blob("a", b"some bytes")
    stream = Tty()
    report = await Scrubber(api.registry, progress=stream, out=lambda _: None).run()
    assert report.exit_code == 0
    assert "scrub: " in stream.getvalue()
    assert "B/s" in stream.getvalue() or "B " in stream.getvalue()


@pytest.mark.shapes("fs")
async def test_scrub_logs_progress_without_a_terminal(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import io

    monkeypatch.setattr(scrub, "PROGRESS_LOG_SECS", 0.0)
    await push_image(api, "a", "v1", b"one")
    with caplog.at_level("INFO", logger="angos.scrub"):
        report = await Scrubber(api.registry, progress=io.StringIO(), out=lambda _: None).run()
    assert report.exit_code == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "angos.scrub"]
    assert any(m.endswith("bytes) hashed so far") for m in messages), messages
    assert any("1/1 repositories checked" in m for m in messages)


# ---------------------------------------------------------------- leftovers


def aged(path: Path, secs: float = 2 * 86400) -> Path:
    old = time.time() - secs
    os.utime(path, (old, old))
    return path


@pytest.mark.shapes("fs", "s3", "s3-blobs+fs-metadata", "fs-blobs+s3-metadata")
async def test_scrub_removes_the_leftovers_of_cut_short_writes_and_nothing_else(
    api: Api, tmp_path: Path, storage: Storage
) -> None:
    await push_image(api, "a", "v1", b"one")
    root = storage.root
    data = next((p for p in root.rglob("data") if "blobs" in p.parts), None)
    leftovers: list[Path] = []
    if data is not None:
        # A blob's temporary file, a new tag directory's, and a delete_prefix's trash.
        tmp_file = data.parent / ".tmp-0123"
        tmp_file.write_bytes(b"half a blob")
        trash = root / "v2/repositories/a/_manifests/tags/.tmp-4567"
        (trash / "current").mkdir(parents=True)
        (trash / "current/link").write_text("sha256:" + "0" * 64)
        leftovers = [aged(tmp_file), aged(trash)]
        # A write in progress, and a hidden name no write makes: neither is a leftover.
        (data.parent / ".tmp-fresh").write_bytes(b"being written")
        (data.parent / ".keep").write_bytes(b"")
        aged(data.parent / ".keep")
    cfg = tmp_path / "c.toml"
    cfg.write_text(storage.toml())

    code, out, _ = await scrub_cli(cfg, "--json")
    found = json.loads(out)["findings"]
    # Both fs stores of the fs shape share the root: each leftover is reported once.
    assert sorted(f["path"] for f in found) == sorted(str(p) for p in leftovers)
    assert all(f["kind"] == "leftover" and f["repairable"] for f in found)
    assert code == (1 if leftovers else 0)

    code, out, _ = await scrub_cli(cfg, "--repair", "--dry-run", "--json")
    assert [f["outcome"] for f in json.loads(out)["findings"]] == ["would remove it"] * len(
        leftovers
    )
    assert all(p.exists() for p in leftovers)

    code, out, _ = await scrub_cli(cfg, "--repair")
    assert code == 0, out
    assert out.count("leftover: ") == len(leftovers)
    assert not any(p.exists() for p in leftovers)
    if data is not None:
        assert (data.parent / ".tmp-fresh").exists() and (data.parent / ".keep").exists()
    assert (await api.get("/v2/a/manifests/v1")).status == 200
    assert (await scrub_cli(cfg))[0] == 0


@pytest.mark.shapes("fs")
async def test_a_leftover_written_again_before_the_repair_is_left(
    api: Api, storage: Storage
) -> None:
    await push_image(api, "a", "v1", b"one")
    left = storage.root / ".tmp-89ab"
    left.write_bytes(b"x")
    aged(left)
    scrubber = Scrubber(api.registry, repair=True, progress=None, out=lambda _: None)
    report = await scrubber.scan()
    (finding,) = report.findings
    assert (finding.kind, finding.path) == (Kind.LEFTOVER, str(left))
    left.write_bytes(b"in use again")
    await scrubber.repair(finding)
    assert finding.outcome == "skipped: no longer a leftover"
    assert left.exists()
    # Nothing outside the root, and no name but a temporary one, is ever removed.
    outside = storage.root.parent / ".tmp-outside"
    outside.write_bytes(b"")
    aged(outside)
    assert not await api.registry.stores.meta.remove_leftover(str(outside), 0)
    assert not await api.registry.stores.meta.remove_leftover(str(storage.root / "v2"), 0)
    climbing = f"{storage.root}/../{outside.name}"
    assert not await api.registry.stores.meta.remove_leftover(climbing, 0)
    assert outside.exists() and (storage.root / "v2").exists()
