"""The Ready and Synced conditions (metav1.Condition), as every outcome sets them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from disync_operator.types import Condition, ConditionStatus, DISyncInstanceStatus

from .reasons import READY, SYNCED, Reason

ConditionValue = tuple[ConditionStatus, Reason, str]  # status, reason, message


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    value: ConditionValue,
    generation: int,
    at: dt.datetime,
) -> list[Condition]:
    """Upsert one condition; lastTransitionTime moves only when status changes (metav1 convention)."""
    status, reason, message = value
    old = next((c for c in conditions if c.type == type_), None)
    # metav1 Condition times are whole seconds.
    since = old.last_transition_time if old is not None and old.status == status else at.replace(microsecond=0)
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        observed_generation=generation,
        last_transition_time=since,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, new], key=lambda c: (c.type != READY, c.type))


def conditions(
    status: DISyncInstanceStatus, generation: int, at: dt.datetime, ready: ConditionValue, synced: ConditionValue
) -> list[Condition]:
    both = set_condition(status.conditions, READY, ready, generation, at)
    return set_condition(both, SYNCED, synced, generation, at)
