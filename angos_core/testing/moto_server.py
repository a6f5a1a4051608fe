"""A real S3 endpoint for tests: moto's server mode, over HTTP on loopback.

Fixtures (registered by :mod:`angos_core.testing.pytest_plugin`):

``moto_server`` (session)
    Starts ``python -m moto.server -H 127.0.0.1 -p <free port>`` as a subprocess, waits until
    it answers, yields its endpoint URL (``"http://127.0.0.1:<port>"``) and kills it at the
    end of the session. Never in-process: the code under test talks real HTTP to it.

``s3_bucket`` (function)
    A fresh, empty bucket on that server, as :class:`S3Bucket` ``(name, settings)``, where
    ``settings`` is a ready ``[blob_store.s3]`` table (access_key_id, secret_key, endpoint,
    bucket, region) to pass to the s3 plugin's config or write into a TOML file::

        def test_x(s3_bucket):
            name, settings = s3_bucket
            toml = s3_bucket.toml("blob_store")   # "[blob_store.s3]\\nbucket = ...\\n..."

Helpers for fixtures of your own (several buckets, buckets on another endpoint):
:func:`create_bucket`, :func:`delete_bucket`, :func:`s3_settings`, :func:`s3_client`,
:func:`start_moto_server` / :func:`stop_moto_server` (a second, private server).
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

# Tests talk to loopback only: a config without credentials must never make botocore look
# for an EC2 instance role at the link-local metadata address. Inherited by every
# subprocess the tests start (angos serve included).
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

ACCESS_KEY_ID = "angos-test-key"
SECRET_KEY = "angos-test-secret"
REGION = "us-east-1"
_STARTUP_TIMEOUT_SECS = 30.0


class S3Bucket(NamedTuple):
    """A bucket on the test endpoint and the ``[blob_store.s3]`` settings that reach it."""

    name: str
    settings: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return str(self.settings["endpoint"])

    def toml(self, section: str = "blob_store", **extra: Any) -> str:
        """A ``[<section>.s3]`` TOML table with these settings (plus ``extra`` keys)."""
        lines = [f"[{section}.s3]"]
        for key, value in {**self.settings, **extra}.items():
            lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def s3_settings(endpoint: str, bucket: str, **extra: Any) -> dict[str, Any]:
    """The ``[blob_store.s3]`` table for ``bucket`` on ``endpoint`` with the test credentials."""
    return {
        "access_key_id": ACCESS_KEY_ID,
        "secret_key": SECRET_KEY,
        "endpoint": endpoint,
        "bucket": bucket,
        "region": REGION,
        **extra,
    }


@functools.lru_cache(maxsize=8)
def s3_client(endpoint: str) -> Any:
    """A synchronous boto3 S3 client on ``endpoint`` (for test setup and inspection).

    Cached per endpoint: making a client costs a noticeable fraction of a second."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}),
    )


def create_bucket(endpoint: str, name: str | None = None) -> str:
    """Create a bucket (a fresh unique name unless given) and return its name."""
    name = name or f"angos-test-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], endpoint: str) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_SECS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered: good enough
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server at {endpoint} did not answer within {_STARTUP_TIMEOUT_SECS}s")


def start_moto_server(
    env: dict[str, str] | None = None, *, max_concurrent_requests: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a moto server subprocess on a free loopback port; return it and its endpoint.

    ``env`` adds environment variables (e.g. ``INITIAL_NO_AUTH_ACTION_COUNT`` to make moto
    check credentials after that many requests). ``max_concurrent_requests`` makes it handle
    that many requests at a time and return freed memory to the system at once
    (:mod:`angos_core.testing.moto_bounded`), for tests that push gigabytes through it. The
    caller must stop it (:func:`stop_moto_server`). Tries a few ports in case another process
    grabs the free one.
    """
    module = "moto.server"
    extra_env = dict(env or {})
    if max_concurrent_requests is not None:
        module = "angos_core.testing.moto_bounded"
        extra_env["ANGOS_MOTO_MAX_REQUESTS"] = str(max_concurrent_requests)
        # glibc keeps freed memory of many threads' arenas; moto's big buffers then add up.
        extra_env.setdefault("MALLOC_ARENA_MAX", "2")
        extra_env.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    last: Exception | None = None
    for _ in range(3):
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "AWS_DEFAULT_REGION": REGION, **extra_env},
        )
        try:
            _wait_ready(proc, endpoint)
            return proc, endpoint
        except RuntimeError as exc:
            last = exc
            stop_moto_server(proc)
    raise RuntimeError(f"could not start moto server: {last}")


def stop_moto_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server running for the whole test session."""
    proc, endpoint = start_moto_server()
    try:
        yield endpoint
    finally:
        stop_moto_server(proc)


def delete_bucket(endpoint: str, name: str) -> None:
    """Empty and delete a bucket (objects and pending multipart uploads), best effort."""
    client = s3_client(endpoint)
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for up in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)
    except Exception:  # the test may have removed it, or the server may be gone
        pass


@pytest.fixture
def s3_bucket(moto_server: str) -> Iterator[S3Bucket]:
    """A fresh empty bucket and its ``[blob_store.s3]`` settings; emptied and deleted after
    the test (moto keeps every object, so a long session would otherwise grow)."""
    name = create_bucket(moto_server)
    yield S3Bucket(name, s3_settings(moto_server, name))
    delete_bucket(moto_server, name)


#: What tests import (fixtures and hooks come from angos_core.testing.pytest_plugin).
__all__ = [
    "ACCESS_KEY_ID",
    "REGION",
    "SECRET_KEY",
    "S3Bucket",
    "create_bucket",
    "delete_bucket",
    "s3_client",
    "s3_settings",
    "start_moto_server",
    "stop_moto_server",
]
