"""How long to wait: exponential backoff with jitter, and the clock every rule reads."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

# A reconcile that failed for a reason no backoff step describes (the API server refused a write, a bug) is looked at
# again after this long, or after the backoff's cap if that is shorter.
RECHECK_SECONDS = 60.0


def now() -> dt.datetime:
    """Milliseconds: leases and backoffs are measured in them (whole seconds would end a lease up to 1 s early)."""
    at = dt.datetime.now(dt.UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter and a cap: attempt n waits about base*factor^(n-1), never more than cap.

    "Equal jitter": half the delay is fixed, half random, so retries of many CRs spread out while each still waits
    at least half its step. A server's retry-after is a floor, even above the cap: the server knows best.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        step = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        spread = step * self.jitter
        value = step - spread + (rng or random).uniform(0, spread)
        return max(value, retry_after or 0.0)

    @property
    def recheck(self) -> float:
        """The wait after a failure that is not a DataWorks answer (see RECHECK_SECONDS)."""
        return min(RECHECK_SECONDS, self.cap)
