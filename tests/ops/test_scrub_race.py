"""``angos scrub --repair`` beside pushes: a repair never undoes what a push did.

Each repair re-checks its finding under the writers' locks (or, for the unlocked layer and
referrer links, after its delete); these tests make the push land between the scan and the
repair, and during it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from angos_core import layout
from angos_core.oci import mediatypes as mt
from angos_core.registry import scrub
from angos_core.registry.scrub import Kind, Scrubber
from tests.support.api import OCI_CONFIG, OCI_LAYER, Api, descriptor, digest_of


async def push_image(api: Api, name: str, tag: str | None, layer: bytes, **extra: object) -> str:
    config = json.dumps({"os": "linux", "architecture": "amd64", "layer": repr(layer)}).encode()
    await api.push_blob(name, config)
    await api.push_blob(name, layer)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config, OCI_CONFIG),
        "layers": [descriptor(layer, OCI_LAYER)],
        **extra,
    }
    body = json.dumps(doc).encode()
    resp = await api.put_manifest(name, tag or digest_of(body), body)
    assert resp.status == 201, await resp.text()
    return digest_of(body)


def quiet(api: Api, **kw: object) -> Scrubber:
    return Scrubber(api.registry, progress=None, out=lambda _: None, **kw)  # type: ignore[arg-type]


async def test_a_push_between_scan_and_repair_is_kept(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scrub, "HALF_WRITTEN_SETTLE_SECS", 0.0)
    meta, blobs = api.registry.stores.meta, api.registry.stores.blobs
    good = await push_image(api, "r", "v1", b"good")
    lost = b"lost then pushed again"
    await push_image(api, "r", "lost", lost)
    await blobs.delete(digest_of(lost))
    gone = await push_image(api, "r", "moved", b"gone")
    await meta.delete(layout.revision_link_key("r", gone))
    await meta.put(layout.tag_index_key("r", "half", good), layout.link_content(good))
    body = await (await api.get(f"/v2/r/manifests/{good}")).read()
    subject = {"subject": descriptor(body, mt.OCI_MANIFEST)}
    sig_layer = b"signature"
    # The referrer's link is there, its revision not (yet).
    sig_doc_digest = await push_image(api, "r", None, sig_layer, **subject)
    await meta.delete(layout.revision_link_key("r", sig_doc_digest))

    scrubber = quiet(api, repair=True)
    report = await scrubber.scan()
    found = {(f.kind, f.tag or f.digest) for f in report.findings}
    assert {
        (Kind.LAYER_LINK_MISSING_BLOB, digest_of(lost)),
        (Kind.TAG_MANIFEST_MISSING, "moved"),
        (Kind.TAG_HALF_WRITTEN, "half"),
        (Kind.REFERRER_MISSING, sig_doc_digest),
    } <= found

    # Pushes land now, after the scan, before the repair.
    await api.push_blob("r", lost)
    moved = await push_image(api, "r", "moved", b"new version")
    half = await push_image(api, "r", "half", b"half completed")
    resp = await api.put_manifest(
        "r",
        sig_doc_digest,
        await api.registry.stores.meta.get(layout.blob_data_key(sig_doc_digest)) or b"",
    )
    assert resp.status == 201, await resp.text()

    for finding in report.findings:
        await scrubber.repair(finding)
    outcomes = {(f.kind, f.tag or f.digest): f.outcome for f in report.findings}
    assert outcomes[(Kind.LAYER_LINK_MISSING_BLOB, digest_of(lost))].startswith("skipped: ")
    assert (
        outcomes[(Kind.TAG_MANIFEST_MISSING, "moved")]
        == "skipped: the tag was moved since the scan"
    )
    assert (
        outcomes[(Kind.TAG_HALF_WRITTEN, "half")] == "skipped: the tag was written since the scan"
    )
    assert outcomes[(Kind.REFERRER_MISSING, sig_doc_digest)].startswith("skipped: ")

    resp = await api.get(f"/v2/r/blobs/{digest_of(lost)}")
    assert resp.status == 200 and await resp.read() == lost
    for tag, digest in (("moved", moved), ("half", half), ("v1", good)):
        resp = await api.head(f"/v2/r/manifests/{tag}")
        assert resp.status == 200, tag
        assert resp.headers["Docker-Content-Digest"] == digest
    referrers = await (await api.get(f"/v2/r/referrers/{good}")).json()
    assert [m["digest"] for m in referrers["manifests"]] == [sig_doc_digest]
    # And a scrub afterwards finds the store whole.
    assert (await quiet(api).run()).findings == []


async def test_pushes_during_repair_are_not_undone(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tags damaged, then pushed again while many repairs run: every push's tag stays."""
    monkeypatch.setattr(scrub, "HALF_WRITTEN_SETTLE_SECS", 0.0)
    meta = api.registry.stores.meta
    tags = [f"t{i}" for i in range(12)]
    for tag in tags:
        digest = await push_image(api, "race", tag, f"old {tag}".encode())
        await meta.delete(layout.revision_link_key("race", digest))
    scrubber = quiet(api, repair=True)
    report = await scrubber.scan()
    assert {f.tag for f in report.findings if f.kind is Kind.TAG_MANIFEST_MISSING} == set(tags)

    pushed: dict[str, str] = {}
    by_tag = {f.tag: f for f in report.findings}

    async def push(tag: str) -> None:
        pushed[tag] = await push_image(api, "race", tag, f"new {tag}".encode())

    async def repair(tag: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await scrubber.repair(by_tag[tag])

    # Each repair starts a little later into its tag's push than the last: some land before
    # the push's manifest, some inside it, some after (tests above pin each order).
    for i, tag in enumerate(tags):
        if i % 2 == 0:
            await asyncio.gather(push(tag), repair(tag, i * 0.01))
        else:
            await repair(tag, 0)
    for tag in tags:
        resp = await api.head(f"/v2/race/manifests/{tag}")
        if tag in pushed:
            assert resp.status == 200, tag
            assert resp.headers["Docker-Content-Digest"] == pushed[tag]
        else:
            assert resp.status == 404, tag
    assert (await quiet(api).run()).findings == []


async def test_a_tag_being_written_is_not_reported(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag seen with its index entry but no ``current`` yet (a push between the two
    writes) is looked at again after the settle time, and not reported once written."""
    monkeypatch.setattr(scrub, "HALF_WRITTEN_SETTLE_SECS", 0.5)
    good = await push_image(api, "w", "v1", b"good")
    meta = api.registry.stores.meta
    await meta.put(layout.tag_index_key("w", "next", good), layout.link_content(good))

    async def finish_the_push() -> None:
        await asyncio.sleep(0.1)
        await api.registry.links.move_tag("w", "next", good)

    report, _ = await asyncio.gather(quiet(api).scan(), finish_the_push())
    assert report.findings == []
