"""Blob HEAD / GET (ranges) / DELETE, names and digests validated, sha512, zero bytes."""

from __future__ import annotations

import pytest

from tests.support.api import Api, digest_of, error_code

DATA = bytes(range(256)) * 40


async def test_head_and_get(api: Api) -> None:
    digest = await api.push_blob("lib/app", DATA)
    resp = await api.head(f"/v2/lib/app/blobs/{digest}")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert resp.headers["Docker-Content-Digest"] == digest
    assert await resp.read() == b""

    resp = await api.get(f"/v2/lib/app/blobs/{digest}")
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert await resp.read() == DATA


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-99", 10, 99),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-5", 10235, 10239),
        ("bytes=10200-99999", 10200, 10239),
    ],
)
async def test_range(api: Api, header: str, start: int, end: int) -> None:
    digest = await api.push_blob("lib/app", DATA)
    resp = await api.get(f"/v2/lib/app/blobs/{digest}", headers={"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert await resp.read() == DATA[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=20000-30000"])
async def test_range_not_satisfiable(api: Api, header: str) -> None:
    digest = await api.push_blob("lib/app", DATA)
    resp = await api.get(f"/v2/lib/app/blobs/{digest}", headers={"Range": header})
    assert resp.status == 416
    assert await error_code(resp) == "BLOB_UNKNOWN"
    assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"
    assert (await api.get(f"/v2/lib/app/blobs/{digest}")).status == 200


async def test_unknown_blob(api: Api) -> None:
    stored = await api.push_blob("lib/app", DATA)
    before = api.files()
    missing = digest_of(b"never pushed")
    for method in ("GET", "DELETE"):
        resp = await api.request(method, f"/v2/lib/app/blobs/{missing}")
        assert resp.status == 404
        assert await error_code(resp) == "BLOB_UNKNOWN"
    resp = await api.head(f"/v2/lib/app/blobs/{missing}")
    assert resp.status == 404
    assert api.files() == before
    assert await (await api.get(f"/v2/lib/app/blobs/{stored}")).read() == DATA


async def test_blob_of_another_repository_is_not_visible(api: Api) -> None:
    digest = await api.push_blob("one", DATA)
    resp = await api.get(f"/v2/two/blobs/{digest}")
    assert resp.status == 404
    assert await error_code(resp) == "BLOB_UNKNOWN"
    assert (await api.get(f"/v2/one/blobs/{digest}")).status == 200


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:" + "G" * 64,
        "nodigest",
        "sha256:" + "A" * 64,
    ],
)
async def test_malformed_digest(api: Api, digest: str) -> None:
    stored = await api.push_blob("lib/app", DATA)
    before = api.files()
    resp = await api.get(f"/v2/lib/app/blobs/{digest}")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    resp = await api.request("DELETE", f"/v2/lib/app/blobs/{digest}")
    assert resp.status == 400
    assert api.files() == before
    assert await (await api.get(f"/v2/lib/app/blobs/{stored}")).read() == DATA


@pytest.mark.parametrize(
    "name",
    [
        "Upper/app",
        "lib/App",
        "a/../b",
        "a/..",
        "../../etc",
        "a/%2e%2e/b",
        "a/%2E%2E",
        "_hidden",
        "a//b",
        "-a",
        "a/_manifests",
        "a/_layers",
        "a%00b",
    ],
)
async def test_invalid_name(api: Api, name: str) -> None:
    stored = await api.push_blob("lib/app", DATA)
    before = api.files()
    resp = await api.raw("GET", f"/v2/{name}/blobs/{stored}")
    assert resp.status == 400
    assert await error_code(resp) == "NAME_INVALID"
    digest = digest_of(b"x")
    resp = await api.raw("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", data=b"x")
    assert resp.status == 400
    assert await error_code(resp) == "NAME_INVALID"
    resp = await api.raw("POST", f"/v2/{name}/blobs/uploads/")
    assert resp.status == 400
    assert api.files() == before
    assert await (await api.get(f"/v2/lib/app/blobs/{stored}")).read() == DATA


async def test_delete_unlinks(api: Api) -> None:
    digest = await api.push_blob("lib/app", DATA)
    await api.push_blob("other", DATA)
    resp = await api.request("DELETE", f"/v2/lib/app/blobs/{digest}")
    assert resp.status == 202
    assert (await api.get(f"/v2/lib/app/blobs/{digest}")).status == 404
    # Still linked elsewhere.
    assert await (await api.get(f"/v2/other/blobs/{digest}")).read() == DATA


async def test_zero_byte_blob(api: Api) -> None:
    digest = await api.push_blob("lib/app", b"")
    assert digest == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    resp = await api.head(f"/v2/lib/app/blobs/{digest}")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "0"
    resp = await api.get(f"/v2/lib/app/blobs/{digest}")
    assert resp.status == 200
    assert await resp.read() == b""


async def test_sha512_blob(api: Api) -> None:
    digest = await api.push_blob("lib/app", DATA, "sha512")
    assert digest.startswith("sha512:")
    resp = await api.get(f"/v2/lib/app/blobs/{digest}")
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == digest
    assert await resp.read() == DATA
    assert (await api.request("DELETE", f"/v2/lib/app/blobs/{digest}")).status == 202


async def test_manifest_fetched_through_blobs(api: Api) -> None:
    digest, body = await api.push_image("lib/app")
    resp = await api.get(f"/v2/lib/app/blobs/{digest}")
    assert resp.status == 200
    assert await resp.read() == body
    resp = await api.get(f"/v2/lib/app/blobs/{digest}", headers={"Range": "bytes=0-9"})
    assert resp.status == 206
    assert await resp.read() == body[:10]
