"""Requests aiohttp's parser rejects: a TLS ClientHello on the plain-HTTP port (what docker
and skopeo send first in every session) and malformed request lines or headers. Each is one
INFO line without a traceback, never an ERROR, never an access line for ``"UNKNOWN /"``; a
flood is rate limited. Other records of aiohttp's server logger pass unchanged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from angos_core.http import make_app_from_toml
from angos_core.http.rejected import BURST, RateLimit, ServerLog
from tests.api_support import fs_toml

#: The start of a TLS 1.2+ ClientHello record.
CLIENT_HELLO = bytes.fromhex("16030100f8010000f40303") + bytes(64)


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    runner = web.AppRunner(make_app_from_toml(fs_toml(tmp_path / "data")))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def _send(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("angos", "aiohttp"))]


def _assert_quiet(records: list[logging.LogRecord]) -> None:
    assert not [r for r in records if r.levelno >= logging.WARNING], records
    assert not [r for r in records if r.exc_info], records
    assert not [r for r in records if "UNKNOWN" in r.getMessage()], records


async def test_tls_probe_is_one_info_line(port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    answer = await _send(port, CLIENT_HELLO)
    assert answer.startswith(b"HTTP/1.0 400")
    records = _lines(caplog)
    _assert_quiet(records)
    assert [(r.name, r.levelno, r.getMessage()) for r in records] == [
        (
            "angos.http",
            logging.INFO,
            "client 127.0.0.1 tried TLS on this plain-HTTP port; use http:// (docker: "
            "insecure-registries; skopeo: --tls-verify=false) or put a TLS-terminating proxy "
            "in front",
        )
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"\x00\x01garbage\r\n\r\n",
    ],
)
async def test_malformed_request_is_one_info_line(
    port: int, caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    caplog.set_level(logging.INFO)
    answer = await _send(port, data)
    assert b"HTTP/1.0 400" in answer
    records = _lines(caplog)
    _assert_quiet(records)
    rejected = [r for r in records if r.name == "angos.http"]
    assert len(rejected) == 1
    line = rejected[0].getMessage()
    assert line.startswith("rejected a malformed request from 127.0.0.1 with 400: ")
    assert "\n" not in line and "\x00" not in line


async def test_malformed_second_request_of_a_connection(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Past a connection's first request aiohttp logs a rejection at ERROR with a traceback."""
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nNo Colon\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 10)
        assert b"HTTP/1.0 400" in rest
    finally:
        writer.close()
    records = _lines(caplog)
    _assert_quiet(records)
    assert [r.name for r in records if r.name.startswith("angos.")] == [
        "angos.access",
        "angos.http",
    ]
    assert "rejected a malformed request from 127.0.0.1" in records[-1].getMessage()


async def test_nothing_at_warning_level(port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    await _send(port, CLIENT_HELLO)
    await _send(port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert _lines(caplog) == []


async def test_a_flood_is_rate_limited(port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(BURST + 5):
        await _send(port, b"\x00garbage\r\n\r\n")
    rejected = [r for r in _lines(caplog) if r.name == "angos.http"]
    # The limiter is per app; another test's app does not share it.
    assert len(rejected) == BURST


def test_rate_limit_reports_what_it_refused() -> None:
    now = [0.0]
    limit = RateLimit(burst=2, window=10.0, clock=lambda: now[0])
    assert [limit.allow() for _ in range(5)] == [0, 0, None, None, None]
    now[0] = 10.0
    assert limit.allow() == 3
    assert limit.allow() == 0
    assert limit.allow() is None


def test_other_records_pass_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.server")
    adapter = ServerLog(logging.getLogger("test.server"))
    try:
        raise ValueError("boom")
    except ValueError as exc:
        adapter.exception("Error handling request from %s", "10.0.0.1", exc_info=exc)
    adapter.warning("plain %s", "warning")
    records = [r for r in caplog.records if r.name == "test.server"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.ERROR, "Error handling request from 10.0.0.1"),
        (logging.WARNING, "plain warning"),
    ]
    assert records[0].exc_info is not None
