"""Small hostile inputs get the spec's 4xx answers, never a 500 or a stored oddity.

Issue 10, findings 2 (a trailing newline passed every ``$``-anchored pattern), 5 (deep JSON
and numbers too long for ``int()`` gave 500s) and 12 (a multi-range request on a local file
got aiohttp's bare 416). Each entry point runs on fs and on S3.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import make_mocked_request

from angos_core.errors import DigestInvalid, NameInvalid, TagInvalid
from angos_core.http.observe import request_id
from angos_core.oci import mediatypes as mt
from angos_core.oci.digest import is_digest, parse_digest
from angos_core.oci.names import is_tag, validate_name, validate_tag
from tests.support.api import (
    OCI_CONFIG,
    OCI_LAYER,
    Api,
    descriptor,
    digest_of,
    error_code,
)

DATA = bytes(range(256)) * 40
HUGE = "9" * 5000  # int() refuses more than 4,300 digits
# Two numbers beyond int()'s limit that still fit aiohttp's 8,190-byte header line.
HUGE_PAIR = "9" * 4301 + "-" + "9" * 3800
ZEROS = "0" * 5000


#: Every entry point on a local store and on S3 (the split shapes add nothing here).
pytestmark = pytest.mark.shapes("fs", "s3")


def _no_newline_stored(api: Api) -> None:
    assert not [f for f in api.files() if "\n" in f], api.files()


# ---------------------------------------------------------------- finding 2: trailing "\n"


async def test_blob_upload_digest_with_trailing_newline_is_refused(api: Api) -> None:
    digest = digest_of(DATA)
    resp = await api.raw("POST", f"/v2/lib/app/blobs/uploads/?digest={digest}%0A", data=DATA)
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    _no_newline_stored(api)


async def test_upload_finish_digest_with_trailing_newline_is_refused(api: Api) -> None:
    resp = await api.request("POST", "/v2/lib/app/blobs/uploads/")
    assert resp.status == 202
    location = resp.headers["Location"]
    resp = await api.raw("PUT", f"{location}?digest={digest_of(DATA)}%0A", data=DATA)
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    _no_newline_stored(api)


async def test_blob_path_digest_with_trailing_newline_is_refused(api: Api) -> None:
    digest = await api.push_blob("lib/app", DATA)
    resp = await api.raw("GET", f"/v2/lib/app/blobs/{digest}%0A")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"


async def test_mount_with_trailing_newline_is_refused(api: Api) -> None:
    digest = await api.push_blob("lib/app", DATA)
    resp = await api.raw("POST", f"/v2/lib/other/blobs/uploads/?mount={digest}%0A&from=lib/app")
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    resp = await api.raw("POST", f"/v2/lib/other/blobs/uploads/?mount={digest}&from=lib/app%0A")
    assert resp.status == 400
    assert await error_code(resp) == "NAME_INVALID"
    _no_newline_stored(api)


async def test_repository_name_with_trailing_newline_is_refused(api: Api) -> None:
    # The route's ``.+`` already stops at a newline (404); the name grammar is the backstop.
    for method, path in (
        ("POST", "/v2/lib/app%0A/blobs/uploads/"),
        ("GET", "/v2/lib/app%0A/tags/list"),
    ):
        resp = await api.raw(method, path)
        assert resp.status in (400, 404)
        assert await error_code(resp) in ("NAME_INVALID", "UNSUPPORTED")
    _no_newline_stored(api)


@pytest.mark.parametrize("name", ["lib/app\n", "lib\n/app", "\nlib"])
def test_name_grammar_refuses_newlines(name: str) -> None:
    with pytest.raises(NameInvalid):
        validate_name(name)


@pytest.mark.parametrize("tag", ["evil\n", "v1\n"])
def test_tag_grammar_refuses_newlines(tag: str) -> None:
    assert not is_tag(tag)
    with pytest.raises(TagInvalid):
        validate_tag(tag)


def test_digest_grammar_refuses_newlines() -> None:
    digest = digest_of(DATA)
    assert is_digest(digest)
    with pytest.raises(DigestInvalid):
        parse_digest(digest + "\n")


async def _image_parts(api: Api) -> dict[str, Any]:
    config, layer = b'{"os":"linux"}', b"layer"
    await api.push_blob("lib/app", config)
    await api.push_blob("lib/app", layer)
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config, OCI_CONFIG),
        "layers": [descriptor(layer, OCI_LAYER)],
    }


async def test_tag_in_path_with_trailing_newline_is_refused(api: Api) -> None:
    manifest = await _image_parts(api)
    body = json.dumps(manifest).encode()
    resp = await api.raw(
        "PUT", "/v2/lib/app/manifests/evil%0A", data=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_INVALID"
    resp = await api.get("/v2/lib/app/tags/list")
    assert resp.status in (200, 404)
    if resp.status == 200:
        assert (await resp.json())["tags"] in ([], None)
    _no_newline_stored(api)


async def test_tag_in_query_with_trailing_newline_is_refused(api: Api) -> None:
    manifest = await _image_parts(api)
    body = json.dumps(manifest).encode()
    digest = digest_of(body)
    resp = await api.raw(
        "PUT",
        f"/v2/lib/app/manifests/{digest}?tag=evil%0A",
        data=body,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_INVALID"
    _no_newline_stored(api)


async def test_manifest_reference_digest_with_trailing_newline_is_refused(api: Api) -> None:
    digest, _ = await api.push_image("lib/app")
    for method in ("GET", "HEAD", "DELETE"):
        resp = await api.raw(method, f"/v2/lib/app/manifests/{digest}%0A")
        assert resp.status == 400, method
    assert (await api.get(f"/v2/lib/app/manifests/{digest}")).status == 200


@pytest.mark.parametrize("field", ["config", "layers", "subject"])
async def test_manifest_descriptor_digest_with_trailing_newline_is_refused(
    api: Api, field: str
) -> None:
    manifest = await _image_parts(api)
    if field == "config":
        manifest["config"]["digest"] += "\n"
    elif field == "layers":
        manifest["layers"][0]["digest"] += "\n"
    else:
        manifest["subject"] = {**manifest["config"], "digest": manifest["config"]["digest"] + "\n"}
    resp = await api.put_manifest("lib/app", "v1", manifest)
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_INVALID"
    assert "digest" in (await resp.json())["errors"][0]["message"]


async def test_index_child_digest_with_trailing_newline_is_refused(api: Api) -> None:
    child, _ = await api.push_image("lib/app", tag=None)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": child + "\n", "size": 10}],
    }
    resp = await api.put_manifest("lib/app", "multi", index, media_type=mt.OCI_INDEX)
    assert resp.status == 400
    assert await error_code(resp) == "MANIFEST_INVALID"


def test_request_id_with_trailing_newline_is_replaced() -> None:
    # A header value cannot end in "\n" on the wire; the check must not rely on that.
    request = make_mocked_request("GET", "/v2/", headers={"X-Request-ID": "abc\n"})
    rid = request_id(request)
    assert rid != "abc\n" and "\n" not in rid
    assert request_id(make_mocked_request("GET", "/", headers={"X-Request-ID": "abc"})) == "abc"


# ---------------------------------------------------------------- finding 5: deep and long


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
async def test_deeply_nested_manifest_is_invalid_not_500(
    api: Api, caplog: pytest.LogCaptureFixture, opener: bytes
) -> None:
    closer = b"]" if opener == b"[" else b"}"
    for body in (opener * 1000 + b"1" + closer * 1000, opener * 100_000):
        resp = await api.put_manifest("lib/app", "deep", body)
        assert resp.status == 400
        assert await error_code(resp) == "MANIFEST_INVALID"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_moderately_nested_manifest_fields_are_accepted(api: Api) -> None:
    manifest = await _image_parts(api)
    nested: Any = "leaf"
    for _ in range(20):
        nested = {"x": [nested]}
    manifest["extension"] = nested  # unknown fields are allowed and kept byte-exact
    resp = await api.put_manifest("lib/app", "v1", manifest)
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (f"bytes={HUGE}-", 416),
        (f"bytes={HUGE_PAIR}", 416),
        (f"bytes=0-{HUGE}", 206),
        (f"bytes=-{HUGE}", 206),
        (f"bytes={ZEROS}1-2", 206),
    ],
)
async def test_range_with_huge_numbers(
    api: Api, caplog: pytest.LogCaptureFixture, header: str, status: int
) -> None:
    digest = await api.push_blob("lib/app", DATA)
    resp = await api.get(f"/v2/lib/app/blobs/{digest}", headers={"Range": header})
    assert resp.status == status
    if status == 416:
        assert await error_code(resp) == "BLOB_UNKNOWN"
        assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"
    else:
        start = 1 if header.endswith("1-2") else 0
        end = 2 if header.endswith("1-2") else len(DATA) - 1
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
        assert await resp.read() == DATA[start : end + 1]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_content_range_with_huge_numbers(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    resp = await api.request("POST", "/v2/lib/app/blobs/uploads/")
    location = resp.headers["Location"]
    for content_range in (HUGE_PAIR, f"0-{HUGE}", f"{HUGE}-5"):
        resp = await api.request(
            "PATCH", location, data=b"abc", headers={"Content-Range": content_range}
        )
        assert resp.status == 400
        assert await error_code(resp) == "BLOB_UPLOAD_INVALID"
    # Leading zeros are not significant: this chunk starts at 5, past the session's end.
    resp = await api.request(
        "PATCH",
        location,
        data=b"abc",
        headers={"Content-Range": "0" * 4000 + "5-" + "0" * 3900 + "7"},
    )
    assert resp.status == 416
    assert await error_code(resp) == "BLOB_UPLOAD_INVALID"
    # The session is untouched and still usable.
    resp = await api.request("PATCH", location, data=b"abc", headers={"Content-Range": "0-2"})
    assert resp.status == 202
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- finding 12: multi-range


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=0-1, 3-", "BYTES=0-1", "bytes=a-b"])
async def test_ignored_range_serves_the_whole_blob(api: Api, header: str) -> None:
    # RFC 9110 section 14.2 lets a server ignore Range; Distribution never refuses these.
    digest = await api.push_blob("lib/app", DATA)
    resp = await api.get(f"/v2/lib/app/blobs/{digest}", headers={"Range": header})
    assert resp.status == 200
    assert "Content-Range" not in resp.headers
    assert await resp.read() == DATA


@pytest.mark.parametrize("last", ["%1A", "v1%0A", "%00", "%E2%80%AE"])
async def test_tags_list_cursor_outside_the_tag_alphabet(api: Api, last: str) -> None:
    # Found by tests/integration/test_fuzz_requests.py: S3 answered 500 to such a StartAfter.
    for tag in ("v1", "v2", "v3"):
        await api.push_image("lib/app", tag=tag)
    resp = await api.raw("GET", f"/v2/lib/app/tags/list?n=2&last={last}")
    assert resp.status == 200, await resp.text()
    expected = [t for t in ("v1", "v2", "v3") if t > unquote(last)]
    assert (await resp.json())["tags"] == expected[:2]
