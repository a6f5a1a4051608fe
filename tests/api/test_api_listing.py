"""Tags list and catalog, with n/last pagination and Link headers."""

from __future__ import annotations

import pytest

from tests.support.api import Api, error_code

TAGS = ["1.0", "1.1", "2.0", "latest", "v9"]


async def tagged(api: Api, name: str = "lib/app") -> None:
    _digest, body = await api.push_image(name, TAGS[0])
    for tag in TAGS[1:]:
        resp = await api.put_manifest(name, tag, body)
        assert resp.status == 201


async def test_tags_list(api: Api) -> None:
    await tagged(api)
    resp = await api.get("/v2/lib/app/tags/list")
    assert resp.status == 200
    assert await resp.json() == {"name": "lib/app", "tags": TAGS}
    assert "Link" not in resp.headers


async def test_tags_pagination(api: Api) -> None:
    await tagged(api)
    seen: list[str] = []
    path = "/v2/lib/app/tags/list?n=2"
    pages = 0
    while path:
        resp = await api.get(path)
        assert resp.status == 200
        page = (await resp.json())["tags"]
        assert len(page) <= 2
        seen += page
        pages += 1
        link = resp.headers.get("Link")
        if link:
            assert link.endswith('>; rel="next"')
            path = link[1 : link.index(">")]
            assert path.startswith("/v2/lib/app/tags/list?")
        else:
            path = ""
    assert seen == TAGS
    assert pages == 3


async def test_tags_last_and_n(api: Api) -> None:
    await tagged(api)
    resp = await api.get("/v2/lib/app/tags/list?last=1.1&n=2")
    assert (await resp.json())["tags"] == ["2.0", "latest"]
    assert resp.headers["Link"] == '</v2/lib/app/tags/list?n=2&last=latest>; rel="next"'
    resp = await api.get("/v2/lib/app/tags/list?last=latest")
    assert (await resp.json())["tags"] == ["v9"]
    resp = await api.get("/v2/lib/app/tags/list?last=v9")
    assert (await resp.json())["tags"] == []
    resp = await api.get("/v2/lib/app/tags/list?n=0")
    assert resp.status == 200
    assert (await resp.json())["tags"] == []
    resp = await api.get("/v2/lib/app/tags/list?n=5")
    assert (await resp.json())["tags"] == TAGS
    assert "Link" not in resp.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1.5"])
async def test_invalid_page_size(api: Api, n: str) -> None:
    await tagged(api)
    resp = await api.get(f"/v2/lib/app/tags/list?n={n}")
    assert resp.status == 400
    assert await error_code(resp) == "PAGINATION_NUMBER_INVALID"
    resp = await api.get(f"/v2/_catalog?n={n}")
    assert resp.status == 400


async def test_tags_of_unknown_repository(api: Api) -> None:
    resp = await api.get("/v2/nothing/here/tags/list")
    assert resp.status == 404
    assert await error_code(resp) == "NAME_UNKNOWN"
    resp = await api.get("/v2/No/tags/list")
    assert resp.status == 400
    assert await error_code(resp) == "NAME_INVALID"


async def test_catalog(api: Api) -> None:
    assert await (await api.get("/v2/_catalog")).json() == {"repositories": []}
    names = ["a", "a/b", "a-c", "b/c/d", "z"]
    for name in reversed(names):
        await api.push_image(name, "latest")
    # A repository with only blobs (no manifest yet) is not listed.
    await api.push_blob("blobs/only", b"x")
    resp = await api.get("/v2/_catalog")
    assert resp.status == 200
    assert (await resp.json())["repositories"] == sorted(names)


async def test_catalog_pagination(api: Api) -> None:
    names = sorted(["one", "two", "three/x", "four", "five/six/seven"])
    for name in names:
        await api.push_image(name, "latest")
    seen: list[str] = []
    path = "/v2/_catalog?n=2"
    while path:
        resp = await api.get(path)
        seen += (await resp.json())["repositories"]
        link = resp.headers.get("Link")
        path = link[1 : link.index(">")] if link else ""
        if link:
            assert link.startswith("</v2/_catalog?n=2&last=")
    assert seen == names
    resp = await api.get(f"/v2/_catalog?last={names[2]}")
    assert (await resp.json())["repositories"] == names[3:]
