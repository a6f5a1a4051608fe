"""What a client sends cannot forge log lines (issue 10, finding 4).

The text format writes one line per record: a decoded ``%0A`` in the URL path, ANSI escapes
or a quote in a logged value come out escaped. JSON lines were already safe (the encoder
escapes), which the last test pins.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from angos_core import logs
from angos_core.logs import JsonFormatter, TextFormatter, _RequestIdFilter
from tests.support.api import Api, open_api

FORGED = '2026-01-01T00:00:00.000Z INFO angos.access: 10.0.0.1 "GET /v2/ok" 200'


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(tmp_path / "data") as api:
        yield api


def _capture(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    loggers = [logging.getLogger("angos.access"), logging.getLogger("angos.http")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    yield from _capture(TextFormatter())


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    yield from _capture(JsonFormatter())


async def _settle(out: io.StringIO, needle: str) -> str:
    # The access line is written just after the response ends.
    for _ in range(200):
        if needle in out.getvalue():
            break
        await asyncio.sleep(0.01)
    return out.getvalue()


async def test_encoded_newline_in_path_does_not_forge_a_text_line(
    api: Api, text_log: io.StringIO
) -> None:
    evil = "/v2/x%0D%0A" + FORGED.replace(" ", "%20").replace('"', "%22") + "%1B[2J"
    resp = await api.raw("GET", evil)
    assert resp.status == 404
    text = await _settle(text_log, "angos.access")
    lines = [line for line in text.splitlines() if line]
    assert lines, text
    assert not [line for line in lines if line.startswith("2026-01-01")], lines
    access = [line for line in lines if "angos.access" in line]
    assert len(access) == 1, lines
    assert "\\x0d\\x0a2026-01-01" in access[0]
    assert "\x1b" not in text
    # The forged quote cannot close the request field early either.
    assert "\\x22GET /v2/ok\\x22" in access[0]


async def test_encoded_newline_in_query_does_not_forge_a_text_line(
    api: Api, text_log: io.StringIO
) -> None:
    resp = await api.raw("GET", "/v2/?n=1%0A" + FORGED.replace(" ", "%20"))
    assert resp.status == 200
    text = await _settle(text_log, "angos.access")
    assert not [line for line in text.splitlines() if line.startswith("2026-01-01")]


def test_text_formatter_escapes_any_message() -> None:
    record = logging.LogRecord(
        "angos.http", logging.WARNING, __file__, 1, "GET %s: boom", ("/v2/a\nFAKE\u2028",), None
    )
    record.request_id = "r-1\n"
    line = TextFormatter().format(record)
    assert "\n" not in line and "\u2028" not in line
    assert line.endswith("angos.http [r-1\\x0a]: GET /v2/a\\x0aFAKE\\u2028: boom")


def test_escape_field_keeps_ordinary_text() -> None:
    assert logs.escape_field("/v2/lib/app/blobs/sha256:abc?n=1&last=é") == (
        "/v2/lib/app/blobs/sha256:abc?n=1&last=é"
    )
    assert logs.escape_field('a"b\\c\td') == "a\\x22b\\x5cc\\x09d"


async def test_json_lines_stay_one_line_per_record(api: Api, json_log: io.StringIO) -> None:
    resp = await api.raw("GET", "/v2/x%0A%22evil%22:1,%0D%1B")
    assert resp.status == 404
    text = await _settle(json_log, "angos.access")
    lines = [line for line in text.splitlines() if line]
    entries = [json.loads(line) for line in lines]  # every line is a whole JSON object
    access = [e for e in entries if e["logger"] == "angos.access"]
    assert len(access) == 1
    assert access[0]["path"] == '/v2/x\n"evil":1,\r\x1b'
