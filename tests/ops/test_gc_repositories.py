"""``angos gc`` and what repositories leave behind (issue 13): the layer links of a
repository whose last manifest was deleted (the catalog no longer lists it), links to blobs
an earlier run deleted, and what ``--delete-untagged`` must keep (index children at any
depth, referrers of kept manifests, also pushed before their subject, and their referrers).

On every storage shape (tests/support/storage.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from angos_core import layout
from angos_core.oci import mediatypes as mt
from tests.ops.test_gc import Env, assert_pullable, env, gc, push_image, push_manifest
from tests.support.api import OCI_CONFIG, OCI_LAYER, Api, descriptor, digest_of

__all__ = ["env"]  # the fixture, shared with test_gc


def repository_keys(api: Api, name: str) -> set[str]:
    return {k for k in api.files() if k.startswith(layout.repository_prefix(name))}


async def test_gc_sweeps_a_repository_whose_last_manifest_was_deleted(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    async with env.api() as api:
        gone = await push_image(api, "left/gone", "v1", b"only in gone")
        await push_image(api, "kept", "v1", b"in kept")
        assert (await api.client.delete(f"/v2/left/gone/manifests/{gone}")).status == 202
        assert repository_keys(api, "left/gone"), "the deleted image's layer links stay"
        assert "left/gone" not in await api.registry.catalog.repositories()

    code, out, _ = await gc(env, capsys, "--min-age-secs", "0")
    assert code == 0, out
    layer = digest_of(b"only in gone")
    assert f"deleted layer link left/gone/{layer}" in out
    async with env.api() as api:
        # Nothing of the repository is left: no link to a blob that is gone.
        assert repository_keys(api, "left/gone") == set()
        assert layout.blob_data_key(layer) not in api.files()
        assert (await api.head(f"/v2/left/gone/blobs/{layer}")).status == 404
        await assert_pullable(api, "kept", {digest_of(b"in kept"): b"in kept"})

    # A second run finds nothing more to do.
    code, out, _ = await gc(env, capsys, "--min-age-secs", "0")
    assert code == 0, out
    assert "0 blobs, 0 manifest bodies, 0 layer links" in out


async def test_gc_drops_layer_links_whose_blob_an_earlier_run_deleted(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    async with env.api() as api:
        await push_image(api, "a", "v1", b"live layer")
        dangling = await api.push_blob("a", b"deleted by an earlier run")
        # What a run that did not walk the repository left: the blob gone, its link kept.
        await api.registry.stores.blobs.delete(dangling)
        link = f"{layout.layers_prefix('a')}{dangling.replace(':', '/')}/link"
        assert link in api.files()

    code, out, _ = await gc(env, capsys, "--min-age-secs", "0", "--dry-run")
    assert code == 0, out
    assert f"would delete layer link a/{dangling}" in out
    code, out, _ = await gc(env, capsys, "--min-age-secs", "0")
    assert code == 0, out
    assert f"deleted layer link a/{dangling}" in out
    async with env.api() as api:
        assert link not in api.files()
        await assert_pullable(api, "a", {digest_of(b"live layer"): b"live layer"})


def image_doc(label: str, layer: bytes, **extra: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "label": label}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config, OCI_CONFIG),
        "layers": [descriptor(layer, OCI_LAYER)],
        **extra,
    }
    return doc, {digest_of(config): config, digest_of(layer): layer}


async def push_doc(api: Api, name: str, ref: str | None, doc: dict[str, Any]) -> bytes:
    body = json.dumps(doc).encode()
    await push_manifest(api, name, ref or digest_of(body), doc)
    return body


def index_doc(*children: bytes, media_type: str = mt.OCI_MANIFEST) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [descriptor(c, media_type) for c in children],
    }


async def test_gc_delete_untagged_keeps_nested_children_and_referrer_chains(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "d"
    kept: dict[str, bytes] = {}
    blobs: dict[str, bytes] = {}

    async def push(label: str, ref: str | None, **extra: Any) -> bytes:
        doc, its_blobs = image_doc(label, f"layer of {label}".encode(), **extra)
        for data in its_blobs.values():
            await api.push_blob(name, data)
        return await push_doc(api, name, ref, doc)

    def subject(body: bytes) -> dict[str, Any]:
        return {"subject": descriptor(body, mt.OCI_MANIFEST)}

    async with env.api() as api:
        # An index of an index: the grandchildren are kept through the inner index.
        leaf1, leaf2 = await push("leaf 1", None), await push("leaf 2", None)
        inner = await push_doc(api, name, None, index_doc(leaf1, leaf2))
        outer = await push_doc(api, name, "multi", index_doc(inner, media_type=mt.OCI_INDEX))
        # A referrer of an index child: kept, as the child is.
        leaf_sig = await push("signature of leaf 1", None, **subject(leaf1))
        # A referrer pushed before its subject, and a referrer of that referrer.
        doc, subject_blobs = image_doc("subject", b"subject layer")
        subject_body = json.dumps(doc).encode()
        early = await push("early signature", None, **subject(subject_body))
        attestation = await push("attestation of the signature", None, **subject(early))
        for data in subject_blobs.values():
            await api.push_blob(name, data)
        await push_doc(api, name, "v1", doc)
        # What goes: an untagged image and the chain hanging from it.
        loose = await push("loose", None)
        loose_sig = await push("signature of loose", None, **subject(loose))
        loose_att = await push("attestation of loose", None, **subject(loose_sig))
        kept = {
            digest_of(b): b
            for b in (leaf1, leaf2, inner, outer, leaf_sig, subject_body, early, attestation)
        }
        for label in ("leaf 1", "leaf 2", "signature of leaf 1", "early signature"):
            blobs[digest_of(f"layer of {label}".encode())] = f"layer of {label}".encode()
        blobs[digest_of(b"subject layer")] = b"subject layer"

    code, out, _ = await gc(env, capsys, "--delete-untagged", "--min-age-secs", "0")
    assert code == 0, out
    assert "deleted 3 untagged manifests" in out, out
    async with env.api() as api:
        for digest in map(digest_of, (loose, loose_sig, loose_att)):
            assert (await api.head(f"/v2/{name}/manifests/{digest}")).status == 404
        accept = {"Accept": f"{mt.OCI_MANIFEST}, {mt.OCI_INDEX}"}
        for digest, body in kept.items():
            resp = await api.get(f"/v2/{name}/manifests/{digest}", headers=accept)
            assert resp.status == 200, digest
            assert await resp.read() == body
        await assert_pullable(api, name, blobs)
        referrers = await (await api.get(f"/v2/{name}/referrers/{digest_of(early)}")).json()
        assert [m["digest"] for m in referrers["manifests"]] == [digest_of(attestation)]
