"""With the listing cache off, the pages after a walk's first reuse the scan it made."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from angos_fs import metadata_store
from angos_fs.config import FsConfig
from angos_fs.metadata_store import _Snapshots, _uncached_page

from angos_core.config import parse_table
from angos_core.errors import ConfigError

SECS = 10.0


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The directories ``os.listdir`` scanned, in order; a fresh snapshot store."""
    scanned: list[str] = []
    real = os.listdir

    def listdir(path: str) -> list[str]:
        scanned.append(path)
        return real(path)

    monkeypatch.setattr(metadata_store, "_SNAPSHOTS", _Snapshots())
    monkeypatch.setattr(os, "listdir", listdir)
    yield scanned


def settled(directory: Path) -> None:
    old = time.time() - 10
    os.utime(directory, (old, old))


def make(directory: Path, names: list[str]) -> str:
    directory.mkdir(exist_ok=True)
    for name in names:
        (directory / name).mkdir()
    settled(directory)
    return str(directory)


def walk(path: str, n: int, secs: float = SECS, start: str | None = None) -> list[str]:
    walked: list[str] = []
    cursor = start
    while True:
        page = _uncached_page(path, cursor, n, secs)
        walked += page.names
        if not page.more:
            return walked
        cursor = page.names[-1]


NAMES = [f"t{i:04d}" for i in range(0, 500, 5)]


def test_a_walk_scans_the_directory_once(tmp_path: Path, scans: list[str]) -> None:
    path = make(tmp_path / "tags", [*NAMES, ".tmp-hidden"])
    assert walk(path, 7) == sorted(NAMES)
    assert scans == [path]


def test_with_zero_seconds_every_page_scans(tmp_path: Path, scans: list[str]) -> None:
    path = make(tmp_path / "tags", NAMES)
    assert walk(path, 10, secs=0) == sorted(NAMES)
    assert len(scans) == 10


def test_every_first_page_scans(tmp_path: Path, scans: list[str]) -> None:
    path = make(tmp_path / "tags", NAMES)
    assert walk(path, 10) == walk(path, 10) == sorted(NAMES)
    assert scans == [path, path]


def test_any_cursor_after_the_scans_is_cut_from_it(tmp_path: Path, scans: list[str]) -> None:
    path = make(tmp_path / "tags", NAMES)
    assert _uncached_page(path, NAMES[5], 10, SECS).names == NAMES[6:16]
    # Another walk, or a client that resumes further on: the same scan.
    assert _uncached_page(path, NAMES[40], 10, SECS).names == NAMES[41:51]
    assert _uncached_page(path, NAMES[94], 10, SECS).names == NAMES[95:]
    assert not _uncached_page(path, NAMES[94], 10, SECS).more
    assert _uncached_page(path, "t0042", 3, SECS).names == NAMES[9:12]
    assert len(scans) == 1
    # A cursor before the scan's: names the scan did not read. It scans, and keeps that.
    assert _uncached_page(path, NAMES[2], 10, SECS).names == NAMES[3:13]
    assert _uncached_page(path, NAMES[3], 10, SECS).names == NAMES[4:14]
    assert len(scans) == 2


def test_a_change_between_pages_is_seen(tmp_path: Path, scans: list[str]) -> None:
    tags = tmp_path / "tags"
    path = make(tags, NAMES)
    first = _uncached_page(path, None, 10, SECS)
    (tags / "t0046").mkdir()  # after the cursor: the next page must hold it
    (tags / NAMES[20]).rmdir()
    settled(tags)  # even with the mtime set back, the link count changed
    assert walk(path, 10, start=first.names[-1]) == sorted({*NAMES[10:], "t0046"} - {NAMES[20]})
    assert len(scans) == 2


def test_a_change_the_stamp_cannot_show_is_missed_until_the_scan_is_old(
    tmp_path: Path, scans: list[str]
) -> None:
    tags = tmp_path / "tags"
    path = make(tags, NAMES)
    stat = os.stat(path)
    first = _uncached_page(path, None, 10, SECS)
    (tags / NAMES[30]).rename(tags / "t0151")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # The stamp cannot tell: the scan is trusted until it is SECS old (the attribute cache
    # of a network filesystem hides changes the same way).
    assert NAMES[30] in walk(path, 10, start=first.names[-1])
    assert len(scans) == 1


def test_a_scan_is_not_used_after_its_seconds(
    tmp_path: Path, scans: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make(tmp_path / "tags", NAMES)
    first = _uncached_page(path, None, 10, SECS)
    second = _uncached_page(path, first.names[-1], 10, SECS)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + SECS + 1)
    third = _uncached_page(path, second.names[-1], 10, SECS)
    assert third.names == NAMES[20:30]
    assert len(scans) == 2


def test_a_directory_changed_just_now_is_not_kept(tmp_path: Path, scans: list[str]) -> None:
    # Its coarse mtime could still hide a change made in the same tick.
    tags = tmp_path / "tags"
    path = make(tags, NAMES)
    os.utime(tags)
    assert walk(path, 10) == NAMES
    assert len(scans) == 10


def test_a_missing_directory_is_empty(tmp_path: Path, scans: list[str]) -> None:
    page = _uncached_page(str(tmp_path / "none"), None, 10, SECS)
    assert page.names == [] and not page.more


def test_snapshots_are_bounded_in_entries_and_names(tmp_path: Path, scans: list[str]) -> None:
    paths = [make(tmp_path / f"d{i}", NAMES) for i in range(_Snapshots.MAX_ENTRIES + 1)]
    for path in paths:
        _uncached_page(path, None, 10, SECS)
    kept = metadata_store._SNAPSHOTS
    assert len(kept._entries) == _Snapshots.MAX_ENTRIES
    assert kept._names == sum(len(s.names) for s in kept._entries.values())
    # The oldest went first: its next page scans again.
    scans.clear()
    _uncached_page(paths[0], NAMES[9], 10, SECS)
    _uncached_page(paths[-1], NAMES[9], 10, SECS)
    assert scans == [paths[0]]


def test_a_small_scan_is_not_kept(tmp_path: Path, scans: list[str]) -> None:
    names = NAMES[: _Snapshots.MIN_NAMES - 1]
    path = make(tmp_path / "tags", names)
    assert walk(path, 10) == names
    assert len(scans) == 4


def test_negative_seconds_are_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_table(FsConfig, {"listing_snapshot_secs": -1}, "metadata_store.fs")
    (error,) = caught.value.errors
    assert error.key == "metadata_store.fs.listing_snapshot_secs"
    assert "must be 0 or more, got -1.0" in error.message
