"""``angos prune`` against a store built with known garbage: repositories under a global and
a namespace policy, tags of known push and pull times, an index with children, referrer
chains, an immutable tag and a failing rule; exactly what is kept and what goes, the dry
run, and a push during the run. On the fs and s3 shapes (tests/support/storage.py)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from angos_core import layout
from angos_core.cli import main
from angos_core.http.app import CONFIG
from angos_core.registry.prune import Pruner
from tests.ops.test_gc import body_of, push_image, push_index, subject_of
from tests.support.api import Api
from tests.support.storage import Storage

pytestmark = pytest.mark.shapes("fs", "s3")

DAY = 86400

POLICIES = """
[global.retention_policy]
rules = ["image.tag == 'latest'", "top_pushed(2)"]

[repository."keep".retention_policy]
rules = ["image.pushed_at > now() - days(30)", "image.last_pulled_at > now() - days(7)"]

[repository."frozen"]
immutable_tags = true

[repository."err".retention_policy]
rules = ["image.tag.startsWith('x')"]
"""


NOW = time.time()


async def dated(
    api: Api, name: str, digest: str, pushed: float, pulled: float | None = None
) -> None:
    """Set the manifest's push (and pull) time, in days before the tests began (one clock
    for all, so that equal ages tie: y1, y2, y3)."""
    meta = api.registry.stores.meta
    now = NOW
    for kind, days in ((layout.PUSHED, pushed), (layout.PULLED, pulled)):
        if days is not None:
            when = datetime.fromtimestamp(now - days * DAY, UTC)
            await meta.put(layout.manifest_time_key(name, kind, digest), layout.time_content(when))


@dataclass
class Store:
    """What was pushed, by a short name, and what the policies must do with it."""

    digests: dict[str, str]
    untagged: set[str]
    deleted: set[str]


async def build(api: Api) -> Store:
    d: dict[str, str] = {}
    # a: global rules only. latest is an old index; v3 and v2 are the two newest tags.
    d["c1"] = await push_image(api, "a", None, b"child one")
    d["c2"] = await push_image(api, "a", None, b"child two")
    d["index"] = await push_index(api, "a", "latest", [d["c1"], d["c2"]])
    d["v1"] = await push_image(api, "a", "v1", b"v1 layer")
    d["v2"] = await push_image(api, "a", "v2", b"v2 layer")
    d["v3"] = await push_image(api, "a", "v3", b"v3 layer")
    d["sig3"] = await push_image(
        api, "a", None, b"sig of v3", **subject_of(await body_of(api, "a", d["v3"]))
    )
    d["sig1"] = await push_image(
        api, "a", None, b"sig of v1", **subject_of(await body_of(api, "a", d["v1"]))
    )
    d["junk"] = await push_image(api, "a", None, b"untagged junk")
    # b: a tagged (kept) referrer keeps its untagged subject.
    d["x"] = await push_image(api, "b", None, b"subject x")
    d["sig"] = await push_image(
        api, "b", "sig", b"referrer of x", **subject_of(await body_of(api, "b", d["x"]))
    )
    d["t1"] = await push_image(api, "b", "t1", b"t1 layer")
    d["t2"] = await push_image(api, "b", "t2", b"t2 layer")
    # keep/app: global rules OR the namespace's (age and pull time).
    for tag in ("n1", "n2", "n3", "n4"):
        d[tag] = await push_image(api, "keep/app", tag, tag.encode())
    d["young"] = await push_image(api, "keep/app", None, b"young untagged")
    d["aged"] = await push_image(api, "keep/app", None, b"aged untagged")
    # frozen: an immutable tag is never pruned; its repository has no policy but the global.
    d["ice1"] = await push_image(api, "frozen", "ice1", b"ice one")
    d["ice2"] = await push_image(api, "frozen", "ice2", b"ice two")
    d["ice3"] = await push_image(api, "frozen", "ice3", b"ice three")
    d["thaw"] = await push_image(api, "frozen", None, b"thawed untagged")
    # err/app: its rule fails on an untagged manifest (null tag): kept; a tag it judges
    # false goes, and its manifest, then untagged, is kept by the failing rule.
    for tag in ("y1", "y2", "y3"):
        d[tag] = await push_image(api, "err/app", tag, tag.encode())
    d["e"] = await push_image(api, "err/app", None, b"e untagged")

    # The GETs above noted pulls: written now, so the times below are the last word.
    await api.registry.times.flush()
    ages = {
        ("a", "c1"): 90, ("a", "c2"): 90, ("a", "index"): 90, ("a", "v1"): 10,
        ("a", "v2"): 5, ("a", "v3"): 1, ("a", "sig3"): 80, ("a", "sig1"): 80,
        ("a", "junk"): 60, ("b", "x"): 90, ("b", "sig"): 1, ("b", "t1"): 20,
        ("b", "t2"): 30, ("keep/app", "n1"): 2, ("keep/app", "n2"): 40,
        ("keep/app", "n3"): 50, ("keep/app", "n4"): 70, ("keep/app", "young"): 10,
        ("keep/app", "aged"): 40, ("frozen", "ice1"): 300, ("frozen", "ice2"): 200,
        ("frozen", "ice3"): 100, ("frozen", "thaw"): 100, ("err/app", "y1"): 100,
        ("err/app", "y2"): 100, ("err/app", "y3"): 100, ("err/app", "e"): 100,
    }  # fmt: skip
    for (name, short), days in ages.items():
        # n4 is old but pulled yesterday; n3 was pulled, but long ago.
        pulled = {"n4": 1.0, "n3": 20.0}.get(short)
        await dated(api, name, d[short], days, pulled)
    return Store(
        d,
        untagged={"a:v1", "b:t2", "keep/app:n3", "err/app:y3"},
        deleted={
            f"a@{d['v1']}", f"a@{d['sig1']}", f"a@{d['junk']}", f"b@{d['t2']}",
            f"keep/app@{d['n3']}", f"keep/app@{d['aged']}", f"frozen@{d['thaw']}",
        },
    )  # fmt: skip


async def prune(
    config: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    # main() runs its own event loop, so it runs in a thread here. Everything here was
    # pushed seconds ago: without --min-age-secs 0 the default hour would keep it all.
    argv = ["prune", "-c", str(config), "--min-age-secs", "0", *args]
    code = await asyncio.to_thread(main, argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def state(api: Api) -> dict[str, object]:
    """Every repository's tags (tag -> digest) and revisions."""
    links = api.registry.links
    found: dict[str, object] = {}
    for name in await api.registry.catalog.repositories():
        tags = {t: await links.tag_digest(name, t, fresh=True) for t in await links.tags(name)}
        revisions = sorted(await links.digests_under(layout.revisions_prefix(name)))
        found[name] = (tags, revisions)
    return found


def config_file(storage: Storage, tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(storage.toml(POLICIES))
    return path


async def test_prune_keeps_exactly_what_the_rules_and_the_structure_keep(
    storage: Storage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(storage, tmp_path)
    async with storage.open_api(POLICIES) as api:
        store = await build(api)
        before = await state(api)
    files_before = storage.files()

    code, out, err = await prune(config, capsys, "--dry-run", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report["untagged"]) == store.untagged
    assert set(report["deleted"]) == store.deleted
    assert f"would delete manifest a@{store.digests['junk']}" in err
    assert "reclaimed by the next `angos gc`" in err
    assert storage.files() == files_before
    async with storage.open_api(POLICIES) as api:
        assert await state(api) == before

    code, out, err = await prune(config, capsys)
    assert code == 0, err
    assert f"deleted manifest a@{store.digests['junk']}" in out
    assert "untagged a:v1" in out
    d = store.digests
    async with storage.open_api(POLICIES) as api:
        after = await state(api)
        assert after["a"] == (
            {"latest": d["index"], "v2": d["v2"], "v3": d["v3"]},
            sorted(d[k] for k in ("c1", "c2", "index", "v2", "v3", "sig3")),
        )
        assert after["b"] == (
            {"sig": d["sig"], "t1": d["t1"]},
            sorted(d[k] for k in ("x", "sig", "t1")),
        )
        assert after["keep/app"] == (
            {"n1": d["n1"], "n2": d["n2"], "n4": d["n4"]},
            sorted(d[k] for k in ("n1", "n2", "n4", "young")),
        )
        assert after["frozen"] == (
            {"ice1": d["ice1"], "ice2": d["ice2"], "ice3": d["ice3"]},
            sorted(d[k] for k in ("ice1", "ice2", "ice3")),
        )
        # y1 and y2 are the top two by push time (a tie, broken by name).
        assert after["err/app"] == (
            {"y1": d["y1"], "y2": d["y2"]},
            sorted(d[k] for k in ("y1", "y2", "y3", "e")),
        )
        # Pulls still work for what is kept, and the deleted answer 404.
        assert (await api.get(f"/v2/a/manifests/{d['c1']}")).status == 200
        assert (await api.get(f"/v2/a/manifests/{d['junk']}")).status == 404
        assert (await api.get("/v2/a/manifests/v1")).status == 404
        # The deleted manifests' time records went with them.
        meta = api.registry.stores.meta
        assert await meta.get(layout.manifest_time_key("a", layout.PUSHED, d["junk"])) is None

    # A second run finds nothing more to do.
    code, out, _ = await prune(config, capsys, "--json")
    assert code == 0
    again = json.loads(out)
    assert again["untagged"] == [] and again["deleted"] == []
    assert again["kept"]["rule_errors"] >= 1


async def test_a_push_during_the_run_is_kept(storage: Storage) -> None:
    """A re-push of a manifest the run decided to delete, and of a tag it decided to drop,
    between the judgement and the deletions: both stay. A manifest without a push time
    (an older Angos's) is dated from the run, not deleted for having none."""
    policy = '[global.retention_policy]\nrules = ["image.pushed_at > now() - days(7)"]\n'
    async with storage.open_api(policy) as api:
        old = await push_image(api, "r", "old", b"old layer")
        junk = await push_image(api, "r", None, b"junk layer")
        undated = await push_image(api, "r", None, b"undated layer")
        await api.registry.times.flush()
        for digest in (old, junk):
            await dated(api, "r", digest, 30)
        await api.registry.stores.meta.delete(layout.manifest_time_key("r", layout.PUSHED, undated))
        body_old = await body_of(api, "r", old)
        body_junk = await body_of(api, "r", junk)

        async def push_meanwhile(point: str, name: str) -> None:
            if point == "judged":
                mt = json.loads(body_old)["mediaType"]
                assert (await api.put_manifest("r", "old", body_old, mt)).status == 201
                assert (await api.put_manifest("r", junk, body_junk, mt)).status == 201

        pruner = Pruner(
            api.registry,
            api.app[CONFIG].retention,
            min_age_secs=0,
            out=lambda line: None,
            progress=None,
            checkpoint=push_meanwhile,
        )
        result = await pruner.run()
        assert result.untagged == [] and result.deleted == []
        # The tag, its manifest (tagged again), and the re-pushed untagged one.
        assert result.kept_by_writer == 3
        assert result.backfilled == 1
        assert await api.registry.links.tag_digest("r", "old", fresh=True) == old
        for digest in (old, junk, undated):
            assert await api.registry.links.has_revision("r", digest, fresh=True)
        assert await api.registry.times.read("r", layout.PUSHED, undated) is not None

        # Without a push meanwhile (their marks now older than the run), the same run
        # deletes them: the control.
        for digest in (old, junk):
            await dated(api, "r", digest, 30)
        control = Pruner(
            api.registry, api.app[CONFIG].retention, min_age_secs=0, out=lambda line: None,
            progress=None,
        )  # fmt: skip
        result = await control.run()
        assert result.untagged == ["r:old"]
        assert sorted(result.deleted) == sorted([f"r@{old}", f"r@{junk}"])


async def test_prune_without_a_policy_is_refused(
    storage: Storage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(storage.toml())
    code, _, err = await prune(path, capsys)
    assert code == 2
    assert "global.retention_policy" in err and "nothing would be pruned" in err
