"""The ``[blob_store.s3]`` / ``[metadata_store.s3]`` table.

One table type for both stores: a ``[metadata_store.s3]`` with only some keys inherits the
rest from ``[blob_store.s3]`` (core does that merge), so both accept every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from angos_core import ByteSize

MIB = 1024 * 1024
#: S3 refuses parts below 5 MiB (except the last one of an upload).
S3_MIN_PART_SIZE = 5 * MIB
#: S3 refuses parts, and single CopyObject sources, above 5 GiB.
S3_MAX_PART_SIZE = 5 * 1024 * MIB


@dataclass
class S3Config:
    bucket: str
    access_key_id: str | None = None
    secret_key: str | None = None
    #: Anything S3-compatible; when set, requests use path-style addressing
    #: (``<endpoint>/<bucket>/<key>``) as MinIO and most compatible services expect.
    endpoint: str | None = None
    region: str = "us-east-1"
    #: Every key lives under this prefix ("" = the bucket's root); a trailing "/" is implied.
    key_prefix: str = ""
    #: Uploads go to S3 in parts of this size while the data arrives.
    multipart_part_size: ByteSize = field(default_factory=lambda: ByteSize(50 * MIB))
    #: Committed blobs larger than this are copied to their final key part by part.
    multipart_copy_threshold: ByteSize = field(default_factory=lambda: ByteSize(5 * 1000**3))
    #: The size of each of those copied parts.
    multipart_copy_chunk_size: ByteSize = field(default_factory=lambda: ByteSize(100 * 1000**2))
    #: How many parts are copied at once.
    multipart_copy_jobs: int = 4
    #: Attempts per S3 request (first try included) on throttling, 5xx and connection errors.
    max_attempts: int = 3
    #: Bound on one S3 operation, all its attempts included.
    operation_timeout_secs: float = 900.0
    #: Bound on one attempt: the connect and the read timeout of each request.
    operation_attempt_timeout_secs: float = 300.0
    #: Metadata store: how long the names a page's last list call read past it are kept
    #: for the next page of the same walk (it then needs one call, not two); 0 keeps none.
    listing_snapshot_secs: float = 10.0

    def __post_init__(self) -> None:
        # ValueError: core's parser reports it with the table's dotted path in front.
        if not self.bucket:
            raise ValueError("bucket must name a bucket, got an empty string")
        if self.multipart_part_size < S3_MIN_PART_SIZE:
            raise ValueError(
                f"multipart_part_size must be at least 5MiB (S3's smallest part), "
                f"got {int(self.multipart_part_size)} bytes"
            )
        if self.multipart_part_size > S3_MAX_PART_SIZE:
            raise ValueError(
                f"multipart_part_size must be at most 5GiB (S3's largest part), "
                f"got {int(self.multipart_part_size)} bytes"
            )
        if not S3_MIN_PART_SIZE <= self.multipart_copy_chunk_size <= S3_MAX_PART_SIZE:
            raise ValueError(
                f"multipart_copy_chunk_size must be between 5MiB and 5GiB (S3's part limits), "
                f"got {int(self.multipart_copy_chunk_size)} bytes"
            )
        if self.multipart_copy_jobs < 1:
            raise ValueError(
                f"multipart_copy_jobs must be at least 1, got {self.multipart_copy_jobs}"
            )
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.operation_timeout_secs <= 0:
            raise ValueError(
                f"operation_timeout_secs must be positive, got {self.operation_timeout_secs}"
            )
        if self.listing_snapshot_secs < 0:
            raise ValueError(
                f"listing_snapshot_secs must be 0 or more, got {self.listing_snapshot_secs}: "
                "0 lists every page afresh"
            )
        if self.operation_attempt_timeout_secs <= 0:
            raise ValueError(
                "operation_attempt_timeout_secs must be positive, "
                f"got {self.operation_attempt_timeout_secs}"
            )
        if (self.access_key_id is None) != (self.secret_key is None):
            raise ValueError(
                "access_key_id and secret_key go together: give both, or neither to use the "
                "environment's AWS credentials"
            )

    @property
    def prefix(self) -> str:
        """``key_prefix`` normalised: no leading "/", one trailing "/" unless empty."""
        p = self.key_prefix.strip("/")
        return f"{p}/" if p else ""

    def where(self) -> str:
        """Bucket and endpoint, for error messages."""
        return f"bucket {self.bucket!r} at {self.endpoint or 'the default AWS endpoint'}"
