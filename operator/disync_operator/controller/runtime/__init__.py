"""The parts of the operator that stand in for kopf's own machinery, each for a measured reason (bench/, docs/).

kopf still logs in and watches; everything after the watch event is here:

- `workqueue` (kopf's per-object handler tasks; client-go's work queue). A task per object in a burst held most of
  the memory (528 -> 160 MiB at 10,000 CRs, bench P2). It is also the only per-object lock (an object is never
  reconciled by two workers) and keeps the record of our own writes (stale bodies and echoes are dropped). The
  sweep's live-state visits wait in a second line, so starts never queue behind a pass (bench P5).
- `requeue` (kopf's `TemporaryError(delay=)`; controller-runtime's `RequeueAfter`). kopf keeps retries in its
  annotations, a write per retry; here one timer task serves every waiting object, and a Ready one costs nothing.
- `events` (`kopf.event()`; client-go's EventRecorder). `kopf.event()` fails outside kopf's own tasks, which is
  where requeues and the sweep run; Events are posted off the reconcile path.
- `sweep` (a kopf timer per object; controller-runtime's resync period). A timer per object kept a task and a body
  each, about half the memory per CR; one paged LIST keeps memory flat.
- `kube` (the `kubernetes` package; client-go's REST client). Async, no blocking thread pool, 4 pooled connections:
  httpcore's pool scan cost a third of the operator's CPU at 32.
- `owners` (no kopf counterpart): which resource manages each DataWorks task, so two never act on one.
- `secrets` (an informer's cache, without list/watch RBAC on Secrets): the Secrets one sweep pass has read, each
  read once per pass.
- `leader` (kopf's peering; client-go's leaderelection): one process reconciles, and a reconcile in flight calls and
  writes only while the Lease is confirmed.
- `first_seen` (client-go's observedTime of a Lease record): ages timed from first sight on this process's own clock.
- `process` (kopf's memo; controller-runtime's Manager): what every reconcile of one process shares.
"""

from disync_operator.controller.runtime.events import EventRecorder
from disync_operator.controller.runtime.kube import Conflict, KubeApi, KubeClient, KubeError
from disync_operator.controller.runtime.process import Runtime
from disync_operator.controller.runtime.requeue import Requeue
from disync_operator.controller.runtime.sweep import sweep_forever, sweep_once
from disync_operator.controller.runtime.workqueue import Source, Work, WorkQueue

__all__ = [
    "Conflict",
    "EventRecorder",
    "KubeApi",
    "KubeClient",
    "KubeError",
    "Requeue",
    "Runtime",
    "Source",
    "Work",
    "WorkQueue",
    "sweep_forever",
    "sweep_once",
]
