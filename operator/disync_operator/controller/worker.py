"""A worker's turn: run the reconcile a queued object needs, and turn what went wrong into when to look again.

The work queue (runtime/workqueue.py) guarantees no other reconcile of the object runs meanwhile.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from disync_operator import types as t
from disync_operator.controller import policy
from disync_operator.controller.context import Logger, object_key
from disync_operator.controller.credentials import CredentialsUnavailable
from disync_operator.controller.metrics import ReconcileResult
from disync_operator.controller.reconciler import Reconciler
from disync_operator.controller.runtime.kube import Conflict, KubeError
from disync_operator.controller.runtime.leader import NotLeading
from disync_operator.controller.runtime.process import Runtime
from disync_operator.controller.runtime.workqueue import Source, Work

OURS = frozenset({t.START_INTENT, t.STOP_INTENT})


def inputs(body: dict[str, Any]) -> tuple[object, ...]:
    """What of an object a reconcile acts on apart from its status, the intents it writes itself included."""
    meta = body.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in OURS}
    return meta.get("generation"), meta.get("deletionTimestamp"), annotations


async def reconcile(rt: Runtime, work: Work, logger: Logger) -> None:
    """Reconcile one queued object (the work queue guarantees no other reconcile of it runs meanwhile), and arrange
    the next look if it has to wait. Never raises: one object's surprise can't stop the workers."""
    started = time.monotonic()
    result = ReconcileResult.ERROR  # unless it says otherwise (a cancellation counts as one)
    try:
        result = await _reconcile(rt, work, logger)
    finally:
        rt.metrics.reconciled(work.source.value, result, time.monotonic() - started)


async def _reconcile(rt: Runtime, work: Work, logger: Logger) -> ReconcileResult:
    uid = sys.intern((work.body.get("metadata") or {}).get("uid") or "")  # one string per uid (owners.py)
    reconciler = Reconciler(rt, work.body, logger)
    reconciler.sweep_visit = work.source is Source.OBSERVE
    if work.source is Source.DELETED:
        reconciler.deleted(rt.forget(uid))
        rt.metrics.set_ready(object_key(work.body), None)
        rt.metrics.set_lifecycle(object_key(work.body), None)
        return ReconcileResult.SUCCESS
    lifecycle = policy.lifecycle(reconciler.spec, reconciler.annotations)
    rt.metrics.set_lifecycle(object_key(work.body), lifecycle.value if lifecycle else None)
    # The sweep's live-state visit starts nothing, except a terminal failure's retry once its credentials changed;
    # everything else that brings an object starts what needs starting.
    status, generation = reconciler.status, reconciler.generation
    starts = work.source is not Source.OBSERVE or status.failed_generation == generation
    settled = False
    result = ReconcileResult.ERROR
    try:
        delay = await reconciler.reconcile(starts=starts, observe=work.observe)
        settled = True
        result = ReconcileResult.SUCCESS if delay is None else ReconcileResult.REQUEUE_AFTER
    except NotLeading:
        # The Lease could not be confirmed mid-reconcile: nothing more was sent or written. If it is confirmed
        # again, this process looks again; if it is lost, the process ends and the next leader looks.
        delay = rt.leadership.retry_period if rt.leadership is not None else 1.0
        result = ReconcileResult.REQUEUE
    except Conflict:
        # The object changed since this body was read; its newer version is on its way as an event and will be
        # reconciled then. The requeue is the safety net should that event be lost.
        delay = 1.0
        result = ReconcileResult.REQUEUE
    except KubeError as error:
        # Gone (404): its DELETED event ends its handling; anything else is worth another look.
        delay = None if error.status == 404 else rt.backoff.recheck
        if delay is None:
            result = ReconcileResult.SUCCESS
        else:
            logger.warning("reconcile failed, retrying in %.0fs: %s", delay, error)
    except CredentialsUnavailable as error:
        delay = rt.backoff.recheck
        logger.warning("reconcile failed, retrying in %.0fs: %s", delay, error)
    except Exception:
        # A bug must not end the object's handling for good: log it, and come back later.
        delay = rt.backoff.recheck
        logger.exception("reconcile failed unexpectedly, retrying in %.0fs", delay)
    if reconciler.latest is not None and settled:
        # A status write has no precondition: it lands on whatever the object is by then. If someone changed what
        # reconciles act on meanwhile (a spec change, the pause annotation, a deletion), the version our write left
        # is theirs too, and neither their event (older than our write) nor ours (an echo) may be dropped as done.
        changed = inputs(reconciler.latest) != inputs(work.body)
        rt.work.wrote(uid, reconciler.resource_version, settled=not changed)
        if changed:
            rt.work.add(uid, reconciler.latest, Source.EVENT)
    if delay is not None:
        rt.requeue.schedule(uid, reconciler.latest or work.body, delay)
    elif starts:
        rt.requeue.cancel(uid)
    return result
