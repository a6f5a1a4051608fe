"""The [blob_store.s3] table: every setting, its units, its limits, and inheritance."""

from __future__ import annotations

import pytest
from angos_s3.config import S3Config

from angos_core.config import parse_config
from angos_core.errors import ConfigError
from angos_core.plugins import load_catalogue


def _parse(toml_tables: dict[str, object]) -> object:
    return parse_config(toml_tables, load_catalogue())


def test_every_setting_of_the_storage_document_parses_with_its_units() -> None:
    cfg = _parse(
        {
            "blob_store": {
                "s3": {
                    "access_key_id": "AKIA...",
                    "secret_key": "...",
                    "endpoint": "https://s3.amazonaws.com",
                    "bucket": "my-registry",
                    "region": "us-east-1",
                    "key_prefix": "blobs/",
                    "multipart_part_size": "50MiB",
                    "multipart_copy_threshold": "5GB",
                    "multipart_copy_chunk_size": "100MB",
                    "multipart_copy_jobs": 4,
                    "max_attempts": 3,
                    "operation_timeout_secs": 900,
                    "operation_attempt_timeout_secs": 300,
                    "listing_snapshot_secs": 5,
                }
            }
        }
    )
    s = cfg.blob_store.settings  # type: ignore[attr-defined]
    assert isinstance(s, S3Config)
    assert s.multipart_part_size == 50 * 1024 * 1024
    assert s.multipart_copy_threshold == 5 * 1000**3
    assert s.multipart_copy_chunk_size == 100 * 1000**2
    assert (s.multipart_copy_jobs, s.max_attempts) == (4, 3)
    assert (s.operation_timeout_secs, s.operation_attempt_timeout_secs) == (900.0, 300.0)
    assert s.prefix == "blobs/"
    assert s.listing_snapshot_secs == 5.0


def test_defaults_match_the_storage_document() -> None:
    s = S3Config(bucket="b")
    assert s.multipart_part_size == 50 * 1024 * 1024
    assert s.multipart_copy_threshold == 5 * 1000**3
    assert s.multipart_copy_chunk_size == 100 * 1000**2
    assert s.multipart_copy_jobs == 4
    assert s.max_attempts == 3
    assert s.operation_timeout_secs == 900
    assert s.operation_attempt_timeout_secs == 300
    assert s.listing_snapshot_secs == 10
    assert s.prefix == ""


def test_negative_listing_snapshot_secs_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"metadata_store\.s3.*listing_snapshot_secs must be 0"):
        _parse({"metadata_store": {"s3": {"bucket": "b", "listing_snapshot_secs": -1}}})


@pytest.mark.parametrize(
    ("given", "normalised"),
    [("", ""), ("/", ""), ("blobs", "blobs/"), ("blobs/", "blobs/"), ("/a/b/", "a/b/")],
)
def test_key_prefix_is_normalised(given: str, normalised: str) -> None:
    assert S3Config(bucket="b", key_prefix=given).prefix == normalised


def test_part_size_below_the_s3_minimum_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        _parse({"blob_store": {"s3": {"bucket": "b", "multipart_part_size": "4MiB"}}})
    assert "blob_store.s3" in str(info.value)
    assert "multipart_part_size" in str(info.value)
    # 5MB (SI) is below 5MiB: units mean what they say.
    with pytest.raises(ConfigError, match="multipart_part_size"):
        _parse({"blob_store": {"s3": {"bucket": "b", "multipart_part_size": "5MB"}}})
    ok = _parse({"blob_store": {"s3": {"bucket": "b", "multipart_part_size": "5MiB"}}})
    assert ok.blob_store.settings.multipart_part_size == 5 * 1024 * 1024  # type: ignore[attr-defined]


def test_unknown_key_and_missing_bucket_are_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"blob_store\.s3\.buckets"):
        _parse({"blob_store": {"s3": {"buckets": "b"}}})
    with pytest.raises(ConfigError, match=r"blob_store\.s3\.bucket"):
        _parse({"blob_store": {"s3": {"region": "eu-west-1"}}})


def test_metadata_store_inherits_the_blob_store_settings() -> None:
    cfg = _parse(
        {
            "blob_store": {"s3": {"bucket": "data", "endpoint": "http://minio:9000"}},
            "metadata_store": {"s3": {"key_prefix": "meta"}},
        }
    )
    meta = cfg.metadata_store.settings  # type: ignore[attr-defined]
    assert (meta.bucket, meta.endpoint, meta.prefix) == ("data", "http://minio:9000", "meta/")
