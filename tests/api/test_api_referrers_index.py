"""The per-subject referrers index: descriptors in the entries, pages with ``Link``, the
``artifactType`` filter across pages, deletes, and entries written before the index."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from angos_core import layout
from angos_core.oci import mediatypes as mt
from angos_core.registry import referrers
from angos_core.registry.referrers import DEFAULT_REFERRERS_PAGE
from tests.support.api import Api, descriptor, digest_of, error_code
from tests.support.storage import Storage

EMPTY = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
SBOM = "application/spdx+json"
SIG = "application/vnd.example.signature"
#: Pushes in flight while a test seeds its referrers.
PUSH_CONCURRENCY = 16


async def push_referrers(
    api: Api, name: str, subject: tuple[str, bytes], types: list[str]
) -> dict[str, dict[str, Any]]:
    """One referrer of ``subject`` per entry of ``types`` (its artifactType); the
    descriptor each should be listed with, by digest."""
    await api.push_blob(name, EMPTY)
    limit = asyncio.Semaphore(PUSH_CONCURRENCY)

    async def one(i: int, artifact_type: str) -> tuple[str, dict[str, Any]]:
        annotations = {"org.example.index": str(i)}
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": descriptor(EMPTY, EMPTY_TYPE),
                "layers": [],
                "subject": descriptor(subject[1], mt.OCI_MANIFEST),
                "annotations": annotations,
            }
        ).encode()
        digest = digest_of(body)
        async with limit:
            resp = await api.put_manifest(name, digest, body)
            assert resp.status == 201, await resp.text()
        return digest, {
            "mediaType": mt.OCI_MANIFEST,
            "digest": digest,
            "size": len(body),
            "artifactType": artifact_type,
            "annotations": annotations,
        }

    return dict(await asyncio.gather(*(one(i, t) for i, t in enumerate(types))))


def next_path(resp: Any) -> str | None:
    link = resp.headers.get("Link")
    if link is None:
        return None
    assert link.endswith('>; rel="next"'), link
    return str(link[1 : link.index(">")])


async def walk(
    api: Api, name: str, subject: str, n: int | None = None, artifact_type: str | None = None
) -> list[list[dict[str, Any]]]:
    """Every page of the listing, following ``Link`` to the end."""
    query = {"n": str(n)} if n is not None else {}
    if artifact_type:
        query["artifactType"] = artifact_type
    pages: list[list[dict[str, Any]]] = []
    path: str | None = f"/v2/{name}/referrers/{subject}"
    params: dict[str, str] | None = query
    while path is not None:
        resp = await api.get(path, params=params)
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == mt.OCI_INDEX
        if artifact_type:
            assert resp.headers["OCI-Filters-Applied"] == "artifactType"
        else:
            assert "OCI-Filters-Applied" not in resp.headers
        index = await resp.json()
        assert index["schemaVersion"] == 2 and index["mediaType"] == mt.OCI_INDEX
        pages.append(index["manifests"])
        path, params = next_path(resp), None
        if path is not None:
            assert urlsplit(path).path == f"/v2/{name}/referrers/{subject}"
            link_query = parse_qs(urlsplit(path).query)
            if n is not None:
                assert link_query["n"] == [str(n)]
            if artifact_type:
                assert link_query["artifactType"] == [artifact_type]
    return pages


# A thousand pushes and cold reads take minutes against moto (a few ms per request, more
# under load); the S3 metadata shapes page through a smaller set in the next test, with
# batches shrunk so its pages cross them just as a thousand cross the real ones.
@pytest.mark.shapes("fs", "s3-blobs+fs-metadata")
async def test_a_thousand_referrers_in_pages(api: Api) -> None:
    subject = await api.push_image("lib/app", "latest")
    pushed = await push_referrers(api, "lib/app", subject, [SBOM] * 1000)

    pages = await walk(api, "lib/app", subject[0], n=100)
    assert [len(p) for p in pages] == [100] * 10
    listed = [d for page in pages for d in page]
    assert [d["digest"] for d in listed] == sorted(pushed)
    assert {d["digest"]: d for d in listed} == pushed

    # Without n, the default page holds them all, and no Link follows.
    assert DEFAULT_REFERRERS_PAGE >= 1000
    whole = await walk(api, "lib/app", subject[0])
    assert len(whole) == 1 and whole[0] == listed


async def test_pages_cross_list_and_read_batches(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(referrers, "LIST_BATCH", 7)
    monkeypatch.setattr(referrers, "READ_BATCH", 3)
    subject = await api.push_image("lib/app", "latest")
    pushed = await push_referrers(api, "lib/app", subject, [SBOM] * 60)

    pages = await walk(api, "lib/app", subject[0], n=25)
    assert [len(p) for p in pages] == [25, 25, 10]
    listed = [d for page in pages for d in page]
    assert [d["digest"] for d in listed] == sorted(pushed)
    assert {d["digest"]: d for d in listed} == pushed
    whole = await walk(api, "lib/app", subject[0])
    assert whole == [listed]


async def test_filter_across_pages(api: Api) -> None:
    subject = await api.push_image("lib/app", "latest")
    pushed = await push_referrers(api, "lib/app", subject, [SBOM, SIG, SIG] * 10)
    sboms = sorted(d for d, desc in pushed.items() if desc["artifactType"] == SBOM)

    pages = await walk(api, "lib/app", subject[0], n=3, artifact_type=SBOM)
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [d["digest"] for page in pages for d in page] == sboms
    # A page that ends exactly at the last match says no more.
    exact = await walk(api, "lib/app", subject[0], n=5, artifact_type=SBOM)
    assert [len(p) for p in exact] == [5, 5]
    assert (await walk(api, "lib/app", subject[0], n=3, artifact_type="application/none")) == [[]]


async def test_deleted_referrer_leaves_the_pages(api: Api) -> None:
    subject = await api.push_image("lib/app", "latest")
    pushed = sorted(await push_referrers(api, "lib/app", subject, [SBOM] * 6))
    for gone in (pushed[1], pushed[4]):
        resp = await api.request("DELETE", f"/v2/lib/app/manifests/{gone}")
        assert resp.status == 202
    pages = await walk(api, "lib/app", subject[0], n=2)
    assert [d["digest"] for page in pages for d in page] == [
        pushed[0],
        pushed[2],
        pushed[3],
        pushed[5],
    ]
    assert all(len(p) <= 2 for p in pages)


async def test_entries_hold_descriptors_and_a_cold_listing_reads_no_body(
    storage: Storage,
) -> None:
    async with storage.open_api() as api:
        subject = await api.push_image("lib/app", "latest")
        pushed = await push_referrers(api, "lib/app", subject, [SBOM, SIG])
        meta = api.registry.stores.meta
        for digest, expected in pushed.items():
            raw = await meta.get(layout.referrer_link_key("lib/app", subject[0], digest))
            assert raw is not None and json.loads(raw) == expected

    # A fresh process: nothing of these manifests is cached.
    async with storage.open_api() as api:
        meta = api.registry.stores.meta
        read: list[str] = []
        real_get = meta.get

        async def counting_get(key: str) -> bytes | None:
            read.append(key)
            return await real_get(key)

        meta.get = counting_get  # type: ignore[method-assign]
        (page,) = await walk(api, "lib/app", subject[0])
        assert {d["digest"]: d for d in page} == pushed
        bodies = {layout.blob_data_key(d) for d in pushed}
        assert read and not bodies & set(read)


async def test_entries_written_before_the_index_still_list(storage: Storage) -> None:
    async with storage.open_api() as api:
        subject = await api.push_image("lib/app", "latest")
        pushed = await push_referrers(api, "lib/app", subject, [SBOM, SIG, SBOM])
        old, corrupt, *_ = sorted(pushed)
        meta = api.registry.stores.meta
        # What Angos wrote before the index: the referrer's digest, as other links hold.
        await meta.put(
            layout.referrer_link_key("lib/app", subject[0], old), layout.link_content(old)
        )
        # A descriptor that names another digest is not trusted either.
        await meta.put(
            layout.referrer_link_key("lib/app", subject[0], corrupt),
            layout.referrer_entry_content({**pushed[corrupt], "digest": old}),
        )

    async with storage.open_api() as api:
        (page,) = await walk(api, "lib/app", subject[0])
        assert {d["digest"]: d for d in page} == pushed
        pages = await walk(api, "lib/app", subject[0], n=1, artifact_type=SBOM)
        sboms = sorted(d for d, desc in pushed.items() if desc["artifactType"] == SBOM)
        assert [d["digest"] for page in pages for d in page] == sboms


async def test_bad_page_parameters(api: Api) -> None:
    subject = digest_of(b"subject")
    resp = await api.get(f"/v2/lib/app/referrers/{subject}", params={"last": "sha256:nothex"})
    assert resp.status == 400
    assert await error_code(resp) == "DIGEST_INVALID"
    resp = await api.get(f"/v2/lib/app/referrers/{subject}", params={"n": "-1"})
    assert resp.status == 400
    assert await error_code(resp) == "PAGINATION_NUMBER_INVALID"
