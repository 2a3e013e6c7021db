"""The bounded request log and per-action outcome counters exposed under ``/_emulator/``."""

from __future__ import annotations

import itertools
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
    seq: int
    time: float  # unix seconds
    action: str
    params: dict[str, str]
    access_key_id: str | None
    http_status: int | None  # None when no response was sent (reset, hang, dropped start)
    code: str | None  # error Code, or "success"/"fail" (Data.Status) for 200s, None when nothing was decided
    fault: str | None
    request_id: str
    # Streamed answers only (big body, gzip bomb, trickle), filled in once the answer ended: body bytes written (on
    # the wire, so compressed for a bomb), seconds from the head to the end, and how it ended: "complete",
    # "client_gone" (the client closed or reset the connection), "cut" (trickle_max_seconds) or "stopped".
    sent_bytes: int | None = None
    answer_seconds: float | None = None
    answer_end: str | None = None

    @property
    def outcome(self) -> str:
        """The counter bucket: the injected fault if any ("fault:reset"), else the code."""
        if self.fault is not None:
            return f"fault:{self.fault}"
        return self.code or "unknown"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Thread-safe: appended from the server's loop, read by tests from other threads."""

    def __init__(self, maxlen: int) -> None:
        self._entries: deque[RequestRecord] = deque(maxlen=maxlen)
        self._counters: dict[str, Counter[str]] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def next_seq(self) -> int:
        with self._lock:
            return next(self._seq)

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._entries.append(record)
            # Counters are kept apart from the bounded deque so they stay exact after old entries fall off.
            self._counters.setdefault(record.action, Counter())[record.outcome] += 1

    def finish(self, seq: int, *, sent_bytes: int, answer_seconds: float, answer_end: str) -> None:
        """Record how a streamed answer ended on its entry (if it is still in the log); counters are unchanged.
        Searched from the newest: entries are appended when answered, so seq order is only roughly append order."""
        with self._lock:
            for index in range(len(self._entries) - 1, -1, -1):
                entry = self._entries[index]
                if entry.seq == seq:
                    self._entries[index] = replace(
                        entry, sent_bytes=sent_bytes, answer_seconds=answer_seconds, answer_end=answer_end
                    )
                    return

    def entries(self, *, action: str | None = None, since: int = 0) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._entries if r.seq > since and (action is None or r.action == action)]

    def counters(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {action: dict(counter) for action, counter in self._counters.items()}

    def clear(self) -> int:
        """Drop entries and counters (sequence numbers keep increasing); returns how many entries were dropped."""
        with self._lock:
            dropped = len(self._entries)
            self._entries.clear()
            self._counters.clear()
            return dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
