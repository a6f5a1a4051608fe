"""An S3 endpoint that resets, delays and cuts connections: pushes and pulls through
``angos serve`` still succeed by the S3 client's retries, and no object is corrupt.

A small asyncio TCP proxy (tests/integration/s3_serve_support.FaultProxy) sits on loopback
between the registry and moto. The registry retries each S3 request up to ``max_attempts``; a
part sent again after a cut re-sends the same bytes (checked by S3 against its Content-MD5),
and a blob read cut mid-body is resumed from the last byte received.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from yarl import URL

from angos_core.oci import mediatypes as mt
from tests.integration.s3_serve_support import (
    FaultProxy,
    blob_digest,
    client_session,
    pull_sha256,
    push_streamed,
    s3_serve_toml,
)
from tests.integration.test_s3_serve import corrupt_blobs
from tests.support.angos_server import AngosServerFactory
from tests.support.moto_server import S3Bucket

MIB = 1024 * 1024
BLOBS = {"tiny": 3_000, "small": 700_000, "part": 5 * MIB, "parts": 12 * MIB + 3, "big": 23 * MIB}


@pytest.mark.heavy
async def test_pushes_and_pulls_survive_a_faulty_endpoint(
    angos_server_factory: AngosServerFactory,
    s3_bucket: S3Bucket,
    record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = urlsplit(s3_bucket.endpoint)
    assert target.hostname is not None and target.port is not None
    proxy = FaultProxy(target.hostname, target.port, refuse=0.1, delay=0.1, cut=0.1)
    endpoint = proxy.start()
    try:
        behind_proxy = S3Bucket(s3_bucket.name, {**s3_bucket.settings, "endpoint": endpoint})
        server = angos_server_factory(
            s3_serve_toml(
                behind_proxy,
                multipart_part_size="5MiB",
                max_attempts=10,
                operation_attempt_timeout_secs=20,
            )
        )
        base = URL(server.url)
        async with client_session() as http:
            digests = {}
            for name, size in BLOBS.items():
                digests[name] = await push_streamed(http, server.url, "faulty/app", name, size)
                assert digests[name] == blob_digest(name, size)
            config = b'{"architecture":"amd64","os":"linux"}'
            async with http.post(
                (base / "v2/faulty/app/blobs/uploads/").with_query(
                    {"digest": f"sha256:{hashlib.sha256(config).hexdigest()}"}
                ),
                data=config,
            ) as resp:
                assert resp.status == 201, await resp.text()
                config_digest = resp.headers["Docker-Content-Digest"]
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_MANIFEST,
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": config_digest,
                        "size": len(config),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": digests[name],
                            "size": size,
                        }
                        for name, size in BLOBS.items()
                    ],
                }
            ).encode()
            for tag in ("v1", "latest"):
                async with http.put(
                    base / f"v2/faulty/app/manifests/{tag}",
                    data=manifest,
                    headers={"Content-Type": mt.OCI_MANIFEST},
                ) as resp:
                    assert resp.status == 201, await resp.text()

            # Pulls go through the faulty endpoint as well (redirects are off).
            for tag in ("v1", "latest"):
                async with http.get(
                    base / f"v2/faulty/app/manifests/{tag}", headers={"Accept": mt.OCI_MANIFEST}
                ) as resp:
                    assert resp.status == 200
                    assert await resp.read() == manifest
            for name in BLOBS:
                assert await pull_sha256(http, server.url, "faulty/app", digests[name]) == (
                    200,
                    digests[name],
                ), name
    finally:
        proxy.close()

    # Checked straight on moto, not through the proxy.
    assert corrupt_blobs(s3_bucket) == []
    stats = proxy.stats
    log = server.stderr_text()
    resumed = log.count("resuming with a ranged GET")
    retried = log.count("succeeded after")
    summary = (
        f"fault proxy: {stats.connections} connections, {stats.refused} reset at once, "
        f"{stats.delayed} delayed, {stats.cut_bytes} cut mid-stream; "
        f"{retried} S3 requests succeeded on a retry, {resumed} blob reads resumed mid-body; "
        f"{len(BLOBS) + 1} blobs and 2 tags pushed and pulled intact"
    )
    record_property("s3_fault_proxy", summary)
    with capsys.disabled():
        print(f"\n{summary}")
    # The faults did happen: the test proves something only if they did.
    assert stats.refused > 0 and stats.cut_bytes > 0 and stats.delayed > 0
