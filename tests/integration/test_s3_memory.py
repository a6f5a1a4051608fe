"""Memory stays bounded on S3: 8 concurrent 256 MiB streamed pushes at the default part size
(50 MiB) keep the server's peak RSS under 300 MiB.

The bound discriminates: a server holding a whole part per upload would need 8 x 50 MiB, one
holding whole blobs 2 GiB.

Each upload spools the part being assembled to a temporary file and sends full parts from
that file, so the server holds a small buffer per upload, not a part. The peak (VmHWM of
/proc/<pid>/status) is printed and recorded as a junit property so it can be reported.

The 2 GiB go to a private moto server, stopped at the end of the test, so the session's shared
one does not keep them. moto holds each part it stores several times over and assembles a
whole object several times over to complete a multipart upload (about 2 GiB for one 512 MiB
blob): serving eight pushes at once took it to 9.4 GiB. This one handles one request at a
time (the registry still sends all eight pushes' requests at once, they wait at moto's door
with their bodies unread), which bounds moto's peak to about 4 copies of one blob; that is
why the blobs are 256 MiB, not 512 MiB: at 512 MiB moto peaked at 2.4 GiB, which took the
suite's memory in use past 4 GiB (sampled every second: moto's resident size swings by 2 GiB
within seconds while it completes an upload). :data:`MOTO_RSS_LIMIT` holds it there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.integration.s3_serve_support import (
    blob_digest,
    client_session,
    pull_sha256,
    push_streamed,
    s3_serve_toml,
)
from tests.support.angos_server import AngosServerFactory, read_peak_rss_bytes
from tests.support.moto_server import (
    S3Bucket,
    create_bucket,
    s3_settings,
    start_moto_server,
    stop_moto_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

MIB = 1024 * 1024
PUSHES = 8
BLOB_SIZE = 256 * MIB
RSS_LIMIT = 300 * MIB
#: moto's own peak, for the suite's memory budget (not a property of Angos).
MOTO_RSS_LIMIT = 1536 * MIB
MOTO_CONCURRENT_REQUESTS = 1


async def test_eight_concurrent_256mib_pushes_stay_under_300mib(
    angos_server_factory: AngosServerFactory,
    record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc, endpoint = start_moto_server(max_concurrent_requests=MOTO_CONCURRENT_REQUESTS)
    try:
        name = create_bucket(endpoint)
        bucket = S3Bucket(name, s3_settings(endpoint, name))
        # Default multipart settings: 50MiB parts, CopyObject at commit below 5GB.
        server = angos_server_factory(s3_serve_toml(bucket))
        async with client_session() as http:
            digests = await asyncio.gather(
                *(
                    push_streamed(http, server.url, f"mem/app{i}", f"blob-{i}", BLOB_SIZE)
                    for i in range(PUSHES)
                )
            )
            peak = server.peak_rss_bytes()
            # Every blob is there, whole (one pulled back through the registry, all stat'ed).
            for i, digest in enumerate(digests):
                assert digest == blob_digest(f"blob-{i}", BLOB_SIZE)
                async with http.head(f"{server.url}/v2/mem/app{i}/blobs/{digest}") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Length"] == str(BLOB_SIZE)
            assert await pull_sha256(http, server.url, "mem/app0", digests[0]) == (
                200,
                digests[0],
            )
        moto_peak = read_peak_rss_bytes(proc.pid)
    finally:
        stop_moto_server(proc)

    summary = (
        f"peak RSS of angos serve for {PUSHES} concurrent {BLOB_SIZE // MIB} MiB pushes "
        f"on S3: {peak / MIB:.1f} MiB (moto server: {moto_peak / MIB:.0f} MiB)"
    )
    record_property("s3_push_peak_rss_mib", round(peak / MIB, 1))
    record_property("moto_peak_rss_mib", round(moto_peak / MIB))
    with capsys.disabled():
        print(f"\n{summary}")
    assert peak < RSS_LIMIT, summary
    assert moto_peak < MOTO_RSS_LIMIT, summary
