"""The reconcile policy, as pure functions: nothing here talks to Kubernetes or DataWorks.

- `backoff`: how long to wait (exponential backoff with jitter; the clock);
- `start`:   the exactly-once rules (the start decision, the start intent, what deletion does);
- `status`:  what each outcome writes into status (typed `StatusUpdate`s), with `conditions` (Ready, Synced);
- `observe`: what a read of the live state changes, and when it is drift;
- `reasons`: condition reasons, and the reason each DataWorks error gives.

The reconciler feeds them facts and applies what they return, so the rules that matter (never two starts per
generation, when to retry, what each condition says) live in one place and are tested without a cluster.
"""

from .backoff import Backoff, now
from .conditions import set_condition
from .observe import Observation, live_condition, observed
from .reasons import READY, SYNCED, TERMINAL_REASONS, EventReason, Reason, error_reason, error_summary
from .start import (
    RUNNING_STATES,
    STARTED_STATES,
    Action,
    IntentOnObject,
    StartDecision,
    StopAction,
    TaskClaim,
    decide_start,
    decide_stop,
    failed_for_good,
    needs_finalizer,
    new_intent,
    orphaned_on_delete,
    read_intent,
    start_may_have_happened,
    start_took_effect,
    started_by_us,
    still_stopping,
    task_owner,
    unanswered,
)
from .status import (
    after_sending,
    answer,
    conflict,
    failed_terminally,
    intent_rejected,
    invalid_spec,
    retry_scheduled,
    started,
    stop_failed,
)

__all__ = [
    "READY",
    "RUNNING_STATES",
    "STARTED_STATES",
    "SYNCED",
    "TERMINAL_REASONS",
    "Action",
    "Backoff",
    "EventReason",
    "IntentOnObject",
    "Observation",
    "Reason",
    "StartDecision",
    "StopAction",
    "TaskClaim",
    "after_sending",
    "answer",
    "conflict",
    "decide_start",
    "decide_stop",
    "error_reason",
    "error_summary",
    "failed_for_good",
    "failed_terminally",
    "intent_rejected",
    "invalid_spec",
    "live_condition",
    "needs_finalizer",
    "new_intent",
    "now",
    "observed",
    "orphaned_on_delete",
    "read_intent",
    "retry_scheduled",
    "set_condition",
    "start_may_have_happened",
    "start_took_effect",
    "started",
    "started_by_us",
    "still_stopping",
    "stop_failed",
    "task_owner",
    "unanswered",
]
