"""Online garbage collection: the races of a push beside a running collection, each held at
the collector's checkpoints (``GarbageCollector(checkpoint=...)``) so the interleaving is the
one named, not a matter of luck.

Every race has its control: the same steps with the writer's side of the protocol switched
off (``unprotected``) lose the acknowledged object, so each test shows the protection is
what keeps it. The collector runs with ``min_age_secs=0`` unless the race is about the
minimum age: the protocol, not the age guard, keeps what is referenced.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

from angos_core.oci import mediatypes as mt
from angos_core.policy.retention import RetentionRules
from angos_core.registry.gc import COLLECTOR_LOCK_WAIT_SECS, GarbageCollector, GcError, GcResult
from angos_core.registry.prune import PruneError, Pruner
from angos_core.registry.references import References, mark_key
from tests.support.api import OCI_CONFIG, OCI_LAYER, Api, descriptor, digest_of

pytestmark = pytest.mark.shapes("fs", "s3")

CONFIG = b'{"architecture":"amd64","os":"linux","n":"online-gc"}'


def image_manifest(config: bytes, *layers: bytes, **extra: Any) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config, OCI_CONFIG),
        "layers": [descriptor(layer, OCI_LAYER) for layer in layers],
        **extra,
    }
    return json.dumps(doc).encode()


async def put(api: Api, name: str, ref: str, body: bytes, media_type: str = mt.OCI_MANIFEST) -> int:
    resp = await api.put_manifest(name, ref, body, media_type)
    return resp.status


async def orphan(api: Api, name: str, layer: bytes) -> str:
    """A blob linked in ``name`` that no manifest references any more: pushed with an image
    whose manifest was then deleted. Returns the layer's digest."""
    await api.push_blob(name, CONFIG)
    await api.push_blob(name, layer)
    body = image_manifest(CONFIG, layer)
    assert await put(api, name, digest_of(body), body) == 201
    assert (await api.client.delete(f"/v2/{name}/manifests/{digest_of(body)}")).status == 202
    return digest_of(layer)


async def blob_status(api: Api, name: str, digest: str) -> int:
    async with await api.get(f"/v2/{name}/blobs/{digest}") as resp:
        await resp.read()
        return resp.status


class Hold:
    """A checkpoint that stops the collector at ``point`` (for ``digest``, if given) until
    released, and says when it got there."""

    def __init__(self, point: str, digest: str = "") -> None:
        self.point, self.digest = point, digest
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, point: str, digest: str) -> None:
        if point == self.point and (not self.digest or digest == self.digest):
            self.reached.set()
            await self.release.wait()


@asynccontextmanager
async def collecting(
    api: Api, hold: Hold, *, delete_untagged: bool = False, min_age_secs: float = 0
) -> AsyncIterator[asyncio.Task[GcResult]]:
    """A collection held at ``hold``; the block runs once it is there, and the collection
    finishes after the block (its result is the task's)."""
    gc = GarbageCollector(
        api.registry,
        delete_untagged=delete_untagged,
        min_age_secs=min_age_secs,
        out=lambda line: None,
        checkpoint=hold,
    )
    task = asyncio.create_task(gc.run())
    await asyncio.wait_for(hold.reached.wait(), 60)
    try:
        yield task
    finally:
        hold.release.set()
        await asyncio.wait_for(task, 60)


async def collect(api: Api, **kw: Any) -> GcResult:
    return await GarbageCollector(api.registry, out=lambda line: None, **kw).run()


@pytest.fixture
def unprotected(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Switch the writers' side off: no marks, no waiting on tombstones."""

    def switch_off() -> None:
        async def nothing(self: References, *args: Any, **kw: Any) -> None:
            return None

        @asynccontextmanager
        async def no_marks(self: References, digests: Any) -> AsyncIterator[None]:
            yield

        monkeypatch.setattr(References, "referencing", no_marks)
        monkeypatch.setattr(References, "mark_recent", nothing)
        monkeypatch.setattr(References, "head", nothing)

    return switch_off


# ---------------------------------------------------------------------- race 1: HEAD, skip


async def race_head_then_manifest(api: Api) -> tuple[int, int]:
    """A client HEADs a blob nothing references (it exists), skips its upload, and PUTs a
    manifest using it after the sweep has been past."""
    layer = await orphan(api, "r/one", b"race-1 layer")
    async with collecting(api, Hold("marked")):
        async with await api.head(f"/v2/r/one/blobs/{layer}") as resp:
            assert resp.status == 200
        async with await api.head(f"/v2/r/one/blobs/{digest_of(CONFIG)}") as resp:
            assert resp.status == 200
    body = image_manifest(CONFIG, b"race-1 layer")
    status = await put(api, "r/one", "v1", body)
    return status, await blob_status(api, "r/one", layer)


async def test_race1_a_found_blob_outlives_the_sweep(api: Api) -> None:
    assert await race_head_then_manifest(api) == (201, 200)


async def test_race1_control_unprotected_the_push_fails(
    api: Api, unprotected: Callable[[], None]
) -> None:
    unprotected()
    status, _ = await race_head_then_manifest(api)
    assert status == 400  # MANIFEST_BLOB_UNKNOWN: the HEAD's answer was a lie by then


async def test_race1_head_during_the_deletion_waits_and_says_404(api: Api) -> None:
    """A HEAD that lands while the collector holds the blob's tombstone, after it read the
    marks: it must not answer 200 for a blob about to go."""
    layer = await orphan(api, "r/one", b"race-1b layer")
    hold = Hold("doomed", layer)
    async with collecting(api, hold):
        head = asyncio.create_task(api.head(f"/v2/r/one/blobs/{layer}"))
        # The HEAD has made its mark and waits on the tombstone.
        meta = api.registry.stores.meta
        for _ in range(500):
            if await meta.get(mark_key(layer, "recent")) is not None:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert not head.done()
    async with await head as resp:
        assert resp.status == 404  # the client uploads it again


async def test_race1_head_during_the_deletion_control_says_200(
    api: Api, unprotected: Callable[[], None]
) -> None:
    unprotected()
    layer = await orphan(api, "r/one", b"race-1b layer")
    async with (
        collecting(api, Hold("doomed", layer)),
        await api.head(f"/v2/r/one/blobs/{layer}") as resp,
    ):
        assert resp.status == 200  # and the blob goes right after
    assert await blob_status(api, "r/one", layer) == 404


# ---------------------------------------------------------------------- race 2: commit, link


async def race_commit_before_link(api: Api, monkeypatch: pytest.MonkeyPatch) -> int:
    """A blob upload's bytes are committed onto an equal blob nothing references, which is
    old (fs keeps the existing file and its time at such a commit), and the collection runs
    before the link is written: the upload is acknowledged, so the blob must stay."""
    layer = b"race-2 layer"
    digest = await orphan(api, "r/two", layer)
    blobs: Any = api.registry.stores.blobs
    real_modified_at = blobs.modified_at

    async def old(d: str) -> datetime | None:
        when: datetime | None = await real_modified_at(d)
        return when - timedelta(hours=2) if when is not None and d == digest else when

    monkeypatch.setattr(blobs, "modified_at", old)
    committed = asyncio.Event()
    go_on = asyncio.Event()
    real_commit = blobs.upload_commit

    async def commit_then_wait(upload: Any, d: str) -> None:
        await real_commit(upload, d)
        if d == digest:
            committed.set()
            await go_on.wait()

    monkeypatch.setattr(blobs, "upload_commit", commit_then_wait)
    push = asyncio.create_task(api.push_blob("r/two", layer))
    await asyncio.wait_for(committed.wait(), 30)
    # The default minimum age: the blob's data is older than it.
    # The collection runs to its end while the upload is held between commit and link.
    await collect(api)
    go_on.set()
    await push
    return await blob_status(api, "r/two", digest)


async def test_race2_a_committed_blob_not_yet_linked_survives(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await race_commit_before_link(api, monkeypatch) == 200


async def test_race2_control_unprotected_the_blob_is_lost(
    api: Api, monkeypatch: pytest.MonkeyPatch, unprotected: Callable[[], None]
) -> None:
    unprotected()
    assert await race_commit_before_link(api, monkeypatch) == 404


# ---------------------------------------------------------------------- race 3: mount


async def race_mount(api: Api) -> tuple[int, int]:
    """A cross-repository mount of a blob the mark left unmarked, and the manifest using it,
    both while the collection waits to sweep."""
    layer = await orphan(api, "r/src", b"race-3 layer")
    async with collecting(api, Hold("marked")):
        for digest in (layer, digest_of(CONFIG)):
            resp = await api.client.post(
                f"/v2/r/dst/blobs/uploads/?mount={digest}&from=r/src", data=b""
            )
            assert resp.status == 201, await resp.text()
        assert await put(api, "r/dst", "v1", image_manifest(CONFIG, b"race-3 layer")) == 201
    return await blob_status(api, "r/dst", layer), await blob_status(api, "r/src", layer)


async def test_race3_a_mounted_blob_survives(api: Api) -> None:
    assert await race_mount(api) == (200, 200)


async def test_race3_control_unprotected_the_mounted_blob_is_lost(
    api: Api, unprotected: Callable[[], None]
) -> None:
    unprotected()
    dst, _ = await race_mount(api)
    assert dst == 404  # an acknowledged manifest whose layer is gone


# ---------------------------------------------------------------------- race 4: children first


async def push_children(api: Api, name: str) -> list[bytes]:
    bodies = []
    for arch in ("amd64", "arm64"):
        config = json.dumps({"architecture": arch, "os": "linux"}).encode()
        layer = f"race-4 {arch}".encode()
        await api.push_blob(name, config)
        await api.push_blob(name, layer)
        body = image_manifest(config, layer)
        assert await put(api, name, digest_of(body), body) == 201
        bodies.append(body)
    return bodies


def index_of(children: list[bytes], **extra: Any) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [descriptor(c, mt.OCI_MANIFEST) for c in children],
        **extra,
    }
    return json.dumps(doc).encode()


async def test_race4_children_pushed_before_their_index_survive_delete_untagged(
    api: Api,
) -> None:
    children = await push_children(api, "r/four")
    result = await collect(api, delete_untagged=True, min_age_secs=3600)
    assert result.manifests_deleted == 0 and result.manifests_kept_marked == 2
    assert await put(api, "r/four", "v1", index_of(children), mt.OCI_INDEX) == 201
    for child in children:
        async with await api.get(f"/v2/r/four/manifests/{digest_of(child)}") as resp:
            assert resp.status == 200


async def test_race4_children_older_than_the_minimum_age_are_untagged_garbage(
    api: Api,
) -> None:
    """The window is the minimum age: past it, untagged children are what
    ``--delete-untagged`` deletes (the index, pushed after, is refused cleanly)."""
    children = await push_children(api, "r/four")
    result = await collect(api, delete_untagged=True, min_age_secs=0)
    assert result.manifests_deleted == 2
    assert await put(api, "r/four", "v1", index_of(children), mt.OCI_INDEX) == 400


async def test_race4_a_child_referenced_during_the_run_is_kept(api: Api) -> None:
    """The index arrives while the collection runs (after its untagged pass listed the
    children as untagged): the children it references stay."""
    children = await push_children(api, "r/four")
    hold = Hold("untagged", "r/four")
    async with collecting(api, hold, delete_untagged=True, min_age_secs=0):
        assert await put(api, "r/four", "v1", index_of(children), mt.OCI_INDEX) == 201
    for child in children:
        async with await api.get(f"/v2/r/four/manifests/{digest_of(child)}") as resp:
            assert resp.status == 200


# ---------------------------------------------------------------------- race 5: referrer first


async def test_race5_a_referrer_pushed_before_its_subject_survives(api: Api) -> None:
    subject_layer = b"race-5 subject layer"
    subject = image_manifest(CONFIG, subject_layer)
    signature_layer = b"race-5 signature"
    await api.push_blob("r/five", CONFIG)
    await api.push_blob("r/five", signature_layer)
    referrer = image_manifest(
        CONFIG,
        signature_layer,
        artifactType="application/vnd.example.signature",
        subject=descriptor(subject, mt.OCI_MANIFEST),
    )
    assert await put(api, "r/five", digest_of(referrer), referrer) == 201
    result = await collect(api, delete_untagged=True, min_age_secs=3600)
    assert result.manifests_deleted == 0
    await api.push_blob("r/five", subject_layer)
    assert await put(api, "r/five", "v1", subject) == 201
    async with await api.get(f"/v2/r/five/referrers/{digest_of(subject)}") as resp:
        listed = [m["digest"] for m in (await resp.json())["manifests"]]
    assert listed == [digest_of(referrer)]
    assert await blob_status(api, "r/five", digest_of(signature_layer)) == 200


# ---------------------------------------------------------------------- the collector itself


async def test_garbage_is_reclaimed_in_one_run(api: Api) -> None:
    """The marks a push leaves do not make garbage wait for a second run: a blob pushed,
    then orphaned, goes in the next run."""
    layer = await orphan(api, "r/gone", b"garbage layer")
    result = await collect(api, min_age_secs=0)
    assert result.blobs_deleted >= 1
    assert await blob_status(api, "r/gone", layer) == 404


async def test_two_collections_at_once_are_refused(api: Api) -> None:
    await orphan(api, "r/two-gcs", b"two collections")
    async with collecting(api, Hold("marked")):
        started = time.monotonic()
        with pytest.raises(GcError, match="another garbage collection is running"):
            await collect(api)
        # Told at once, not after the lock provider's minute of retries.
        assert time.monotonic() - started < COLLECTOR_LOCK_WAIT_SECS + 2
        pruner = Pruner(api.registry, RetentionRules(), out=lambda line: None, progress=None)
        with pytest.raises(PruneError, match="a garbage collection or another prune holds"):
            await pruner.run()


async def test_a_push_during_collections_in_a_loop_loses_nothing(api: Api) -> None:
    """Bounded soak in process: 6 writers push images sharing a base layer (HEAD, skip,
    upload, mount) while collections run back to back; every acknowledged image pulls."""
    base = b"shared base layer"
    await api.push_blob("r/base", base)
    await api.push_blob("r/base", CONFIG)
    stop = asyncio.Event()
    acknowledged: list[tuple[str, bytes]] = []
    errors: list[str] = []

    async def writer(w: int) -> None:
        i = 0
        while not stop.is_set() and i < 12:
            i += 1
            name = f"soak/w{w}"
            own = f"writer {w} layer {i}".encode()
            for blob in (base, CONFIG):
                async with await api.head(f"/v2/{name}/blobs/{digest_of(blob)}") as resp:
                    found = resp.status == 200
                if not found:
                    resp = await api.client.post(
                        f"/v2/{name}/blobs/uploads/?mount={digest_of(blob)}&from=r/base", data=b""
                    )
                    if resp.status != 201:
                        await api.push_blob(name, blob)
            await api.push_blob(name, own)
            body = image_manifest(CONFIG, base, own)
            status = await put(api, name, f"t{i}", body)
            if status >= 500:
                errors.append(f"{name}:t{i} {status}")
            elif status != 201:
                errors.append(f"{name}:t{i} refused with {status}")
            # Every third image is untagged again: garbage for the collector.
            elif i % 3 == 0:
                resp = await api.client.delete(f"/v2/{name}/manifests/t{i}")
                assert resp.status == 202
            else:
                acknowledged.append((name, body))

    async def collector() -> int:
        runs = 0
        while not stop.is_set():
            await collect(api, min_age_secs=0, delete_untagged=True)
            runs += 1
        return runs

    loop = asyncio.create_task(collector())
    await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(6))), 240)
    stop.set()
    runs = await loop
    assert runs >= 1
    assert errors == []
    for name, body in acknowledged:
        doc = json.loads(body)
        for layer in [doc["config"], *doc["layers"]]:
            assert await blob_status(api, name, layer["digest"]) == 200, (name, layer)
