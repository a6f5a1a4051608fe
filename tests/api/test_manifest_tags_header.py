"""``PUT /v2/<name>/manifests/<digest>?tag=...``: one ``OCI-Tag`` response header for each
accepted tag (distribution-spec, pushing manifests with tags), for sha256 and sha512."""

from __future__ import annotations

import json

import pytest

from angos_core.oci import mediatypes as mt
from tests.support.api import (
    OCI_CONFIG,
    OCI_LAYER,
    Api,
    descriptor,
    digest_of,
    error_code,
)

CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = b"layer bytes"


@pytest.fixture
async def api(api: Api) -> Api:
    """The shared ``api`` (every storage shape), with the image's config and layer pushed."""
    await api.push_blob("lib/app", CONFIG)
    await api.push_blob("lib/app", LAYER)
    return api


def body() -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(CONFIG, OCI_CONFIG),
        "layers": [descriptor(LAYER, OCI_LAYER)],
    }
    return json.dumps(doc).encode()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
async def test_one_oci_tag_header_per_accepted_tag(api: Api, algorithm: str) -> None:
    data = body()
    digest = digest_of(data, algorithm)
    params = [("tag", "a"), ("tag", "b"), ("tag", "a"), ("tag", "v1.0")]
    resp = await api.put_manifest("lib/app", digest, data, params=params)
    assert resp.status == 201, await resp.text()
    assert resp.headers.getall("OCI-Tag") == ["a", "b", "v1.0"]
    # The digest answered is the one pushed, never the registry's own sha256 of the body.
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Location"] == f"/v2/lib/app/manifests/{digest}"
    for tag in ("a", "b", "v1.0"):
        got = await api.get(f"/v2/lib/app/manifests/{tag}")
        assert got.status == 200
        assert got.headers["Docker-Content-Digest"] == digest
        assert await got.read() == data


async def test_no_oci_tag_header_without_tag_parameters(api: Api) -> None:
    data = body()
    resp = await api.put_manifest("lib/app", digest_of(data), data)
    assert resp.status == 201
    assert "OCI-Tag" not in resp.headers
    resp = await api.put_manifest("lib/app", "latest", data)
    assert resp.status == 201
    assert "OCI-Tag" not in resp.headers


async def test_an_invalid_tag_parameter_sets_no_tag(api: Api) -> None:
    data = body()
    params = [("tag", "good"), ("tag", "-bad")]
    resp = await api.put_manifest("lib/app", digest_of(data), data, params=params)
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_INVALID"
    assert "OCI-Tag" not in resp.headers
    assert (await api.get("/v2/lib/app/manifests/good")).status == 404
