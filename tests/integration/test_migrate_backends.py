"""``angos migrate`` between backends, online: fs -> S3, S3 -> fs, fs -> fs + sqlite metadata.

Each test seeds the old registry, keeps pushing into it while ``angos migrate`` runs as a
real process, SIGKILLs the first run after some blobs and checks that what the destination
serves then is whole (every tag it lists pulls completely, every blob hashes to its
digest), reruns while pushes continue, stops the pushes, runs the last pass, and then:
every image pulls byte-identical from an app on the new config, ``--verify`` is clean, and
``--verify`` reports a difference planted afterwards.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from angos_core import layout
from tests.integration.migrate_support import (
    assert_blobs_whole,
    has_blobs,
    has_tags,
    kill_mid_copy,
    open_stores,
    push_extras,
    push_images,
    pusher,
    run_migrate,
    serve,
    snapshot,
    write_config,
)
from tests.support.moto_server import S3Bucket

# Minutes, not seconds, on a loaded machine: moto answers each request slowly.
pytestmark = pytest.mark.timeout(600)

#: Seed images, 3 blobs each (config + 2 layers), plus the extras' dozen: moto is slow.
SEED_IMAGES = 12


def fs_toml(root: Path) -> str:
    return f'[blob_store.fs]\nroot_dir = "{root}"\n'


def s3_toml(bucket: S3Bucket, prefix: str) -> str:
    return bucket.toml("blob_store", key_prefix=prefix, multipart_part_size="5MiB")


def sqlite_toml(root: Path, db: Path) -> str:
    return fs_toml(root) + f'\n[metadata_store.sqlite]\npath = "{db}"\n'


async def migrate_online(tmp_path: Path, old_toml: str, new_toml: str) -> None:
    old = write_config(tmp_path / "old.toml", old_toml)
    new = write_config(tmp_path / "new.toml", new_toml)
    async with serve(old, tmp_path) as old_api:
        await push_images(old_api, "seed", SEED_IMAGES)
        await push_extras(old_api)

        stop = asyncio.Event()
        pushes = asyncio.create_task(pusher(old_api, stop))
        try:
            # A run killed mid-copy leaves only whole objects and whole images behind:
            # once among the blobs, once among the repositories' links.
            await kill_mid_copy(old, new, lambda dst: has_blobs(dst, 5))
            async with open_stores(new) as dst:
                await assert_blobs_whole(dst)
            # (The blobs are all there by now: a wider run reaches the links sooner.)
            await kill_mid_copy(old, new, lambda dst: has_tags(dst, 2), jobs=4)
            async with serve(new, tmp_path) as partial:
                assert await snapshot(partial)  # some tags, each pulling whole

            # The rerun, pushes still arriving: its catch-up pass takes what it can.
            code, out, err = await run_migrate(old, new, "--jobs", "4")
            assert code == 0, (out, err)
        finally:
            stop.set()
            pushed = await pushes
        assert pushed > 0

        # Pushes stopped (the cut-over): the last pass copies what arrived meanwhile.
        code, out, err = await run_migrate(old, new, "--json")
        assert code == 0, (out, err)
        summary = json.loads(out)
        first = summary["passes"][0]["counts"]
        assert all(c["failed"] == 0 for c in first.values())
        assert first["blob"]["skipped"] > 0  # the earlier runs' copies are not redone
        before = await snapshot(old_api)

    code, out, err = await run_migrate(old, new, "--verify", "--deep")
    assert code == 0, (out, err)
    assert "0 differences" in out

    async with serve(new, tmp_path) as new_api:
        after = await snapshot(new_api)
        assert after == before
        assert len([k for k in after if k.startswith("live")]) >= pushed
        # The migrated registry takes pushes of its own.
        await push_images(new_api, "after", 1)

    # A difference planted at the destination is reported, and the exit code says so.
    tag_key = layout.tag_current_key("seed/app0", "v0")
    async with open_stores(old) as src:
        current = await src.meta.get(tag_key)
        # Not the tag's own manifest: pointing the tag at it would change nothing.
        digest = next(
            d
            for d in sorted([d async for d in src.blobs.list_digests()])
            if layout.link_content(d) != current
        )
    async with open_stores(new) as dst:
        assert await dst.blobs.delete(digest)
        await dst.meta.put(tag_key, layout.link_content(digest))
    code, out, _ = await run_migrate(old, new, "--verify")
    assert code == 1
    assert f"blob {digest}: missing at the destination" in out
    assert f"tag {tag_key}: different bytes" in out


@pytest.mark.heavy
async def test_fs_to_s3_online(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    await migrate_online(tmp_path, fs_toml(tmp_path / "fs"), s3_toml(s3_bucket, "reg/"))


@pytest.mark.heavy
async def test_s3_to_fs_online(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    await migrate_online(tmp_path, s3_toml(s3_bucket, ""), fs_toml(tmp_path / "fs"))


async def test_fs_to_sqlite_metadata_online(tmp_path: Path) -> None:
    await migrate_online(
        tmp_path,
        fs_toml(tmp_path / "fs"),
        sqlite_toml(tmp_path / "blobs", tmp_path / "meta" / "metadata.sqlite3"),
    )
