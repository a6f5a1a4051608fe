"""A bound on open upload sessions, and a short life for empty ones (issue 10, finding 11).

``[global] max_upload_sessions_per_repository`` and ``max_upload_sessions_per_client``
bound the sessions one process holds open: one more ``POST .../blobs/uploads/`` is
``429 TOOMANYREQUESTS`` with ``Retry-After``; completing or cancelling a session frees its
slot. ``[maintenance.upload_purging] empty_age_secs`` purges a session that never received
a byte long before ``age_secs``.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from angos_core.config import UploadPurgingConfig
from angos_core.errors import ConfigError, TooManyRequests
from angos_core.http.app import config_from_toml
from angos_core.http.context import REGISTRY
from angos_core.protocols import UploadRef
from angos_core.registry.upload_limits import UploadSessionLimits
from angos_core.registry.upload_purge import UploadPurger
from tests.api_support import Api, digest_of, error_code, open_api

HOUR = 3600.0


def limits_toml(per_repository: int, per_client: int) -> str:
    return (
        f"[global]\nmax_upload_sessions_per_repository = {per_repository}\n"
        f"max_upload_sessions_per_client = {per_client}\n"
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(tmp_path / "d", limits_toml(3, 5)) as api:
        yield api


async def post(api: Api, name: str) -> tuple[int, str]:
    resp = await api.request("POST", f"/v2/{name}/blobs/uploads/")
    location = resp.headers.get("Location", "")
    if resp.status == 429:
        assert await error_code(resp) == "TOOMANYREQUESTS"
        assert int(resp.headers["Retry-After"]) >= 1
    return resp.status, location


async def test_sessions_beyond_the_repository_cap_are_refused(api: Api) -> None:
    opened = [await post(api, "lib/app") for _ in range(3)]
    assert [status for status, _ in opened] == [202, 202, 202]
    resp = await api.request("POST", "/v2/lib/app/blobs/uploads/")
    assert resp.status == 429
    assert await error_code(resp) == "TOOMANYREQUESTS"
    retry = int(resp.headers["Retry-After"])
    assert 1 <= retry <= HOUR + 1  # when the oldest stops counting: empty_age_secs
    body = await resp.json()
    assert "lib/app" in body["errors"][0]["message"]
    assert body["errors"][0]["detail"]["limit"] == 3
    # Monolithic uploads open a session too.
    data = b"x" * 10
    resp = await api.request("POST", f"/v2/lib/app/blobs/uploads/?digest={digest_of(data)}")
    assert resp.status == 429
    # Another repository has its own count.
    assert (await post(api, "lib/other"))[0] == 202


async def test_the_client_cap_spans_repositories(api: Api) -> None:
    statuses = [(await post(api, f"team/r{i}"))[0] for i in range(6)]
    assert statuses == [202] * 5 + [429]


async def test_completing_or_cancelling_frees_a_slot(api: Api) -> None:
    locations = [(await post(api, "lib/app"))[1] for _ in range(3)]
    assert (await post(api, "lib/app"))[0] == 429
    data = b"layer bytes"
    resp = await api.request("PUT", f"{locations[0]}?digest={digest_of(data)}", data=data)
    assert resp.status == 201
    status, location = await post(api, "lib/app")
    assert status == 202
    assert (await post(api, "lib/app"))[0] == 429
    assert (await api.request("DELETE", locations[1])).status == 204
    assert (await post(api, "lib/app"))[0] == 202
    # A failed monolithic upload (wrong digest) gives its slot back at once.
    assert (await api.request("DELETE", location)).status == 204
    bad = await api.request(
        "POST", f"/v2/lib/app/blobs/uploads/?digest={digest_of(b'other')}", data=b"bytes"
    )
    assert bad.status == 400
    assert (await post(api, "lib/app"))[0] == 202


async def test_a_purged_session_frees_its_slot(tmp_path: Path) -> None:
    root = tmp_path / "d"
    async with open_api(root, limits_toml(2, 0)) as api:
        first = (await post(api, "lib/app"))[1]
        await post(api, "lib/app")
        assert (await post(api, "lib/app"))[0] == 429
        registry = api.app[REGISTRY]
        upload = UploadRef("lib/app", first.rsplit("/", 1)[1])
        age_session(root, upload, 2 * HOUR)
        limits = registry.uploads.limits
        assert limits is not None
        settings = UploadPurgingConfig(age_secs=24 * HOUR, interval_secs=HOUR)
        result = await UploadPurger(
            registry.stores.blobs, settings, released=limits.release
        ).run_pass()
        assert result.purged == 1
        assert (await post(api, "lib/app"))[0] == 202


def age_session(root: Path, upload: UploadRef, secs: float) -> None:
    """Make the session look ``secs`` old (its ``startedat`` and its files' mtimes)."""
    session = root / "v2" / "repositories" / upload.name / "_uploads" / upload.upload_id
    started = datetime.now(UTC) - timedelta(seconds=secs)
    (session / "startedat").write_text(started.isoformat().replace("+00:00", "Z"))
    for path in session.iterdir():
        os.utime(path, (time.time() - secs, time.time() - secs))


async def test_empty_sessions_are_purged_after_the_empty_age(tmp_path: Path) -> None:
    root = tmp_path / "d"
    async with open_api(root, limits_toml(0, 0)) as api:
        empty = (await post(api, "lib/app"))[1]
        partial = (await post(api, "lib/app"))[1]
        young = (await post(api, "lib/app"))[1]
        resp = await api.request(
            "PATCH", partial, data=b"some bytes", headers={"Content-Range": "0-9"}
        )
        assert resp.status == 202
        for location in (empty, partial):
            age_session(root, UploadRef("lib/app", location.rsplit("/", 1)[1]), 2 * HOUR)
        settings = UploadPurgingConfig(age_secs=7 * 24 * HOUR, empty_age_secs=HOUR)
        result = await UploadPurger(api.app[REGISTRY].stores.blobs, settings).run_pass()
        assert (result.found, result.purged) == (3, 1)
        # The empty old session is gone; the one with bytes and the young one stay.
        assert (await api.get(empty)).status == 404
        assert (await api.get(partial)).status == 204
        assert (await api.get(young)).status == 204


def test_limits_expire_after_the_window_and_release_is_idempotent() -> None:
    now = [1000.0]
    limits = UploadSessionLimits(2, 0, window_secs=HOUR, clock=lambda: now[0])
    limits.admit("a", "lib/app", "10.0.0.1")
    now[0] += 10
    limits.admit("b", "lib/app", "10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        limits.admit("c", "lib/app", "10.0.0.1")
    assert refused.value.retry_after_secs == HOUR - 10
    limits.release("a")
    limits.release("a")
    assert len(limits) == 1
    limits.admit("c", "lib/app", "10.0.0.1")
    now[0] += HOUR  # "b" and "c" stop counting: by now an empty one would be purged
    assert len(limits) == 0


def test_config(tmp_path: Path) -> None:
    base = f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n'
    defaults = config_from_toml(base)
    assert defaults.global_.max_upload_sessions_per_repository == 5000
    assert defaults.global_.max_upload_sessions_per_client == 1000
    assert defaults.maintenance.upload_purging.empty_age_secs == HOUR
    with pytest.raises(ConfigError) as info:
        config_from_toml(base + "[global]\nmax_upload_sessions_per_client = -1\n")
    assert info.value.key == "global.max_upload_sessions_per_client"
    with pytest.raises(ConfigError) as info:
        config_from_toml(base + "[maintenance.upload_purging]\nempty_age_secs = 0\n")
    assert info.value.key == "maintenance.upload_purging.empty_age_secs"
