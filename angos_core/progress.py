"""Progress of a long maintenance run (``angos scrub``, ``prune``, ``gc``): a tqdm bar on a
terminal, a log line now and then otherwise.

A terminal wants a live bar; a job runner's log (cron, a Kubernetes Job) wants one plain
line every so often, through the run's logger so it takes the configured format. The
interval is the caller's, unless ``ANGOS_PROGRESS_INTERVAL_SECS`` is set: the operator's
say on how chatty a log is wins over a command's default.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from angos_core.errors import ConfigError

if TYPE_CHECKING:
    from tqdm import tqdm

#: Overrides every command's interval between two progress lines (seconds, at least 0).
INTERVAL_ENV = "ANGOS_PROGRESS_INTERVAL_SECS"

#: Seconds between two progress lines when the stream is not a terminal.
DEFAULT_INTERVAL_SECS = 10.0

#: A step's text, or how to make it: only called when it is shown.
Text = str | Callable[[], str]


def interval_secs(default: float) -> float:
    """The interval between two progress lines: ``ANGOS_PROGRESS_INTERVAL_SECS`` if set."""
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also rejects nan
        raise ConfigError(INTERVAL_ENV, f"must be a number of seconds, at least 0, got {raw!r}")
    return value


class Progress:
    """Phases of a run, each with optional total, shown as ``<label>: <phase>``."""

    def __init__(
        self,
        label: str,
        stream: IO[str] | None,
        logger: logging.Logger,
        *,
        interval: float = DEFAULT_INTERVAL_SECS,
    ) -> None:
        self.label = label
        self.stream = stream
        self.log = logger
        self.interval = interval_secs(interval)
        self.tty = stream is not None and stream.isatty()
        self.bar: tqdm[Any] | None = None
        self.last_log = time.monotonic()

    def phase(
        self, text: str, *, total: int | None = None, unit: str = "it", unit_scale: bool = False
    ) -> None:
        """Start a phase: a new bar on a terminal, else a log line."""
        self.close()
        if not self.tty:
            self.log.info("%s: %s", self.label, text)
            return
        # Only a terminal gets a bar: a server's scheduled gc and prune (which log) never
        # import tqdm.
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            desc=f"{self.label}: {text}",
            unit=unit,
            unit_scale=unit_scale,
            file=self.stream,
            leave=False,
        )

    def update(self, n: int = 1, text: Text | None = None) -> None:
        """``n`` more units done; ``text`` says where the phase is (the bar's postfix, or
        the periodic log line)."""
        if self.bar is not None:
            self.bar.update(n)
            if text is not None:
                self.bar.set_postfix_str(text if isinstance(text, str) else text(), refresh=False)
            return
        if text is None or self.tty:
            return
        now = time.monotonic()
        if now - self.last_log >= self.interval:
            self.last_log = now
            self.log.info("%s: %s", self.label, text if isinstance(text, str) else text())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
