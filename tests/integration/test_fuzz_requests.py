"""Generated hostile requests against a real ``angos serve``, on fs and on S3 (issue 10).

Hypothesis builds batches of raw HTTP/1.1 requests from a grammar of the API: paths, names,
tags and digests with control characters and percent-encodings, ranges and content ranges
(multi-range, numbers past ``int()``'s 4,300 digits), bodies cut short, deep and huge JSON,
wrong media types. They go over real sockets (raw bytes: no client library tidies them up).

Pinned: no response is a 5xx; on fs nothing is written outside the store root and every
file name in it is one the layout builds; an image stored before the fuzz is byte-intact
after it; the server's resident memory is back under a bound; asyncio reported no task
exception nobody retrieved. The counts by status class and the time are printed (``-s``).
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
import urllib.request
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.angos_server import AngosServer, AngosServerFactory, loopback
from tests.support.api import OCI_CONFIG, OCI_LAYER, descriptor, digest_of
from tests.support.moto_server import S3Bucket

#: Batches per store and requests per batch: 2 x 260 x 20 = 10,400 requests.
BATCHES = 260
BATCH = 20
#: Resident memory after the fuzz may exceed the pre-fuzz figure by at most this.
RSS_GROWTH_BOUND = 150 * 1024 * 1024
SOCKET_TIMEOUT = 30.0
#: Connections in flight at once.
SENDERS = 4

KEEP_REPO = "keep/app"  # read-only for the fuzzer: its content must survive
REPOS = ["lib/app", "fuzz", "a/b/c", "x"]
MANIFEST_TYPES = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/json",
    "text/plain",
    "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
    "",
]
CONTROL = "".join(chr(c) for c in range(32)) + "\x7f\x85\u2028\u2029\ufeff"


class Image:
    """What is pushed before the fuzz and must be byte-intact after it (fixed bytes, so the
    grammar below can name its digests)."""

    def __init__(self) -> None:
        self.config = b'{"architecture":"amd64","os":"linux"}'
        self.layer = random.Random(10).randbytes(200_000)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(self.config, OCI_CONFIG),
            "layers": [descriptor(self.layer, OCI_LAYER)],
        }
        self.manifest = json.dumps(manifest).encode()
        self.digests = [digest_of(self.config), digest_of(self.layer), digest_of(self.manifest)]


IMAGE = Image()


# ------------------------------------------------------------------ the raw client


def send(port: int, raw: bytes, *, cut: bool = False) -> int | None:
    """Send ``raw`` on a fresh connection; the response's status, None if none came.

    ``cut``: the body may not be complete (short of its Content-Length, or a
    Transfer-Encoding it does not follow); the client half-closes after it, as a client
    that went away would, rather than wait for the server's read timeout.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        try:
            sock.sendall(raw)
            if cut:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server refused early and closed: its answer may still be there
            pass
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            # Drain the rest so the server never blocks writing to us.
            while sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            if not data:
                raise
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    return int(m.group(1)) if m else None


def request_bytes(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes, length: int | None
) -> bytes:
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers]
    if length is not None:
        head.append(f"Content-Length: {length}")
    # surrogateescape: generated text may carry lone surrogates; the wire takes bytes.
    return "\r\n".join(head).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


# ------------------------------------------------------------------ the grammar


def percent(text: str, raw_printable: bool) -> str:
    out = []
    for char in text:
        if raw_printable and char.isascii() and char.isprintable() and char not in " %?#":
            out.append(char)
        else:
            out.append("".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass")))
    return "".join(out)


#: Text with control characters, separators, high and invalid code points. Drawn as bytes
#: (one choice for hypothesis, where a text is one per character): decoded as UTF-8 with
#: lone surrogates for what does not decode, or as Latin-1 (every C1 control).
_TOKENS = st.sampled_from([*CONTROL, *"./\\:@%?#&=+;,'\"<>[]{}|^`~ -_", "é", "\u202e", "😀"])
hostile_text = st.one_of(
    st.binary(max_size=24).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.binary(max_size=24).map(lambda b: b.decode("latin-1")),
    st.lists(_TOKENS, max_size=6).map("".join),
)
segment = st.one_of(
    st.builds(percent, hostile_text, st.booleans()),
    st.sampled_from(["..", "%2e%2e", ".", "%2F", "%00", "_uploads", "_manifests", "..%2F..%2Fetc"]),
)


known_digest = st.sampled_from(IMAGE.digests)
digests = st.one_of(
    known_digest,
    known_digest,
    st.builds("sha256:".__add__, st.text("0123456789abcdef", min_size=64, max_size=64)),
    st.builds(
        str.__add__,
        known_digest,
        st.sampled_from(["%0A", "%0D%0A", "%00", "%20", "/", "%2F..", "\\"]),
    ),
    st.builds("sha512:".__add__, st.text("0123456789abcdef", max_size=130)),
    st.sampled_from(["sha256:", ":", "sha256", "md5:abc", "SHA256:" + "a" * 64]),
    segment,
)
names = st.one_of(
    st.sampled_from(REPOS),
    st.builds(
        "/".join, st.lists(st.one_of(st.sampled_from(REPOS), segment), min_size=1, max_size=4)
    ),
)


def _deep_json(depth: int, opener: str) -> bytes:
    closer = "]" if opener == "[" else "}"
    inner = "[" if opener == "[" else '{"a":'
    return (inner * depth + "1" + closer * depth).encode()


def _huge(count: int) -> bytes:
    desc = {"mediaType": OCI_LAYER, "digest": IMAGE.digests[1], "size": len(IMAGE.layer)}
    # 20,000 end with a bad one: parsed whole, refused before the reference checks (the
    # time those take is finding 1's, not this test's).
    last = {**desc, "size": -1} if count == 20_000 else desc
    doc = {"schemaVersion": 2, "config": desc, "layers": [desc] * (count - 1) + [last]}
    return json.dumps(doc).encode()


#: Huge bodies, built once: many descriptors, under and over the 4 MiB limit.
HUGE_BODIES = [_huge(1000), _huge(20_000), _huge(40_000)]
SIZES = st.one_of(st.integers(-5, 10**6), st.just(10**5000), st.floats(), st.text(max_size=5))
MEDIA = st.sampled_from([OCI_LAYER, OCI_CONFIG, "", "x"])
FIELDS = st.sampled_from(["config", "layers", "manifests", "subject", "annotations"])


ANNOTATION_VALUES = st.one_of(hostile_text, st.integers())


@st.composite
def manifest_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return _deep_json(draw(st.integers(50, 5000)), draw(st.sampled_from("[{")))
    if kind == 1:
        return b"[" * draw(st.integers(100, 200_000))
    if kind == 2 and draw(st.integers(0, 2)) == 0:  # they cost the server most: fewer
        return draw(st.sampled_from(HUGE_BODIES))
    if kind == 3:
        return draw(st.binary(max_size=300))
    if kind == 4:
        return draw(st.binary(max_size=200))
    desc = {
        "mediaType": draw(MEDIA),
        "digest": draw(digests).replace("%0A", "\n").replace("%00", "\x00"),
        "size": draw(SIZES),
    }
    doc: dict[str, Any] = {
        "schemaVersion": draw(st.sampled_from([2, 1, "2", None])),
        "mediaType": draw(st.sampled_from(MANIFEST_TYPES)),
    }
    field = draw(FIELDS)
    doc["config"] = desc if field == "config" else {**desc, "digest": IMAGE.digests[0]}
    doc["layers"] = [desc] if field == "layers" else []
    if field == "manifests":
        doc["manifests"] = [desc]
    if field == "subject":
        doc["subject"] = desc
    if field == "annotations":
        doc["annotations"] = {draw(hostile_text): draw(ANNOTATION_VALUES)}
    try:
        return json.dumps(doc).encode("utf-8", "surrogateescape")
    except (ValueError, OverflowError):
        return b"{}"


RANGES = st.one_of(
    st.sampled_from(
        ["bytes=0-1,5-6", "bytes=0-", "bytes=-1", "bytes=5-2", "bytes=--1", "bytes=", "items=0-1"]
    ),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(0, 10**7), st.integers(0, 10**7)),
    st.just("bytes=" + "9" * 5000 + "-"),
    st.just("bytes=0-" + "9" * 5000),
    st.just("bytes=-" + "9" * 5000),
    st.builds(lambda t: "bytes=" + t, st.text("0123456789-, ", max_size=40)),
)
CONTENT_RANGES = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}", st.integers(0, 10**7), st.integers(0, 10**7)),
    st.just("9" * 4301 + "-" + "9" * 3800),
    st.just("0-" + "9" * 5000),
    st.sampled_from(["bytes 0-1/*", "0-", "-1", "a-b", "bytes=0-0/2", ""]),
)
header_value = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    st.builds(percent, hostile_text, st.just(True)),
)


REFERENCES = st.one_of(digests, segment, st.sampled_from(["latest", "keep", "v1"]))
PAGE_SIZES = st.one_of(st.integers(-5, 10**6), st.just("9" * 5000))


@st.composite
def requests(draw: st.DrawFn, uploads: st.SearchStrategy[str]) -> tuple[bytes, bool]:
    """One raw request and whether its body is cut short."""
    name = draw(names)
    endpoint = draw(st.integers(0, 11))
    method = draw(st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]))
    query: list[str] = []
    headers: list[tuple[str, str]] = []
    body = b""
    if endpoint == 0:
        # Not /readyz: its 503 is an answer (a health check slower than its timeout).
        path = draw(st.sampled_from(["/v2/", "/v2", "/v2/_catalog", "/healthz"]))
        query.append(f"n={draw(PAGE_SIZES)}")
    elif endpoint == 1:
        path = f"/v2/{name}/tags/list"
        query.append(f"n={draw(st.integers(-1, 50))}&last={draw(segment)}")
    elif endpoint in (2, 3):
        ref = draw(REFERENCES)
        path = f"/v2/{name}/manifests/{ref}"
        if method == "PUT" or draw(st.booleans()):
            method = "PUT"
            body = draw(manifest_bodies())
            headers.append(("Content-Type", draw(st.sampled_from(MANIFEST_TYPES))))
            if draw(st.booleans()):
                query.append(f"tag={draw(segment)}")
        headers.append(("Accept", draw(st.sampled_from([*MANIFEST_TYPES, "*/*"]))))
    elif endpoint in (4, 5):
        path = f"/v2/{name}/blobs/{draw(digests)}"
        method = draw(st.sampled_from(["GET", "HEAD", "DELETE", "GET"]))
        headers.append(("Range", draw(RANGES)))
        if draw(st.booleans()):
            headers.append(("If-Range", draw(header_value)))
    elif endpoint in (6, 7):
        path = f"/v2/{name}/blobs/uploads/"
        method = "POST"
        mode = draw(st.integers(0, 2))
        if mode == 0:
            query.append(f"digest={draw(digests)}")
            body = draw(st.binary(max_size=2000))
        elif mode == 1:
            query.append(f"mount={draw(digests)}&from={draw(names)}")
    elif endpoint in (8, 9):
        upload = draw(st.one_of(uploads, segment))
        path = f"/v2/{name}/blobs/uploads/{upload}"
        method = draw(st.sampled_from(["GET", "PATCH", "PUT", "DELETE", "PATCH"]))
        if method in ("PATCH", "PUT"):
            body = draw(st.binary(max_size=3000))
            if draw(st.booleans()):
                headers.append(("Content-Range", draw(CONTENT_RANGES)))
        if method == "PUT":
            query.append(f"digest={draw(digests)}")
    elif endpoint == 10:
        path = f"/v2/{name}/referrers/{draw(digests)}"
        query.append(f"artifactType={draw(segment)}")
    else:
        path = "/" + "/".join(draw(st.lists(segment, max_size=6)))
        method = draw(st.sampled_from([method, "OPTIONS", "TRACE", "FOO", "CONNECT"]))
    if name.startswith(KEEP_REPO) or KEEP_REPO in path:
        method = draw(st.sampled_from(["GET", "HEAD"]))
    if draw(st.integers(0, 9)) == 0:
        headers.append(("X-Request-ID", draw(header_value)))
    if draw(st.integers(0, 9)) == 0:
        headers.append(("User-Agent", draw(header_value)))
    with_query = bool(query) and draw(st.integers(0, 4)) > 0
    target = path + ("?" + "&".join(query) if with_query else "")
    cut = bool(body) and draw(st.integers(0, 7)) == 0
    length: int | None = len(body)
    if cut:
        length = len(body) + draw(st.integers(1, 10_000))
    if draw(st.integers(0, 19)) == 0:
        headers.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", "gzip", "x"]))))
        cut = True
    elif draw(st.integers(0, 19)) == 0:
        length = draw(st.sampled_from([None, 0, len(body) // 2]))
    if method in ("GET", "HEAD", "DELETE") and not body:
        length = None
    return request_bytes(method, target, headers, body, length), cut


# ------------------------------------------------------------------ the checks


def _get(server: AngosServer, path: str) -> bytes:
    with loopback.open(f"{server.url}{path}", timeout=SOCKET_TIMEOUT) as resp:
        data: bytes = resp.read()
        return data


def _push(server: AngosServer, image: Image) -> list[str]:
    for blob in (image.config, image.layer):
        req = urllib.request.Request(
            f"{server.url}/v2/{KEEP_REPO}/blobs/uploads/?digest={digest_of(blob)}",
            data=blob,
            method="POST",
        )
        with loopback.open(req, timeout=SOCKET_TIMEOUT) as resp:
            assert resp.status == 201
    req = urllib.request.Request(
        f"{server.url}/v2/{KEEP_REPO}/manifests/latest",
        data=image.manifest,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with loopback.open(req, timeout=SOCKET_TIMEOUT) as resp:
        assert resp.status == 201
    sessions = []
    for repo in REPOS:
        req = urllib.request.Request(f"{server.url}/v2/{repo}/blobs/uploads/", method="POST")
        with loopback.open(req, timeout=SOCKET_TIMEOUT) as resp:
            sessions.append(resp.headers["Location"].rsplit("/", 1)[1])
    return sessions


def _intact(server: AngosServer, image: Image) -> None:
    assert _get(server, f"/v2/{KEEP_REPO}/manifests/latest") == image.manifest
    assert _get(server, f"/v2/{KEEP_REPO}/manifests/{image.digests[2]}") == image.manifest
    assert _get(server, f"/v2/{KEEP_REPO}/blobs/{image.digests[0]}") == image.config
    assert _get(server, f"/v2/{KEEP_REPO}/blobs/{image.digests[1]}") == image.layer


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


_LAYOUT_NAME = re.compile(r"[A-Za-z0-9._:+=-]+")


def fuzz(server: AngosServer, image: Image, label: str) -> Counter[str]:
    sessions = _push(server, image)
    _intact(server, image)
    rss_before = _rss(server.pid)
    counts: Counter[str] = Counter()
    failures: list[bytes] = []
    start = time.monotonic()

    @settings(
        max_examples=BATCHES,
        deadline=None,  # the batch's sockets carry their own timeout
        derandomize=True,  # the same requests on every run
        database=None,
        # No shrinking: the failure message carries the request, and a shrink replaying
        # batches against a live server takes longer than it tells.
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(requests(st.sampled_from(sessions)), min_size=BATCH, max_size=BATCH))
    def batch(reqs: list[tuple[bytes, bool]]) -> None:
        # Sent by a few threads while hypothesis builds the next batch; a 5xx fails the
        # batch in which it is noticed, naming its request.
        for raw, cut in reqs:
            pending.append((raw, pool.submit(send, server.port, raw, cut=cut)))
        settle(len(pending) > 4 * BATCH)

    def settle(wait: bool) -> None:
        while pending and (wait or pending[0][1].done()):
            raw, future = pending.popleft()
            status = future.result()
            counts["requests"] += 1
            counts["no answer" if status is None else f"{status // 100}xx"] += 1
            if status is not None and status >= 500:
                failures.append(raw[:300])
            assert status is None or status < 500, raw[:300]
            wait = wait and len(pending) > BATCH

    pending: deque[tuple[bytes, Future[int | None]]] = deque()
    try:
        with ThreadPoolExecutor(max_workers=SENDERS) as pool:
            batch()
            while pending:
                settle(True)
    finally:
        elapsed = time.monotonic() - start
        print(f"\nfuzz {label}: {dict(counts)} in {elapsed:.1f}s; first 5xx: {failures[:3]}")
    assert counts["requests"] >= BATCHES * BATCH
    _intact(server, image)
    rss_after = _rss(server.pid)
    print(f"fuzz {label}: rss before {rss_before >> 20} MiB, after {rss_after >> 20} MiB")
    assert rss_after < rss_before + RSS_GROWTH_BOUND, (rss_before, rss_after)
    stderr = server.stderr_text()
    assert "exception was never retrieved" not in stderr, stderr[-3000:]
    assert "unexpected error" not in stderr, stderr[-3000:]
    return counts


@pytest.fixture
def image() -> Image:
    return IMAGE


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_fuzz_fs(angos_server_factory: AngosServerFactory, tmp_path: Path, image: Image) -> None:
    root = tmp_path / "store"
    outside = tmp_path / "outside"
    outside.mkdir()
    server = angos_server_factory(f'[blob_store.fs]\nroot_dir = "{root}"\n')
    workdir_before = _tree(server.stderr_path.parent)
    fuzz(server, image, "fs")
    assert _tree(tmp_path) - {"outside"} == {"store"} | {f"store/{p}" for p in _tree(root)}
    assert not _tree(outside)
    assert _tree(server.stderr_path.parent) == workdir_before
    odd = [p for p in _tree(root) if not all(_LAYOUT_NAME.fullmatch(c) for c in p.split("/"))]
    assert not odd, odd[:10]


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_fuzz_s3(
    angos_server_factory: AngosServerFactory, s3_bucket: S3Bucket, image: Image
) -> None:
    server = angos_server_factory(
        "[global]\nenable_redirect = false\n" + s3_bucket.toml("blob_store")
    )
    fuzz(server, image, "s3")
