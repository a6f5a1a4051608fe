"""Live migration: ``[migration] from`` in the new config serves through the old stores
while ``angos migrate`` copies, and what the new side writes meanwhile wins."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from angos_core import layout
from angos_core.cli import main
from angos_core.errors import ConfigError
from angos_core.http.app import config_from_toml
from angos_core.migrate import Migration, Verifier
from angos_core.migrate.live import CopyTarget
from tests.integration.migrate_support import push_extras, push_images, snapshot
from tests.ops.test_migrate_command import fs_toml, stores_of
from tests.support.api import Api, serve_config


def live_toml(new: Path, old_config: Path) -> str:
    return fs_toml(new) + f'\n[migration]\nfrom = "{old_config}"\n'


async def setup(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The old registry (images, an index, a referrer, a second tag) and its config file."""
    old = tmp_path / "old"
    old_config = tmp_path / "old.toml"
    old_config.write_text(fs_toml(old))
    async with serve_config(fs_toml(old), root=old) as api:
        await push_images(api, "lib", 5)
        await push_extras(api)
        await api.push_image("lib/app0", "gone", layer=b"to be deleted")
        return old_config, await snapshot(api)


async def delete_tag(api: Api, repo: str, tag: str) -> None:
    resp = await api.request("DELETE", f"/v2/{repo}/manifests/{tag}")
    assert resp.status == 202, await resp.text()


async def test_pulls_through_the_new_config_during_the_copy(tmp_path: Path) -> None:
    old_config, before = await setup(tmp_path)
    new = tmp_path / "new"
    async with serve_config(live_toml(new, old_config), root=new) as api:
        # Nothing is copied yet: every image pulls whole, read through (and copied).
        assert await snapshot(api) == before
        # Writes that land during the copy: a tag moved, a tag deleted.
        moved, _ = await api.push_image("lib/app1", "v1", layer=os.urandom(3000))
        await delete_tag(api, "lib/app0", "gone")
        async with stores_of(fs_toml(tmp_path / "old")) as src, stores_of(fs_toml(new)) as dst:
            copy = Migration(
                src.blobs, src.meta, dst.blobs, CopyTarget(dst.meta), overwrite=False, jobs=4
            )
            # Pulls during the copy all succeed.
            reports, snap = await asyncio.gather(copy.run(), snapshot(api))
            assert reports.total_failed == 0, reports.failures
            assert copy.report.counts["tag"].copied + copy.report.counts["tag"].skipped > 0
            second = await copy.run()  # a catch-up pass changes nothing the new side wrote
            assert second.total_failed == 0
            differences = await Verifier(src.blobs, src.meta, dst.blobs, dst.meta, live=True).run()
            assert differences == []
        expected = {k: v for k, v in before.items() if k != "lib/app0:gone"}
        expected["lib/app0 tags"] = [t for t in before["lib/app0 tags"] if t != "gone"]
        expected["lib/app1:v1"] = moved
        for pulled in (snap, await snapshot(api)):
            assert {k: v for k, v in pulled.items() if "@" not in k} == {
                k: v for k, v in expected.items() if "@" not in k
            }
        resp = await api.get("/v2/lib/app0/manifests/gone")
        assert resp.status == 404
    # Live mode off: the new stores alone hold the same registry.
    async with serve_config(fs_toml(new), root=new) as api:
        after = await snapshot(api)
        assert {k: v for k, v in after.items() if "@" not in k} == {
            k: v for k, v in expected.items() if "@" not in k
        }
        assert after["lib/app1:v1"] == moved


async def test_a_read_copies_what_it_reads(tmp_path: Path) -> None:
    old_config, _ = await setup(tmp_path)
    new = tmp_path / "new"
    async with serve_config(live_toml(new, old_config), root=new) as api:
        resp = await api.get("/v2/lib/app0/manifests/v0", headers={"Accept": "*/*"})
        assert resp.status == 200
        body = await resp.read()
    async with stores_of(fs_toml(new)) as dst:
        digest = resp.headers["Docker-Content-Digest"]
        assert await dst.meta.get(layout.tag_current_key("lib/app0", "v0")) is not None
        assert await dst.meta.get(layout.blob_data_key(digest)) == body


async def test_a_deleted_tag_is_not_read_through_again(tmp_path: Path) -> None:
    old_config, _ = await setup(tmp_path)
    new = tmp_path / "new"
    async with serve_config(live_toml(new, old_config), root=new) as api:
        # Deleted before anything was copied: the old side still has it.
        await delete_tag(api, "lib/app0", "gone")
        assert (await api.get("/v2/lib/app0/manifests/gone")).status == 404
        resp = await api.get("/v2/lib/app0/tags/list")
        assert "gone" not in (await resp.json())["tags"]
    argv = ["migrate", "--from", str(old_config), "--to", str(write(tmp_path, new, old_config))]
    assert await asyncio.to_thread(main, argv) == 0  # the copy pass does not bring it back
    assert await asyncio.to_thread(main, [*argv, "--verify"]) == 0
    async with serve_config(fs_toml(new), root=new) as api:
        assert (await api.get("/v2/lib/app0/manifests/gone")).status == 404
        resp = await api.get("/v2/lib/app0/manifests/v0", headers={"Accept": "*/*"})
        assert resp.status == 200


def write(tmp_path: Path, new: Path, old_config: Path) -> Path:
    path = tmp_path / "new.toml"
    path.write_text(live_toml(new, old_config))
    return path


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"migration\.from"):
        config_from_toml(live_toml(tmp_path / "new", tmp_path / "missing.toml"))
    old = tmp_path / "old.toml"
    old.write_text(fs_toml(tmp_path / "old"))
    with pytest.raises(ConfigError, match=r"maintenance\.gc\.interval_secs"):
        config_from_toml(
            live_toml(tmp_path / "new", old) + "\n[maintenance.gc]\ninterval_secs = 60\n"
        )


async def test_readyz_checks_the_old_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads go through to the old stores, so /readyz needs them readable (never writable:
    writes go to the new stores only)."""
    from tests.ops.test_readiness_write import fail_writes, readyz

    old = tmp_path / "old"
    old.mkdir()
    old_config = tmp_path / "old.toml"
    old_config.write_text(fs_toml(old))
    new = tmp_path / "new"
    async with serve_config(live_toml(new, old_config), root=new) as api:
        status, body = await readyz(api, "?write=1")
        assert status == 200, body
        assert body["backends"]["migration.blob_store"]["ok"]
        assert body["backends"]["migration.metadata_store"]["ok"]
        # A read-only old store still serves the read-through, and pushes go to the new.
        with fail_writes(old, monkeypatch, errno.EROFS):
            status, body = await readyz(api, "?write=1")
            assert status == 200, body
            assert body["status"] == "degraded"
            assert body["backends"]["migration.blob_store"]["read"]
        # The old stores gone: not ready to serve at all.
        old.rename(tmp_path / "elsewhere")
        status, body = await readyz(api)
        assert status == 503, body
        assert body["read"] is False
        assert "migration.metadata_store (fs)" in body["failing"]
