"""``[maintenance.gc]`` writes nothing while the server is read-only: the runs that fall due
are skipped (with a log line) and the schedule goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from angos_core.config import GcScheduleConfig
from angos_core.registry.gc import GcResult, collect_forever


async def test_runs_due_while_read_only_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="angos")
    finished: list[GcResult | None] = []
    read_only = [True]
    # Never touched while paused; a run fails on it, and is reported as failed.
    registry: Any = SimpleNamespace(stores=SimpleNamespace(meta=None, blobs=None))
    task = asyncio.create_task(
        collect_forever(
            registry,
            GcScheduleConfig(interval_secs=0.01),
            lambda result, secs: finished.append(result),
            paused=lambda: read_only[0],
        )
    )
    await asyncio.sleep(0.2)
    assert finished == []
    skipped = [r for r in caplog.records if "skipped, the registry is read-only" in r.message]
    assert len(skipped) >= 2
    read_only[0] = False  # off again: the next run is attempted (and fails on the fake)
    for _ in range(100):
        if finished:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert finished and finished[0] is None
