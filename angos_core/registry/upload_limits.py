"""A bound on the upload sessions one client or one repository may hold open.

Without it one client can open hundreds of sessions a second and each stays in the blob
store until the purger takes it. ``[global] max_upload_sessions_per_repository`` and
``max_upload_sessions_per_client`` bound the sessions *this process* started that are still
counted; one more is refused with ``429 TOOMANYREQUESTS`` and a ``Retry-After`` saying when
the oldest counted one stops counting.

Counting costs no store call: a session is counted from its start until it is completed or
cancelled through this process, found gone here, or purged by this process's purger, and
at most ``[maintenance.upload_purging] empty_age_secs``: by then a session that never
received a byte is purged, and one that did is a real upload (or one finished through
another replica, which this process cannot see). So the bound is per process: with R
replicas of W workers, a client may hold up to R x W x the limit, and a session finished
elsewhere may count here for up to ``empty_age_secs``; the purger's
``angos_upload_sessions_open`` gauge is the store-wide count.
"""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from angos_core.errors import TooManyRequests


@dataclass(frozen=True, slots=True)
class _Counted:
    name: str
    client: str | None
    since: float


class UploadSessionLimits:
    def __init__(
        self,
        per_repository: int,
        per_client: int,
        window_secs: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_repository = per_repository
        self.per_client = per_client
        self.window_secs = window_secs
        self.clock = clock
        # Start order is expiry order: the oldest entries are at the front.
        self._sessions: OrderedDict[str, _Counted] = OrderedDict()
        self._by_name: Counter[str] = Counter()
        self._by_client: Counter[str] = Counter()

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def admit(self, upload_id: str, name: str, client: str | None) -> None:
        """Count a new session, or raise ``TooManyRequests`` if a limit is reached."""
        self._expire()
        if self.per_repository and self._by_name[name] >= self.per_repository:
            raise self._refusal(
                lambda c: c.name == name,
                f"repository {name} has {self._by_name[name]} upload sessions open "
                f"(limit {self.per_repository}): complete or cancel some",
                {"name": name, "limit": self.per_repository},
            )
        if client is not None and self.per_client and self._by_client[client] >= self.per_client:
            raise self._refusal(
                lambda c: c.client == client,
                f"this client has {self._by_client[client]} upload sessions open "
                f"(limit {self.per_client}): complete or cancel some",
                {"limit": self.per_client},
            )
        self._sessions[upload_id] = _Counted(name, client, self.clock())
        self._by_name[name] += 1
        if client is not None:
            self._by_client[client] += 1

    def release(self, upload_id: str) -> None:
        """The session ended (completed, cancelled, purged, gone). Idempotent."""
        counted = self._sessions.pop(upload_id, None)
        if counted is not None:
            self._uncount(counted)

    def _uncount(self, counted: _Counted) -> None:
        self._by_name[counted.name] -= 1
        if not self._by_name[counted.name]:
            del self._by_name[counted.name]
        if counted.client is not None:
            self._by_client[counted.client] -= 1
            if not self._by_client[counted.client]:
                del self._by_client[counted.client]

    def _expire(self) -> None:
        horizon = self.clock() - self.window_secs
        while self._sessions:
            upload_id, counted = next(iter(self._sessions.items()))
            if counted.since > horizon:
                return
            del self._sessions[upload_id]
            self._uncount(counted)

    def _refusal(
        self, match: Callable[[_Counted], bool], message: str, detail: dict[str, object]
    ) -> TooManyRequests:
        # When the oldest matching session stops counting, unless it ends sooner.
        oldest = next((c for c in self._sessions.values() if match(c)), None)
        retry = 1
        if oldest is not None:
            retry = max(1, math.ceil(oldest.since + self.window_secs - self.clock()))
        return TooManyRequests(message, detail=detail, retry_after_secs=retry)
