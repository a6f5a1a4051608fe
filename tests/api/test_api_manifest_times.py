"""The push and pull times the retention rules see (angos_core.registry.times): a push
records its time before it answers; a GET (by tag or by digest) is recorded off the
request's path, at most once per manifest per flush, and a failing record write fails no
pull."""

from __future__ import annotations

import json
from typing import Any

import pytest

from angos_core import layout
from angos_core.errors import BackendUnavailable
from angos_core.oci import mediatypes as mt
from tests.ops.test_gc import push_image
from tests.support.api import Api

pytestmark = pytest.mark.shapes("fs", "s3")


async def recorded(api: Api, name: str, kind: str, digest: str) -> int | None:
    return await api.registry.times.read(name, kind, digest)


async def test_a_push_records_its_time_and_pulls_are_flushed_once(api: Api) -> None:
    digest = await push_image(api, "lib/app", "v1", b"layer")
    assert await recorded(api, "lib/app", layout.PUSHED, digest) is not None
    await api.registry.times.flush()  # the push helper's own reads
    await api.registry.stores.meta.delete(
        layout.manifest_time_key("lib/app", layout.PULLED, digest)
    )

    accept = {"Accept": mt.OCI_MANIFEST}
    assert (await api.head("/v2/lib/app/manifests/v1", headers=accept)).status == 200
    assert await api.registry.times.flush() == 0  # a HEAD is not a pull
    for ref in ("v1", digest, "v1"):
        assert (await api.get(f"/v2/lib/app/manifests/{ref}", headers=accept)).status == 200
    # Nothing written on the request's path, one write for three pulls at the flush.
    assert await recorded(api, "lib/app", layout.PULLED, digest) is None
    assert await api.registry.times.flush() == 1
    assert await recorded(api, "lib/app", layout.PULLED, digest) is not None
    assert await api.registry.times.flush() == 0


async def test_a_failing_record_write_fails_no_pull(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = await push_image(api, "lib/app", "v1", b"layer")
    await api.registry.times.flush()
    meta = api.registry.stores.meta
    real_put = meta.put

    async def put(key: str, data: bytes, *args: Any, **kw: Any) -> Any:
        if key.startswith(layout.RETENTION_PREFIX):
            raise BackendUnavailable("test", "down")
        return await real_put(key, data, *args, **kw)

    monkeypatch.setattr(meta, "put", put)
    resp = await api.get(f"/v2/lib/app/manifests/{digest}", headers={"Accept": mt.OCI_MANIFEST})
    assert resp.status == 200
    assert json.loads(await resp.read())["mediaType"] == mt.OCI_MANIFEST
    assert await api.registry.times.flush() == 0  # logged, not raised


async def test_deleting_a_manifest_deletes_its_times(api: Api) -> None:
    digest = await push_image(api, "lib/app", None, b"layer")
    resp = await api.get(f"/v2/lib/app/manifests/{digest}", headers={"Accept": mt.OCI_MANIFEST})
    assert resp.status == 200
    await api.registry.times.flush()
    assert await recorded(api, "lib/app", layout.PULLED, digest) is not None
    assert (await api.client.delete(f"/v2/lib/app/manifests/{digest}")).status == 202
    for kind in (layout.PUSHED, layout.PULLED):
        assert await recorded(api, "lib/app", kind, digest) is None
