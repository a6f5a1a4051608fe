"""Unusable S3: missing bucket, wrong credentials, an endpoint that refuses or hangs.

Each is a BackendUnavailable from backend "s3" naming bucket and endpoint, at open() (the
startup check) and at each operation while running: never a hang, never a bare traceback.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from angos_s3 import S3BlobStore, S3Config, S3MetadataStore

from angos_core.config import parse_table
from angos_core.errors import BackendUnavailable
from angos_core.protocols import UploadRef
from angos_core.testing.moto_server import (
    S3Bucket,
    create_bucket,
    s3_client,
    s3_settings,
    start_moto_server,
    stop_moto_server,
)


def _config(settings: dict[str, object], **extra: object) -> S3Config:
    return parse_table(S3Config, {**settings, **extra}, "blob_store.s3")


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def refused_endpoint() -> str:
    """An endpoint where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _expect_unavailable(coro: object, *words: str) -> BackendUnavailable:
    with pytest.raises(BackendUnavailable) as info:
        await coro  # type: ignore[misc]
    assert info.value.backend == "s3"
    for word in words:
        assert word in str(info.value)
    return info.value


async def test_missing_bucket(moto_server: str) -> None:
    settings = s3_settings(moto_server, "no-such-bucket")
    blobs, meta = S3BlobStore(_config(settings)), S3MetadataStore(_config(settings))
    try:
        for op in (blobs.open(), meta.open(), blobs.health()):
            await _expect_unavailable(op, "no-such-bucket", moto_server, "does not exist")
        digest = "sha256:" + "0" * 64
        # A HEAD's 404 cannot tell a missing bucket from a missing key: it is re-checked.
        await _expect_unavailable(blobs.stat(digest), "no-such-bucket")
        await _expect_unavailable(meta.get("v2/x"), "no-such-bucket")
        await _expect_unavailable(meta.put("v2/x", b"1"), "no-such-bucket")
        await _expect_unavailable(meta.list_children("v2/"), "no-such-bucket")
        await _expect_unavailable(
            blobs.upload_start(UploadRef("a/b", str(uuid.uuid4()))), "no-such-bucket"
        )
    finally:
        await blobs.aclose()
        await meta.aclose()


async def test_bucket_deleted_while_running(s3_bucket: S3Bucket) -> None:
    store = S3BlobStore(_config(s3_bucket.settings))
    try:
        await store.open()
        s3_client(s3_bucket.endpoint).delete_bucket(Bucket=s3_bucket.name)
        await _expect_unavailable(store.health(), s3_bucket.name, "does not exist")
    finally:
        await store.aclose()


@pytest.fixture(scope="module")
def checking_moto() -> Iterator[tuple[str, str, dict[str, str]]]:
    """A private moto server that checks credentials: its endpoint, a bucket, and the
    credentials of a user allowed to use it."""
    # The first requests (IAM setup and the bucket) are let through; every later one is
    # authenticated against moto's IAM.
    proc, endpoint = start_moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    try:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="registry")
        iam.put_user_policy(
            UserName="registry",
            PolicyName="s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="registry")["AccessKey"]
        bucket = create_bucket(endpoint)
        creds = {"access_key_id": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}
        yield endpoint, bucket, creds
    finally:
        stop_moto_server(proc)


async def test_wrong_credentials(checking_moto: tuple[str, str, dict[str, str]]) -> None:
    endpoint, bucket, creds = checking_moto
    good = S3BlobStore(_config({**s3_settings(endpoint, bucket), **creds}))
    wrong_secret = {**creds, "secret_key": "not-the-secret"}
    bad_blobs = S3BlobStore(_config({**s3_settings(endpoint, bucket), **wrong_secret}))
    unknown_key = {"access_key_id": "AKIAUNKNOWN", "secret_key": "x"}
    bad_meta = S3MetadataStore(_config({**s3_settings(endpoint, bucket), **unknown_key}))
    try:
        await good.open()  # the server does check, and these credentials pass
        assert await good.stat("sha256:" + "0" * 64) is None
        for op in (bad_blobs.open(), bad_meta.open(), bad_meta.get("v2/x")):
            await _expect_unavailable(op, bucket, endpoint, "access_key_id")
    finally:
        for store in (good, bad_blobs, bad_meta):
            await store.aclose()


async def test_unreachable_endpoint_is_bounded(refused_endpoint: str) -> None:
    settings = s3_settings(refused_endpoint, "some-bucket")
    store = S3MetadataStore(_config(settings, max_attempts=2))
    try:
        started = time.monotonic()
        await _expect_unavailable(store.open(), "some-bucket", refused_endpoint, "unreachable")
        await _expect_unavailable(store.get("v2/x"), "unreachable")
        assert time.monotonic() - started < 60
    finally:
        await store.aclose()


async def test_hanging_endpoint_times_out_per_attempt(silent_endpoint: str) -> None:
    settings = s3_settings(silent_endpoint, "some-bucket")
    store = S3BlobStore(_config(settings, max_attempts=2, operation_attempt_timeout_secs=0.5))
    try:
        await _expect_unavailable(store.open(), "some-bucket", "timed out")
    finally:
        await store.aclose()


async def test_hanging_endpoint_hits_the_operation_timeout(silent_endpoint: str) -> None:
    settings = s3_settings(silent_endpoint, "some-bucket")
    store = S3BlobStore(
        _config(settings, operation_timeout_secs=1, operation_attempt_timeout_secs=60)
    )
    try:
        exc = await _expect_unavailable(store.open(), "some-bucket", "timed out")
        assert "operation_timeout_secs" in str(exc)
    finally:
        await store.aclose()
