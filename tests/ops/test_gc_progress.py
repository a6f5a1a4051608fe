"""``angos gc`` shows its progress: periodic log lines on stderr when it is not a terminal,
through the helper scrub and prune share (angos_core/progress.py)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from angos_core.cli import main
from angos_core.progress import INTERVAL_ENV
from tests.ops.test_gc import push_image
from tests.support.storage import Storage


@pytest.mark.shapes("fs")
async def test_gc_logs_progress_lines_without_a_terminal(
    storage: Storage,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with storage.open_api() as api:
        await push_image(api, "a", "v1", b"kept")
        await push_image(api, "b", "v1", b"also kept")
        await api.push_blob("b", b"unreferenced")
    cfg = tmp_path / "config.toml"
    cfg.write_text(storage.toml())
    # Every step is due: a line per repository walked and per shard swept.
    monkeypatch.setenv(INTERVAL_ENV, "0")
    code = await asyncio.to_thread(main, ["gc", "-c", str(cfg), "--min-age-secs", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "untagged manifests, 1 blobs," in captured.out
    err = captured.err
    assert "gc: mark" in err
    assert "gc: 1/2 repositories walked" in err and "gc: 2/2 repositories walked" in err
    assert "gc: sweep" in err
    assert re.search(r"gc: 256/256 shards, (\d+)/\1 blobs swept, 1 deleted", err), err
    # No bar: stderr is not a terminal.
    assert "\r" not in err


@pytest.mark.shapes("fs")
def test_gc_progress_interval_must_be_a_number(
    storage: Storage,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(storage.toml())
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    assert main(["gc", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{INTERVAL_ENV}: must be a number of seconds, at least 0, got 'soon'" in err
