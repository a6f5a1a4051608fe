"""Manifests: push by tag / digest (OCI + Docker, image + index), byte-for-byte fetch,
Accept negotiation, reference checks, bad input, deletes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from angos_core.oci import mediatypes as mt
from tests.support.api import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    OCI_CONFIG,
    OCI_LAYER,
    Api,
    descriptor,
    digest_of,
    error_code,
)
from tests.support.storage import Storage

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = b"\x1f\x8b layer bytes"


def image(
    config: bytes = CONFIG, layers: tuple[bytes, ...] = (LAYER,), **extra: Any
) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config, OCI_CONFIG),
        "layers": [descriptor(layer, OCI_LAYER) for layer in layers],
        **extra,
    }


async def push_blobs(api: Api, name: str) -> None:
    await api.push_blob(name, CONFIG)
    await api.push_blob(name, LAYER)


async def test_put_by_tag_and_get_byte_for_byte(api: Api) -> None:
    await push_blobs(api, "lib/app")
    # Odd whitespace, key order and unknown fields must survive untouched.
    body = (
        b'{\n  "unknownField" : [1,2,3],\n\t"schemaVersion":2,"mediaType":"'
        + mt.OCI_MANIFEST.encode()
        + b'",\n"config":'
        + json.dumps({**descriptor(CONFIG, OCI_CONFIG), "data": "e30="}).encode()
        + b',"layers":['
        + json.dumps(descriptor(LAYER, OCI_LAYER)).encode()
        + b"]   }\n\n"
    )
    digest = digest_of(body)
    resp = await api.put_manifest("lib/app", "v1.0", body)
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Location"] == f"/v2/lib/app/manifests/{digest}"
    assert "OCI-Subject" not in resp.headers

    for ref in ("v1.0", digest):
        resp = await api.get(f"/v2/lib/app/manifests/{ref}")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == mt.OCI_MANIFEST
        assert resp.headers["Docker-Content-Digest"] == digest
        assert await resp.read() == body
        resp = await api.head(f"/v2/lib/app/manifests/{ref}")
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(body))
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["Content-Type"] == mt.OCI_MANIFEST


async def test_put_by_digest_with_tags(api: Api) -> None:
    await push_blobs(api, "lib/app")
    body = json.dumps(image()).encode()
    digest = digest_of(body)
    resp = await api.put_manifest("lib/app", digest, body, params=[("tag", "a"), ("tag", "b")])
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == digest
    for tag in ("a", "b"):
        resp = await api.get(f"/v2/lib/app/manifests/{tag}")
        assert await resp.read() == body
    resp = await api.get("/v2/lib/app/tags/list")
    assert (await resp.json())["tags"] == ["a", "b"]


async def test_put_by_digest_without_tag_is_untagged(api: Api) -> None:
    await push_blobs(api, "lib/app")
    body = json.dumps(image()).encode()
    resp = await api.put_manifest("lib/app", digest_of(body), body)
    assert resp.status == 201
    assert (await (await api.get("/v2/lib/app/tags/list")).json())["tags"] == []


async def test_sha512_manifest_reference(api: Api) -> None:
    await push_blobs(api, "lib/app")
    body = json.dumps(image()).encode()
    digest = digest_of(body, "sha512")
    resp = await api.put_manifest("lib/app", digest, body)
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == digest
    resp = await api.get(f"/v2/lib/app/manifests/{digest}")
    assert resp.status == 200
    assert await resp.read() == body


async def test_digest_reference_mismatch(api: Api) -> None:
    await push_blobs(api, "lib/app")
    body = json.dumps(image()).encode()
    wrong = digest_of(b"other")
    resp = await api.put_manifest("lib/app", wrong, body)
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    assert (await api.get(f"/v2/lib/app/manifests/{digest_of(body)}")).status == 404


async def test_retag_moves_tag(api: Api) -> None:
    first, _ = await api.push_image("lib/app", "latest", layer=b"one")
    second, body = await api.push_image("lib/app", "latest", layer=b"two")
    resp = await api.get("/v2/lib/app/manifests/latest")
    assert resp.headers["Docker-Content-Digest"] == second
    assert await resp.read() == body
    # The old revision is still fetchable by digest.
    assert (await api.get(f"/v2/lib/app/manifests/{first}")).status == 200


async def test_docker_schema2_and_manifest_list(api: Api) -> None:
    await api.push_blob("lib/app", CONFIG)
    await api.push_blob("lib/app", LAYER)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": descriptor(CONFIG, DOCKER_CONFIG),
        "layers": [descriptor(LAYER, DOCKER_LAYER)],
    }
    body = json.dumps(manifest, indent=3).encode()
    resp = await api.put_manifest("lib/app", "amd64", body, mt.DOCKER_MANIFEST)
    assert resp.status == 201
    child = digest_of(body)
    manifest_list = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                **descriptor(body, mt.DOCKER_MANIFEST),
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    list_body = json.dumps(manifest_list).encode()
    resp = await api.put_manifest("lib/app", "latest", list_body, mt.DOCKER_MANIFEST_LIST)
    assert resp.status == 201
    resp = await api.get(
        "/v2/lib/app/manifests/latest", headers={"Accept": mt.DOCKER_MANIFEST_LIST}
    )
    assert resp.headers["Content-Type"] == mt.DOCKER_MANIFEST_LIST
    assert await resp.read() == list_body
    resp = await api.get(f"/v2/lib/app/manifests/{child}", headers={"Accept": mt.DOCKER_MANIFEST})
    assert resp.headers["Content-Type"] == mt.DOCKER_MANIFEST
    assert await resp.read() == body


async def test_oci_index(api: Api) -> None:
    _child, child_body = await api.push_image("lib/app", None)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            descriptor(
                child_body, mt.OCI_MANIFEST, platform={"architecture": "arm64", "os": "linux"}
            )
        ],
        "annotations": {"org.example": "yes"},
    }
    body = json.dumps(index).encode()
    resp = await api.put_manifest("lib/app", "multi", body, mt.OCI_INDEX)
    assert resp.status == 201
    resp = await api.get("/v2/lib/app/manifests/multi")
    assert resp.headers["Content-Type"] == mt.OCI_INDEX
    assert await resp.read() == body


async def test_index_with_missing_child(api: Api) -> None:
    missing = json.dumps(image()).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [descriptor(missing, mt.OCI_MANIFEST)],
    }
    resp = await api.put_manifest("lib/app", "multi", index, mt.OCI_INDEX)
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"
    assert (await api.get("/v2/lib/app/manifests/multi")).status == 404


async def test_manifest_referencing_missing_blob(api: Api) -> None:
    _kept, kept_body = await api.push_image("lib/app", "kept")
    await api.push_blob("lib/app", CONFIG)  # but not the layer
    before = api.files()
    resp = await api.put_manifest("lib/app", "broken", image(layers=(b"never pushed",)))
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"
    assert (await api.get("/v2/lib/app/manifests/broken")).status == 404
    assert api.files() == before
    assert await (await api.get("/v2/lib/app/manifests/kept")).read() == kept_body


async def test_blob_linked_only_in_another_repo_is_missing(api: Api) -> None:
    await push_blobs(api, "other")
    resp = await api.put_manifest("lib/app", "latest", image())
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"


async def test_foreign_layers_need_no_blob(api: Api) -> None:
    await api.push_blob("win", CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": descriptor(CONFIG, DOCKER_CONFIG),
        "layers": [
            descriptor(
                b"foreign",
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                urls=["https://example.invalid/layer"],
            ),
            descriptor(b"nondist", "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
        ],
    }
    resp = await api.put_manifest("win", "ltsc", manifest, mt.DOCKER_MANIFEST)
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", mt.OCI_MANIFEST),
        (b"[]", mt.OCI_MANIFEST),
        (b"", mt.OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}).encode(), mt.OCI_MANIFEST),
        (json.dumps({**image(), "schemaVersion": 1}).encode(), mt.OCI_MANIFEST),
        (json.dumps({**image(), "layers": "nope"}).encode(), mt.OCI_MANIFEST),
        (
            json.dumps(
                {**image(), "config": {"mediaType": OCI_CONFIG, "digest": "sha256:zz", "size": 1}}
            ).encode(),
            mt.OCI_MANIFEST,
        ),
        (
            json.dumps(
                {**image(), "config": {**descriptor(CONFIG, OCI_CONFIG), "size": -1}}
            ).encode(),
            mt.OCI_MANIFEST,
        ),
        (json.dumps(image()).encode(), mt.DOCKER_MANIFEST),  # Content-Type vs mediaType
        (
            json.dumps({**image(), "mediaType": "application/x-unknown"}).encode(),
            "application/x-unknown",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": {}}).encode(),
            mt.OCI_INDEX,
        ),
    ],
)
async def test_invalid_manifest(api: Api, body: bytes, content_type: str) -> None:
    _kept, kept_body = await api.push_image("lib/app", "kept")
    before = api.files()
    resp = await api.put_manifest("lib/app", "kept", body, content_type)
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_INVALID"
    assert api.files() == before
    resp = await api.get("/v2/lib/app/manifests/kept")
    assert await resp.read() == kept_body


async def test_manifest_without_media_type_field(api: Api) -> None:
    await push_blobs(api, "lib/app")
    manifest = image()
    del manifest["mediaType"]
    resp = await api.put_manifest("lib/app", "latest", manifest, mt.OCI_MANIFEST)
    assert resp.status == 201
    resp = await api.get("/v2/lib/app/manifests/latest")
    assert resp.headers["Content-Type"] == mt.OCI_MANIFEST


@pytest.mark.parametrize("tag", ["-bad", "a" * 129, "has+plus", ".dot"])
async def test_invalid_tag(api: Api, tag: str) -> None:
    await push_blobs(api, "lib/app")
    resp = await api.put_manifest("lib/app", tag, image())
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_INVALID"
    resp = await api.put_manifest(
        "lib/app", digest_of(json.dumps(image()).encode()), image(), params=[("tag", tag)]
    )
    assert resp.status == 400


async def test_manifest_too_large(storage: Storage) -> None:
    async with storage.open_api('[global]\nmax_manifest_size = "1KiB"\n') as api:
        await push_blobs(api, "lib/app")
        manifest = image(annotations={"pad": "x" * 2000})
        resp = await api.put_manifest("lib/app", "big", manifest)
        assert resp.status == 413
        assert await error_code(resp) == "SIZE_INVALID"
        assert (await api.get("/v2/lib/app/manifests/big")).status == 404


async def test_unknown_manifest(api: Api) -> None:
    await api.push_image("lib/app", "latest")
    for ref in ("nope", digest_of(b"nope")):
        resp = await api.get(f"/v2/lib/app/manifests/{ref}")
        assert resp.status == 404
        assert await error_code(resp) == "MANIFEST_UNKNOWN"
        assert (await api.head(f"/v2/lib/app/manifests/{ref}")).status == 404
    resp = await api.get("/v2/lib/app/manifests/sha256:bad")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    resp = await api.get("/v2/other/manifests/latest")
    assert resp.status == 404


async def test_accept_negotiation(api: Api) -> None:
    await api.push_image("lib/app", "latest")
    resp = await api.get("/v2/lib/app/manifests/latest", headers={"Accept": mt.DOCKER_MANIFEST})
    assert resp.status == 404
    assert await error_code(resp) == "MANIFEST_UNKNOWN"
    for accept in (
        f"{mt.DOCKER_MANIFEST}, {mt.OCI_MANIFEST};q=0.9",
        "*/*",
        "application/json",
        f"{mt.DOCKER_MANIFEST}, */*",
    ):
        resp = await api.get("/v2/lib/app/manifests/latest", headers={"Accept": accept})
        assert resp.status == 200, accept
        assert resp.headers["Content-Type"] == mt.OCI_MANIFEST
    resp = await api.get(
        "/v2/lib/app/manifests/latest",
        headers=[("Accept", mt.DOCKER_MANIFEST), ("Accept", mt.OCI_MANIFEST)],
    )
    assert resp.status == 200


async def test_delete_by_digest_removes_tags(api: Api) -> None:
    digest, _ = await api.push_image("lib/app", "latest")
    resp = await api.put_manifest(
        "lib/app", "other", (await (await api.get("/v2/lib/app/manifests/latest")).read())
    )
    assert resp.status == 201
    _kept, kept_body = await api.push_image("lib/app", "kept", layer=b"kept layer")
    resp = await api.request("DELETE", f"/v2/lib/app/manifests/{digest}")
    assert resp.status == 202
    for ref in ("latest", "other", digest):
        resp = await api.get(f"/v2/lib/app/manifests/{ref}")
        assert resp.status == 404
        assert await error_code(resp) == "MANIFEST_UNKNOWN"
    assert (await (await api.get("/v2/lib/app/tags/list")).json())["tags"] == ["kept"]
    assert await (await api.get("/v2/lib/app/manifests/kept")).read() == kept_body
    resp = await api.request("DELETE", f"/v2/lib/app/manifests/{digest}")
    assert resp.status == 404
    assert await error_code(resp) == "MANIFEST_UNKNOWN"


async def test_delete_by_tag_keeps_manifest(api: Api) -> None:
    digest, body = await api.push_image("lib/app", "latest")
    resp = await api.request("DELETE", "/v2/lib/app/manifests/latest")
    assert resp.status == 202
    assert (await api.get("/v2/lib/app/manifests/latest")).status == 404
    assert await (await api.get(f"/v2/lib/app/manifests/{digest}")).read() == body
    assert (await (await api.get("/v2/lib/app/tags/list")).json())["tags"] == []
    resp = await api.request("DELETE", "/v2/lib/app/manifests/latest")
    assert resp.status == 404
    assert await error_code(resp) == "MANIFEST_UNKNOWN"


async def test_manifest_names_validated(api: Api) -> None:
    await push_blobs(api, "lib/app")
    before = api.files()
    for name in ("Lib/app", "lib/../app", "lib/%2e%2e/x"):
        resp = await api.raw(
            "PUT",
            f"/v2/{name}/manifests/latest",
            data=json.dumps(image()),
            headers={"Content-Type": mt.OCI_MANIFEST},
        )
        assert resp.status == 400
        assert await error_code(resp) == "NAME_INVALID"
    assert api.files() == before


# The S3 layout is the same keys under key_prefix: tests/integration/test_s3_migration.py.
@pytest.mark.shapes("fs")
async def test_stored_under_distribution_layout(api: Api) -> None:
    digest, body = await api.push_image("lib/app", "latest")
    hexpart = digest.split(":")[1]
    root = api.root
    assert (root / f"v2/blobs/sha256/{hexpart[:2]}/{hexpart}/data").read_bytes() == body
    repo = root / "v2/repositories/lib/app/_manifests"
    assert (repo / f"revisions/sha256/{hexpart}/link").read_bytes() == digest.encode()
    assert (repo / "tags/latest/current/link").read_bytes() == digest.encode()
    assert (repo / f"tags/latest/index/sha256/{hexpart}/link").read_bytes() == digest.encode()
