"""``[global] accept_index_with_missing_children``: off (the default) an index whose child
manifests are not in the repository is MANIFEST_BLOB_UNKNOWN; on, it is stored and served,
and the children pushed later are ordinary manifests. Image manifests still need every blob."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from angos_core.cli import main
from angos_core.oci import mediatypes as mt
from tests.support.api import (
    OCI_CONFIG,
    OCI_LAYER,
    descriptor,
    digest_of,
    error_code,
)
from tests.support.storage import Storage

#: A local store and S3 (the split shapes add nothing to what is checked here).
pytestmark = pytest.mark.shapes("fs", "s3")

ON = "[global]\naccept_index_with_missing_children = true\n"
CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = b"layer bytes"


def image(layer: bytes = LAYER) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(CONFIG, OCI_CONFIG),
        "layers": [descriptor(layer, OCI_LAYER)],
    }
    return json.dumps(doc).encode()


def index(*children: dict[str, Any], media_type: str = mt.OCI_INDEX) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": media_type, "manifests": list(children)}
    ).encode()


async def test_off_by_default_an_index_with_a_missing_child_is_refused(storage: Storage) -> None:
    async with storage.open_api() as api:
        child = image()
        resp = await api.put_manifest(
            "lib/app", "multi", index(descriptor(child, mt.OCI_MANIFEST)), mt.OCI_INDEX
        )
        assert resp.status == 400
        assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"
        assert (await resp.json())["errors"][0]["detail"] == {"digest": digest_of(child)}
        assert (await api.get("/v2/lib/app/manifests/multi")).status == 404


@pytest.mark.parametrize(
    ("index_type", "child_type"),
    [(mt.OCI_INDEX, mt.OCI_MANIFEST), (mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST)],
)
async def test_on_the_index_is_served_and_children_arrive_later(
    storage: Storage, index_type: str, child_type: str
) -> None:
    async with storage.open_api(ON) as api:
        amd, arm = image(b"amd layer"), image(b"arm layer")
        body = index(
            descriptor(amd, child_type), descriptor(arm, child_type), media_type=index_type
        )
        digest = digest_of(body)
        resp = await api.put_manifest("lib/app", "multi", body, index_type)
        assert resp.status == 201, await resp.text()
        assert resp.headers["Docker-Content-Digest"] == digest
        for ref in ("multi", digest):
            got = await api.get(f"/v2/lib/app/manifests/{ref}")
            assert got.status == 200
            assert got.headers["Content-Type"] == index_type
            assert await got.read() == body
        assert (await api.get(f"/v2/lib/app/manifests/{digest_of(amd)}")).status == 404

        # A child pushed afterwards is an ordinary manifest: its blobs are still required.
        resp = await api.put_manifest("lib/app", digest_of(amd), amd)
        assert resp.status == 400
        assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"
        await api.push_blob("lib/app", CONFIG)
        await api.push_blob("lib/app", b"amd layer")
        resp = await api.put_manifest("lib/app", digest_of(amd), amd)
        assert resp.status == 201, await resp.text()
        got = await api.get(f"/v2/lib/app/manifests/{digest_of(amd)}")
        assert got.status == 200
        assert await got.read() == amd


async def test_on_an_image_manifest_still_needs_its_blobs(storage: Storage) -> None:
    async with storage.open_api(ON) as api:
        await api.push_blob("lib/app", CONFIG)
        resp = await api.put_manifest("lib/app", "v1", image())
        assert resp.status == 400
        assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"
        assert (await resp.json())["errors"][0]["detail"] == {"digest": digest_of(LAYER)}


async def test_on_a_child_that_is_not_a_manifest_must_still_exist(storage: Storage) -> None:
    async with storage.open_api(ON) as api:
        blob = b"not a manifest"
        resp = await api.put_manifest(
            "lib/app", "multi", index(descriptor(blob, OCI_LAYER)), mt.OCI_INDEX
        )
        assert resp.status == 400
        assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"


async def test_on_a_malformed_child_descriptor_is_manifest_invalid(storage: Storage) -> None:
    async with storage.open_api(ON) as api:
        child = {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:nothex", "size": 1}
        resp = await api.put_manifest("lib/app", "multi", index(child), mt.OCI_INDEX)
        assert resp.status == 400
        assert await error_code(resp) == "MANIFEST_INVALID"


async def test_gc_keeps_an_index_whose_child_is_still_missing(
    storage: Storage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with storage.open_api(ON) as api:
        body = index(descriptor(image(), mt.OCI_MANIFEST))
        assert (await api.put_manifest("lib/app", "multi", body, mt.OCI_INDEX)).status == 201
    config = tmp_path / "config.toml"
    config.write_text(storage.toml())
    code = await asyncio.to_thread(main, ["gc", "-c", str(config), "--delete-untagged"])
    assert code == 0, capsys.readouterr().err
    async with storage.open_api(ON) as api:
        got = await api.get("/v2/lib/app/manifests/multi")
        assert got.status == 200
        assert await got.read() == body
