"""One S3 connection per store: timeouts, retries and error translation in one place.

Every request goes through :meth:`S3Client.call`, so the rules hold for all of them:

* retries: botocore's ``standard`` mode retries throttling, 5xx and connection errors with
  exponential backoff and jitter, ``max_attempts`` attempts in all; a request body read from
  a file is rewound before each retry, so a retried part re-sends the same bytes;
* per attempt: ``operation_attempt_timeout_secs`` is the connect and the read timeout;
* per operation: ``operation_timeout_secs`` bounds the request with all its attempts;
* errors: a missing key or upload becomes :class:`Missing` (each caller decides what that
  means), a failed condition :class:`PreconditionFailed`, anything else the typed errors of
  ``angos_core.errors`` with backend ``"s3"`` and a message naming bucket and endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from angos_core.errors import BackendError, BackendUnavailable
from angos_s3.config import S3Config

BACKEND = "s3"
log = logging.getLogger("angos.s3")

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchUpload", "NotFound", "404"})
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
        "403",
    }
)
_BUSY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "InternalError",
        "OperationAborted",
    }
)
# A 404 of a HEAD request has no body, so a missing bucket looks like a missing key; the
# bucket is re-checked on such a 404 at most this often.
_BUCKET_RECHECK_SECS = 5.0


class Missing(Exception):
    """The key (or multipart upload) does not exist."""


class PreconditionFailed(Exception):
    """A conditional request's condition did not hold (e.g. If-None-Match: *).

    ``retried``: the answer came to a retry, so an earlier attempt whose answer was lost
    may be what made the condition fail.
    """

    def __init__(self, code: str, retried: bool) -> None:
        super().__init__(code)
        self.retried = retried


def _code(exc: ClientError) -> tuple[str, int]:
    err = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return str(err.get("Code", status)), status


@functools.lru_cache(maxsize=16)
def _session(access_key_id: str | None, secret_key: str | None, region: str) -> Any:
    """One session per credentials: its loader caches the S3 service model, which otherwise
    every client (two per process: blobs and metadata) would parse again."""
    import aioboto3

    return aioboto3.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_key,
        region_name=region,
    )


@functools.lru_cache(maxsize=1)
def _unused_endpoint_params() -> frozenset[str]:
    """The parameters of botocore's S3 endpoint ruleset that no rule reads (``Key``,
    ``Prefix`` and ``CopySource`` in the ones shipped so far), so the endpoint does not
    depend on them; empty if the ruleset cannot be read."""
    try:
        from botocore.loaders import create_loader

        ruleset = create_loader().load_service_model("s3", "endpoint-rule-set-1")
        rules = json.dumps(ruleset["rules"])
        return frozenset(
            name for name in ruleset["parameters"] if f'{{"ref": "{name}"}}' not in rules
        )
    except Exception:  # a layout botocore no longer has: no cache
        return frozenset()


def _cache_endpoints(client: Any) -> None:
    """Resolve each distinct endpoint once per client, not once per request.

    botocore evaluates the S3 endpoint ruleset for every request (about a third of its
    per-request CPU), and caches the result keyed on every parameter, the object key
    included, so a copy of many objects never hits its cache. The ruleset reads none of the
    parameters :func:`_unused_endpoint_params` names, so a result keyed without them is
    the same result. Skipped if botocore's internals are not as expected."""
    unused = _unused_endpoint_params()
    provider: Any = getattr(getattr(client, "_ruleset_resolver", None), "_provider", None)
    resolve = getattr(provider, "resolve_endpoint", None)
    if not unused or provider is None or resolve is None:
        return
    cache: dict[tuple[tuple[str, Any], ...], Any] = {}

    def resolve_endpoint(**params: Any) -> Any:
        key = tuple(sorted((k, v) for k, v in params.items() if k not in unused))
        try:
            found = cache.get(key)
        except TypeError:  # an unhashable parameter value: resolve it as botocore does
            return resolve(**params)
        if found is None:
            if len(cache) >= _ENDPOINT_CACHE_SIZE:
                cache.clear()
            found = cache[key] = resolve(**params)
        return found

    provider.resolve_endpoint = resolve_endpoint


_ENDPOINT_CACHE_SIZE = 64


class S3Client:
    """A lazily opened aiobotocore S3 client bound to one bucket and key prefix."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._open_lock = asyncio.Lock()
        self._bucket_ok_at = float("-inf")

    # ------------------------------------------------------------------ lifecycle

    def _botocore_config(self) -> AioConfig:
        c = self.config
        return AioConfig(
            region_name=c.region,
            connect_timeout=c.operation_attempt_timeout_secs,
            read_timeout=c.operation_attempt_timeout_secs,
            retries={"max_attempts": c.max_attempts, "mode": "standard"},
            # SigV4 everywhere, presigned URLs included (SigV2 is refused by newer regions).
            signature_version="s3v4",
            s3={"addressing_style": "path"} if c.endpoint else None,
            # Many S3-compatible services reject the newer default checksum headers; parts
            # carry a Content-MD5 instead, which every implementation checks.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=64,
        )

    async def client(self) -> Any:
        if self._client is None:
            async with self._open_lock:
                if self._client is None:
                    session = _session(
                        self.config.access_key_id, self.config.secret_key, self.config.region
                    )
                    stack = contextlib.AsyncExitStack()
                    self._client = await stack.enter_async_context(
                        session.client(
                            "s3",
                            endpoint_url=self.config.endpoint or None,
                            config=self._botocore_config(),
                        )
                    )
                    self._stack = stack
                    _cache_endpoints(self._client)
        return self._client

    async def aclose(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def check_bucket(self) -> None:
        """Raise ``BackendUnavailable`` naming bucket and endpoint unless the bucket answers."""
        try:
            await self.call("head_bucket", key=None)
        except Missing:
            raise BackendUnavailable(
                BACKEND, f"{self.config.where()} does not exist (create it first)"
            ) from None
        self._bucket_ok_at = time.monotonic()

    # ------------------------------------------------------------------ keys

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def rel(self, key: str) -> str:
        return key[len(self.prefix) :]

    # ------------------------------------------------------------------ requests

    async def call(self, op: str, key: str | None, **params: Any) -> dict[str, Any]:
        """``client.<op>(Bucket=..., Key=prefix+key, **params)`` under the rules above.

        ``key`` is relative to ``key_prefix`` (None for bucket-level operations).
        """
        client = await self.client()
        if key is not None:
            params["Key"] = self.key(key)
        try:
            async with asyncio.timeout(self.config.operation_timeout_secs):
                result: dict[str, Any] = await getattr(client, op)(Bucket=self.bucket, **params)
            retries = result.get("ResponseMetadata", {}).get("RetryAttempts", 0)
            if retries:
                log.info("s3: %s %s succeeded after %d retries", op, params.get("Key", ""), retries)
            return result
        except ClientError as exc:
            code, status = _code(exc)
            if code == "PreconditionFailed" or status == 412:
                retries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
                raise PreconditionFailed(code, bool(retries)) from exc
            if code == "NoSuchBucket":
                raise self.unavailable(exc, op) from exc
            if code in _MISSING_CODES or status == 404:
                if op.startswith("head_") and op != "head_bucket":
                    await self._recheck_bucket()
                raise Missing(code) from exc
            raise self.translate(exc, op) from exc
        except (BackendError, Missing, PreconditionFailed):
            raise
        except Exception as exc:
            raise self.translate(exc, op) from exc

    async def _recheck_bucket(self) -> None:
        if time.monotonic() - self._bucket_ok_at > _BUCKET_RECHECK_SECS:
            await self.check_bucket()

    def unavailable(self, exc: BaseException, op: str) -> BackendUnavailable:
        if isinstance(exc, ClientError) and _code(exc)[0] == "NoSuchBucket":
            return BackendUnavailable(
                BACKEND, f"{self.config.where()} does not exist (create it first)"
            )
        return BackendUnavailable(BACKEND, f"{op} on {self.config.where()} failed: {exc}")

    def translate(self, exc: BaseException, op: str) -> BackendError:
        """The typed error for an exception raised by an S3 request."""
        where = self.config.where()
        if isinstance(exc, ClientError):
            code, status = _code(exc)
            if code == "NoSuchBucket":
                return self.unavailable(exc, op)
            if code in _AUTH_CODES or status == 403:
                return BackendUnavailable(
                    BACKEND,
                    f"{op} on {where} was refused ({code}): check access_key_id, secret_key "
                    f"and the bucket's permissions",
                )
            if code in _BUSY_CODES or status >= 500 or status == 429:
                return BackendUnavailable(
                    BACKEND,
                    f"{op} on {where} failed after {self.config.max_attempts} attempts ({code})",
                )
            return BackendError(BACKEND, f"{op} on {where} failed: {code}: {exc}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return BackendUnavailable(
                BACKEND,
                f"no usable credentials for {where}: set access_key_id and secret_key",
            )
        if isinstance(exc, TimeoutError):
            return BackendUnavailable(
                BACKEND,
                f"{op} on {where} timed out after {self.config.operation_timeout_secs}s "
                f"(operation_timeout_secs)",
            )
        if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
            return BackendUnavailable(
                BACKEND,
                f"{op} on {where} timed out after {self.config.max_attempts} attempts of "
                f"{self.config.operation_attempt_timeout_secs}s "
                f"(operation_attempt_timeout_secs)",
            )
        if isinstance(exc, EndpointConnectionError | BotoCoreError | aiohttp.ClientError | OSError):
            return BackendUnavailable(BACKEND, f"{op} on {where}: endpoint unreachable ({exc})")
        return BackendError(BACKEND, f"{op} on {where} failed: {exc!r}")

    # ------------------------------------------------------------------ streaming reads

    async def stream(
        self, key: str, offset: int = 0, length: int | None = None, chunk_size: int = 256 * 1024
    ) -> AsyncIterator[bytes]:
        """Yield the object's bytes ``[offset, offset+length)``; :class:`Missing` if absent.

        A connection lost mid-body is resumed with a ranged GET from the last byte received,
        up to ``max_attempts`` times (botocore retries only until the headers arrive).
        """
        end = None if length is None else offset + length
        pos = offset
        failures = 0
        while end is None or pos < end:
            params: dict[str, Any] = {}
            if pos > 0 or end is not None:
                params["Range"] = f"bytes={pos}-" + ("" if end is None else str(end - 1))
            resp = await self.call("get_object", key, **params)
            body = resp["Body"]
            try:
                while True:
                    try:
                        chunk = await body.read(chunk_size)
                    except (aiohttp.ClientError, BotoCoreError, OSError, TimeoutError) as exc:
                        failures += 1
                        if failures >= self.config.max_attempts:
                            raise self.translate(exc, "get_object (body)") from exc
                        log.warning(
                            "s3: reading %s broke at byte %d (%s); resuming with a ranged GET",
                            key,
                            pos,
                            exc,
                        )
                        break  # resume from pos with a new ranged GET
                    if not chunk:
                        return
                    pos += len(chunk)
                    yield chunk
            finally:
                body.close()

    async def size(self, key: str) -> int | None:
        """The size of the object at the relative ``key``, or None if there is none."""
        try:
            head = await self.call("head_object", key)
        except Missing:
            return None
        return int(head["ContentLength"])

    # ------------------------------------------------------------------ listing

    async def pages(
        self, prefix: str, *, delimiter: str | None = None, start_after: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """ListObjectsV2 pages under the relative ``prefix``, followed to the end."""
        params: dict[str, Any] = {"Prefix": self.key(prefix)}
        if delimiter:
            params["Delimiter"] = delimiter
        if start_after:
            params["StartAfter"] = self.key(start_after)
        while True:
            page = await self.call("list_objects_v2", None, **params)
            yield page
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]
            params.pop("StartAfter", None)

    async def delete_keys(self, keys: list[str]) -> None:
        """Delete the relative ``keys``, 1000 per request (DeleteObjects' limit)."""
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self.key(k)} for k in keys[i : i + 1000]]
            resp = await self.call("delete_objects", None, Delete={"Objects": batch, "Quiet": True})
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise BackendError(
                    BACKEND,
                    f"delete_objects on {self.config.where()} failed for {len(errors)} keys, "
                    f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')}",
                )

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object under the relative ``prefix``, one listed page at a time."""
        async for page in self.pages(prefix):
            await self.delete_keys([self.rel(o["Key"]) for o in page.get("Contents", [])])


class S3Backend:
    """What both s3 stores share: one client on the configured bucket and its lifecycle."""

    name = BACKEND

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.s3 = S3Client(config)

    async def open(self) -> None:
        try:
            await self.s3.check_bucket()
        except BaseException:
            # Core closes only what opened: do not leave the connection pool behind.
            await self.s3.aclose()
            raise

    async def health(self) -> None:
        await self.s3.check_bucket()

    async def aclose(self) -> None:
        await self.s3.aclose()
