"""``[maintenance.read_only]`` on every storage shape: writes refused with the spec's error
body, reads served, and an upload begun before the switch leaves nothing visible."""

from __future__ import annotations

import pytest

from angos_core.http import config_from_toml
from angos_core.http.live import LIVE, reload
from tests.support.api import Api, digest_of, error_code
from tests.support.storage import Storage

READ_ONLY = "[maintenance.read_only]\nenabled = true\n"


async def switch(api: Api, storage: Storage, extra: str) -> None:
    """Reload the running app with ``extra`` (what SIGHUP does, in process)."""
    await reload(api.app, config_from_toml(storage.toml(extra)), None)


async def assert_read_only(resp: object) -> None:
    from aiohttp import ClientResponse

    assert isinstance(resp, ClientResponse)
    assert resp.status == 405, await resp.text()
    assert await error_code(resp) == "UNSUPPORTED"
    body = await resp.json()
    assert body["errors"][0]["message"] == "registry is in read-only mode"


def repository_files(files: set[str]) -> set[str]:
    """What a client can see: everything but the upload sessions."""
    return {f for f in files if "/_uploads/" not in f}


async def test_writes_are_refused_and_reads_served(api: Api, storage: Storage) -> None:
    digest, body = await api.push_image("team/app", "v1", layer=b"layer-one")
    layer = digest_of(b"layer-one")
    # An upload in progress when the switch comes, holding a chunk.
    started = await api.request("POST", "/v2/team/app/blobs/uploads/")
    assert started.status == 202
    location = started.headers["Location"]
    pending = b"pending layer"
    patched = await api.request("PATCH", location, data=pending)
    assert patched.status == 202
    before = repository_files(storage.files())

    await switch(api, storage, READ_ONLY)
    assert api.app[LIVE].current.read_only

    pending_digest = digest_of(pending)
    writes = [
        api.request("POST", "/v2/team/app/blobs/uploads/"),
        api.request("POST", f"/v2/team/new/blobs/uploads/?digest={pending_digest}", data=pending),
        api.request("POST", f"/v2/team/other/blobs/uploads/?mount={layer}&from=team/app"),
        api.request("PATCH", location, data=b"more"),
        api.request("PUT", f"{location}?digest={pending_digest}"),
        api.request("DELETE", location),
        api.put_manifest("team/app", "v2", body),
        api.request("DELETE", "/v2/team/app/manifests/v1"),
        api.request("DELETE", f"/v2/team/app/manifests/{digest}"),
        api.request("DELETE", f"/v2/team/app/blobs/{layer}"),
    ]
    for write in writes:
        await assert_read_only(await write)

    # Every read still answers.
    assert (await api.get("/v2/team/app/manifests/v1")).status == 200
    assert (await api.head(f"/v2/team/app/manifests/{digest}")).status == 200
    blob = await api.get(f"/v2/team/app/blobs/{layer}")
    assert blob.status == 200 and await blob.read() == b"layer-one"
    assert (await api.get(location)).status == 204  # the upload's status is a read
    assert (await (await api.get("/v2/_catalog")).json())["repositories"] == ["team/app"]
    tags = await (await api.get("/v2/team/app/tags/list")).json()
    assert tags["tags"] == ["v1"]
    # Nothing partial: the upload's blob is linked nowhere, and no object appeared.
    assert (await api.head(f"/v2/team/app/blobs/{pending_digest}")).status == 404
    assert repository_files(storage.files()) == before


async def test_the_upload_completes_once_read_only_is_off(api: Api, storage: Storage) -> None:
    # The cut-over's last step: switched back, the sessions the window interrupted go on.
    started = await api.request("POST", "/v2/team/app/blobs/uploads/")
    location = started.headers["Location"]
    data = b"interrupted"
    assert (await api.request("PATCH", location, data=data)).status == 202
    await switch(api, storage, READ_ONLY)
    await assert_read_only(await api.request("PUT", f"{location}?digest={digest_of(data)}"))
    await switch(api, storage, "")
    done = await api.request("PUT", f"{location}?digest={digest_of(data)}")
    assert done.status == 201, await done.text()
    assert (await api.get(f"/v2/team/app/blobs/{digest_of(data)}")).status == 200


@pytest.mark.shapes("fs")
async def test_read_only_from_startup(storage: Storage) -> None:
    async with storage.open_api(READ_ONLY) as api:
        assert api.registry.writes.read_only
        await assert_read_only(await api.request("POST", "/v2/team/app/blobs/uploads/"))
        assert (await api.get("/v2/")).status == 200
        assert (await (await api.get("/v2/_catalog")).json())["repositories"] == []
