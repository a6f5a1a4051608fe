"""Logging: text (default) or JSON lines, a request id on every record, secrets redacted.

Every record passes through :func:`redact` when it is formatted, so a secret that reaches a
message by accident (a Redis URL with a password inside a backend's error, a presigned URL,
an Authorization header) is still not written. The startup config summary is built by
:func:`config_summary`, which drops secret settings before anything is formatted.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from angos_core.config import AngosConfig, BackendChoice, LogConfig

#: The request being handled by the current task ("-" outside a request).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar(
    "angos_request_id", default="-"
)

REDACTED = "***"

#: Setting names whose values are secrets, in any backend's table.
_SECRET_KEY_RE = re.compile(r"(secret|password|passwd|token|credential|access_key|private)", re.I)
#: ``scheme://user:password@host`` -> ``scheme://user:***@host``.
_URL_PASSWORD_RE = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")
#: Query parameters of presigned URLs and tokens.
_QUERY_SECRET_RE = re.compile(
    r"(?P<head>[?&](?:[\w.-]*(?:signature|sig|token|credential|secret|password|security-token)"
    r"[\w.-]*)=)[^&\s\"']*",
    re.I,
)
_AUTH_HEADER_RE = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)[^\"'\n]+", re.I
)


def redact(text: str) -> str:
    """``text`` with URL passwords, signed query parameters and Authorization values masked."""
    if "://" in text:
        text = _URL_PASSWORD_RE.sub(rf"\g<head>{REDACTED}@", text)
    if "=" in text:
        text = _QUERY_SECRET_RE.sub(rf"\g<head>{REDACTED}", text)
    if "uthorization" in text:
        text = _AUTH_HEADER_RE.sub(rf"\g<head>{REDACTED}", text)
    return text


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character (newlines, ANSI escapes, ...) written as
    ``\\xNN``, so that what a client sent cannot start a forged line in a text log."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def escape_field(text: str) -> str:
    """``escape_controls`` plus ``\\`` and ``"``: for a client-controlled value written
    between quotes, so it cannot end its field early either."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(_escape_char(c) if not c.isprintable() or c in '"\\' else c for c in text)


def is_secret_setting(name: str) -> bool:
    return bool(_SECRET_KEY_RE.search(name))


def _redact_value(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact_value(k, v) for k, v in value.items()}
    if value is None:
        return None
    if is_secret_setting(name):
        return REDACTED
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.password is not None:
            host = parts.hostname or ""
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            user = parts.username or ""
            parts = parts._replace(netloc=f"{user}:{REDACTED}@{host}")
            return urlunsplit(parts)
    return value


def _backend(choice: BackendChoice) -> dict[str, Any]:
    if choice.kind.summary == "names":
        return {"name": choice.name, "entries": list(choice.entries)}
    return {"name": choice.name, **{k: _redact_value(k, v) for k, v in choice.table.items()}}


def extensions_summary(config: AngosConfig) -> dict[str, Any]:
    """Every declared kind's backends, secrets redacted: one object for a kind that selects
    exactly one, a list for an ``Entries`` kind."""
    summary: dict[str, Any] = {}
    for kind in config.kinds:
        backends = [_backend(choice) for choice in config.selected(kind.name)]
        summary[kind.name] = backends if kind.several else backends[0]
    return summary


def config_summary(config: AngosConfig) -> dict[str, Any]:
    """The effective configuration with every secret replaced by ``***`` (for the startup log)."""
    return {
        "source": config.source,
        "server": {
            **vars(config.server),
            "tls": vars(config.server.tls) if config.server.tls is not None else None,
        },
        "global": {k: v for k, v in vars(config.global_).items()},
        "log": dict(vars(config.log)),
        "maintenance": {
            "upload_purging": dict(vars(config.maintenance.upload_purging)),
            "read_only": dict(vars(config.maintenance.read_only)),
        },
        **extensions_summary(config),
        "auth": config.auth.summary(),
    }


def _message(record: logging.LogRecord) -> str:
    message = record.getMessage()
    return message if getattr(record, "redacted", False) else redact(message)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    millis = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, request_id, then the record's
    structured ``fields`` (the access log puts method, route, status, ... there)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _message(record),
            "pid": record.process,
        }
        rid = getattr(record, "request_id", "-")
        if rid != "-":
            entry["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            if getattr(record, "redacted", False):
                entry.update(fields)
            else:
                entry.update({k: redact(v) if isinstance(v, str) else v for k, v in fields.items()})
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id]: message`` (the id only inside a request).

    One record is one line: control characters in the message (a decoded URL path, a
    header) are escaped; only a traceback adds lines."""

    def format(self, record: logging.LogRecord) -> str:
        rid = escape_controls(str(getattr(record, "request_id", "-")))
        where = f"{record.name} [{rid}]" if rid != "-" else record.name
        line = (
            f"{_timestamp(record)} {record.levelname} {where}: {escape_controls(_message(record))}"
        )
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the stream it was
    when logging was set up: one replaced since (a redirect, a test's capture, closed when
    the test ended) would otherwise make every later record a "Logging error"."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(config: LogConfig) -> None:
    """Route every logger to stderr in the configured format and level."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    # aiohttp's own access logger would duplicate ours (angos.access).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
