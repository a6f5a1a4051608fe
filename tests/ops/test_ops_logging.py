"""Request ids, access log lines (text and JSON), and secrets that never reach a log.

The last test runs the real ``angos serve`` with JSON logs on S3 (moto) and a Redis that
requires a password, and reads its whole stderr: no configured secret appears anywhere.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from angos_core.config import LogConfig
from angos_core.http.app import config_from_toml
from angos_core.logs import (
    JsonFormatter,
    TextFormatter,
    _RequestIdFilter,
    config_summary,
    redact,
    setup_logging,
)
from tests.support.angos_server import AngosServerFactory, loopback
from tests.support.api import Api, digest_of
from tests.support.moto_server import S3Bucket
from tests.support.tools import require_tool

SECRET = "sEcReT-d0-not-log-7f3a"
REDIS_PASSWORD = "pw-d0-not-log-91c2"
BEARER = "bearer-d0-not-log-55e1"
SIGNATURE = "sig-d0-not-log-0b7d"


# What is logged does not depend on the storage; `api` (tests/support/storage.py) on fs.
pytestmark = pytest.mark.shapes("fs")


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """The ``angos.access`` records, JSON-formatted as ``[log] format = "json"`` would."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_RequestIdFilter())
    logger = logging.getLogger("angos.access")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _entries(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def _logged(out: io.StringIO, *ids: str) -> dict[str, dict[str, object]]:
    """The entries of these request ids; the line is written just after the response ends,
    so a client can see the response a moment before the server logs it."""
    for _ in range(200):
        entries = {str(e.get("request_id")): e for e in _entries(out)}
        if all(i in entries for i in ids):
            return entries
        await asyncio.sleep(0.01)
    raise AssertionError(f"no access log for {ids}: {out.getvalue()}")


# --------------------------------------------------------------------------- request ids


async def test_request_id_is_generated_and_unique(api: Api) -> None:
    ids = set()
    for _ in range(5):
        resp = await api.get("/v2/")
        rid = resp.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        ids.add(rid)
    assert len(ids) == 5


async def test_a_sane_incoming_request_id_is_kept(api: Api) -> None:
    resp = await api.get("/v2/", headers={"X-Request-ID": "lb-7f00:abc_1.2"})
    assert resp.headers["X-Request-ID"] == "lb-7f00:abc_1.2"


@pytest.mark.parametrize("bad", ["has space", "x" * 200, "semi;colon", 'quote"d', ""])
async def test_an_insane_incoming_request_id_is_replaced(api: Api, bad: str) -> None:
    resp = await api.get("/v2/", headers={"X-Request-ID": bad})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


async def test_request_id_on_errors_and_streamed_blobs(api: Api) -> None:
    resp = await api.get("/v2/nope/manifests/latest", headers={"X-Request-ID": "e-1"})
    assert resp.status == 404
    assert resp.headers["X-Request-ID"] == "e-1"
    assert (await api.get("/no/such/path", headers={"X-Request-ID": "e-2"})).headers[
        "X-Request-ID"
    ] == "e-2"
    data = b"blob" * 1000
    digest = await api.push_blob("ids", data)
    resp = await api.get(f"/v2/ids/blobs/{digest}", headers={"X-Request-ID": "b-1"})
    assert await resp.read() == data
    assert resp.headers["X-Request-ID"] == "b-1"
    resp = await api.get(
        f"/v2/ids/blobs/{digest}", headers={"X-Request-ID": "b-2", "Range": "bytes=0-9"}
    )
    assert resp.status == 206
    assert resp.headers["X-Request-ID"] == "b-2"


# --------------------------------------------------------------------------- access log


async def test_access_log_json_fields(api: Api, access_lines: io.StringIO) -> None:
    data = b"z" * 5000
    digest = digest_of(data)
    resp = await api.client.post(
        f"/v2/logs/app/blobs/uploads/?digest={digest}", data=data, headers={"X-Request-ID": "a-1"}
    )
    assert resp.status == 201
    resp = await api.get(f"/v2/logs/app/blobs/{digest}", headers={"X-Request-ID": "a-2"})
    assert await resp.read() == data
    entries = await _logged(access_lines, "a-1", "a-2")
    push, pull = entries["a-1"], entries["a-2"]
    assert push["method"] == "POST"
    assert push["route"] == "/v2/{name}/blobs/uploads/"
    assert push["path"] == f"/v2/logs/app/blobs/uploads/?digest={digest}"
    assert push["status"] == 201
    assert push["bytes_in"] == len(data)
    assert isinstance(push["duration_ms"], float)
    assert push["logger"] == "angos.access" and push["level"] == "info"
    assert pull["route"] == "/v2/{name}/blobs/{digest}"
    assert pull["status"] == 200
    assert isinstance(pull["bytes_out"], int) and pull["bytes_out"] >= len(data)


async def test_probes_are_logged_at_debug_only(api: Api, access_lines: io.StringIO) -> None:
    await api.get("/healthz", headers={"X-Request-ID": "p-1"})
    await api.get("/v2/", headers={"X-Request-ID": "p-2"})
    levels = {k: e["level"] for k, e in (await _logged(access_lines, "p-1", "p-2")).items()}
    assert levels == {"p-1": "debug", "p-2": "info"}


async def test_access_log_hides_authorization_and_signatures(
    api: Api, access_lines: io.StringIO
) -> None:
    await api.get(
        f"/v2/_catalog?n=5&X-Amz-Signature={SIGNATURE}&token={SIGNATURE}",
        headers={"Authorization": f"Bearer {BEARER}", "X-Request-ID": "s-1"},
    )
    await _logged(access_lines, "s-1")
    text = access_lines.getvalue()
    assert "s-1" in text
    assert "n=5" in text
    assert SIGNATURE not in text
    assert BEARER not in text


def test_text_format_carries_the_request_id() -> None:
    record = logging.LogRecord("angos.http", logging.WARNING, __file__, 1, "boom %s", ("x",), None)
    record.request_id = "r-9"
    assert TextFormatter().format(record).endswith("WARNING angos.http [r-9]: boom x")


# --------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"PING failed at redis://:{REDIS_PASSWORD}@redis:6379/0", REDIS_PASSWORD),
        (f"rediss://user:{REDIS_PASSWORD}@h:1", REDIS_PASSWORD),
        (f"GET https://b.s3/x?X-Amz-Credential=AK&X-Amz-Signature={SIGNATURE}", SIGNATURE),
        (f"headers: {{'Authorization': 'Bearer {BEARER}'}}", BEARER),
        (f"Authorization: Basic {BEARER}", BEARER),
    ],
)
def test_redact(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert "***" in out


def test_redact_leaves_ordinary_text() -> None:
    text = "GET /v2/a/b/manifests/sha256:abc?n=10&last=x redis://redis:6379"
    assert redact(text) == text


def test_config_summary_masks_secrets() -> None:
    toml = f"""
[blob_store.s3]
bucket = "b"
access_key_id = "AKIA-d0-not-log"
secret_key = "{SECRET}"
endpoint = "http://127.0.0.1:9"

[metadata_store.s3.redis]
url = "redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"

[cache.redis]
url = "redis://angos:{REDIS_PASSWORD}@127.0.0.1:6379/1"
"""
    summary = config_summary(config_from_toml(toml))
    text = json.dumps(summary)
    for secret in (SECRET, REDIS_PASSWORD, "AKIA-d0-not-log"):
        assert secret not in text
    assert summary["blob_store"]["bucket"] == "b"
    assert summary["blob_store"]["secret_key"] == "***"
    assert summary["lock_provider"]["url"] == "redis://:***@127.0.0.1:6379/0"
    assert summary["cache"]["url"] == "redis://angos:***@127.0.0.1:6379/1"


def test_setup_logging_json_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(LogConfig(format="json", level="warning"))
        logging.getLogger("angos.t").info("hidden")
        logging.getLogger("angos.t").warning("at redis://:%s@h:1", REDIS_PASSWORD)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert entry["message"] == "at redis://:***@h:1"
    assert entry["pid"] == os.getpid()


def test_logging_follows_stderr_when_it_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set up while stderr was one stream (a test's capture, since closed), records go to
    the stderr of the moment, not to the closed stream ("Logging error" on every line)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        monkeypatch.setattr("sys.stderr", first)
        setup_logging(LogConfig(level="info"))
        logging.getLogger("angos.t").info("one")
        first.close()
        monkeypatch.setattr("sys.stderr", second)
        logging.getLogger("angos.t").info("two")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert second.getvalue().endswith("INFO angos.t: two\n")


# --------------------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[str]:
    """A private redis-server that requires ``REDIS_PASSWORD``; yields its URL."""
    exe = require_tool("redis-server", "install it with: apt-get install redis-server")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", REDIS_PASSWORD],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


def test_serve_logs_no_secret(
    angos_server_factory: AngosServerFactory, s3_bucket: S3Bucket, redis_with_password: str
) -> None:
    url = redis_with_password
    toml = (
        s3_bucket.toml("blob_store", secret_key=SECRET)
        + f'[metadata_store.s3.redis]\nurl = "{url}"\n[cache.redis]\nurl = "{url}"\n'
        + '[log]\nformat = "json"\n'
    )
    server = angos_server_factory(toml)
    data = b"secret-free" * 100
    digest = digest_of(data)
    request = urllib.request.Request(
        f"{server.url}/v2/x/blobs/uploads/?digest={digest}&X-Amz-Signature={SIGNATURE}",
        data=data,
        method="POST",
        headers={"Authorization": f"Bearer {BEARER}", "X-Request-ID": "no-secrets-1"},
    )
    with loopback.open(request, timeout=30) as resp:
        assert resp.status == 201
        assert resp.headers["X-Request-ID"] == "no-secrets-1"
    with loopback.open(f"{server.url}/readyz", timeout=30) as resp:
        assert json.loads(resp.read())["status"] == "ready"
    os.kill(server.pid, signal.SIGTERM)
    assert server.stop() == 0

    lines = [
        line
        for line in server.stderr_text().splitlines()
        if line.strip() and not line.startswith("==== start")
    ]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    text = "\n".join(lines)
    for secret in (SECRET, REDIS_PASSWORD, BEARER, SIGNATURE):
        assert secret not in text, secret
    (config_line,) = [e for e in entries if str(e["message"]).startswith("config: ")]
    assert "secret_key" in str(config_line["message"])
    (access,) = [e for e in entries if e.get("request_id") == "no-secrets-1"]
    assert access["status"] == 201
    assert access["route"] == "/v2/{name}/blobs/uploads/"
