"""What every reconcile of one operator process shares: settings, clients, the queue, timers, metrics."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx
import kopf

from disync_operator.controller.identity import Identity, Login
from disync_operator.controller.metrics import Metrics
from disync_operator.controller.policy import Backoff
from disync_operator.controller.runtime.events import EventRecorder
from disync_operator.controller.runtime.first_seen import FirstSeen
from disync_operator.controller.runtime.health import Readiness
from disync_operator.controller.runtime.kube import KubeApi, KubeClient
from disync_operator.controller.runtime.leader import LeaderElection, NotLeading
from disync_operator.controller.runtime.owners import TaskOwners
from disync_operator.controller.runtime.requeue import Requeue
from disync_operator.controller.runtime.secrets import PassSecrets
from disync_operator.controller.runtime.workqueue import WorkQueue
from disync_operator.controller.settings import OperatorSettings
from disync_operator.controller.task import DataWorksTask
from disync_operator.dataworks import CredentialsProvider, default_credentials_provider


def instance_identity(settings: OperatorSettings) -> str:
    if settings.instance_id:
        return settings.instance_id
    # POD_NAME is set by the Deployment's downward API; a pid distinguishes restarts of the same pod.
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}/{os.getpid()}"


@dataclass
class Runtime:
    settings: OperatorSettings
    metrics: Metrics = field(default_factory=Metrics)
    default_credentials: CredentialsProvider = field(default_factory=default_credentials_provider)
    me: str = ""
    # How DataWorks calls travel; None: over the network (tests pass the emulator's in-process transport).
    dataworks_transport: httpx.AsyncBaseTransport | None = None
    dataworks: DataWorksTask = field(init=False)
    backoff: Backoff = field(init=False)
    # Who the operator is to the API server, kept current (kopf's login handler and the operator's own client).
    identity: Identity = field(default_factory=Identity)
    _kube: KubeApi | None = field(init=False, default=None)
    # The login last given to kopf: a second call of its login handler means that one failed.
    _kopf_login: Login | None = field(init=False, default=None)
    readiness: Readiness = field(init=False, default_factory=Readiness)
    # SIGTERM/SIGINT: the process hands over (stops reconciling, releases its Lease) and exits.
    shutdown: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    background: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    # UID -> the generation an event of this process last brought: the sweep nudges only what kopf never delivered.
    seen: dict[str, int] = field(init=False, default_factory=dict)
    requeue: Requeue = field(init=False, default_factory=Requeue)
    events: EventRecorder = field(init=False)
    # UIDs whose deletion this process completed (finalizer released); dropped when their DELETED event comes.
    finalized: set[str] = field(init=False, default_factory=set)
    # Which object manages each DataWorks task (one per task; see owners.py).
    owners: TaskOwners = field(init=False)
    # How many objects the sweep's last live-state pass visited (to spread the next one over the interval).
    observed_last_pass: int = field(init=False, default=0)
    # The Secrets the sweep's current pass has read (None between passes).
    pass_secrets: PassSecrets | None = field(init=False, default=None)
    # Objects waiting for a reconcile (every watch event, requeue and sweep visit goes through it).
    work: WorkQueue = field(init=False, default_factory=WorkQueue)
    kopf_settings: kopf.OperatorSettings = field(init=False, default_factory=kopf.OperatorSettings)
    # The Lease this process leads by (None: no leader election); every call and write of a reconcile asks it.
    leadership: LeaderElection | None = field(init=False, default=None)
    # When this process first saw each intent, on its monotonic clock: intents' leases never read another's clock.
    first_seen: FirstSeen = field(default_factory=FirstSeen)

    def __post_init__(self) -> None:
        self.me = self.me or instance_identity(self.settings)
        self.identity.reread_seconds = self.settings.token_reread_seconds
        self.events = EventRecorder(
            self.me, qps=self.settings.event_qps, burst=self.settings.event_burst, on_drop=self.metrics.event_dropped
        )
        self.metrics.follow(self.work)
        s = self.settings
        self.backoff = Backoff(base=s.backoff_base, factor=s.backoff_factor, cap=s.backoff_cap)
        self.dataworks = DataWorksTask(
            s,
            self.default_credentials,
            on_call=self.metrics.on_call,
            transport=self.dataworks_transport,
            before_call=self.check_leading,
        )
        self.owners = TaskOwners(self.task_key)

    def check_leading(self) -> None:
        """Raise NotLeading unless this process may call DataWorks and write now (see runtime/leader.py)."""
        if self.leadership is not None and not self.leadership.may_act():
            raise NotLeading("the Lease is not confirmed: no call and no write")

    def lead_by(self, election: LeaderElection) -> None:
        """Reconcile under `election`'s Lease: no reconcile is handed out while a renewal can't confirm it."""
        self.leadership = election
        election.on_confirmed = lambda confirmed: self.work.pause(not confirmed)

    def task_key(self, body: dict[str, Any]) -> str | None:
        spec = body.get("spec") or {}
        if spec.get("managementPolicy") == "ObserveOnly":
            return None
        return self.dataworks.task_address(spec.get("region"), spec.get("projectId"), spec.get("fileId"))

    def observed(self, body: dict[str, Any]) -> None:
        """A watch event brought this version of the object: keep the task index current, and look again at once at
        the objects whose task owner this may have changed."""
        for other in self.owners.update(body):
            self.requeue.hurry(other)

    def forget(self, uid: str) -> bool:
        """The object is gone: drop everything this process kept about it. True if this process finalized it."""
        for other in self.owners.remove(uid):
            self.requeue.hurry(other)
        self.seen.pop(uid, None)
        self.work.forget(uid)
        self.requeue.cancel(uid)
        finalized = uid in self.finalized
        self.finalized.discard(uid)
        return finalized

    async def kopf_login(self) -> kopf.ConnectionInfo:
        """kopf's login handler: the current login, or a fresh one if kopf already had it (its requests failed)."""
        self._kopf_login = await self.identity.refresh(self._kopf_login)
        return self._kopf_login.info

    def use_kube(self, kube: KubeApi) -> None:
        """The Kubernetes client every write goes through (tests pass an in-memory one)."""
        self._kube = kube

    async def kube(self) -> KubeApi:
        if self._kube is None:
            self._kube = KubeClient(
                self.identity, max_in_flight=self.settings.kube_connections, on_request=self.metrics.kube_request
            )
        return self._kube

    async def stop_reconciling(self, grace: float) -> bool:
        """Before a handover: no new reconcile; the ones in flight get up to `grace` s to end. True if they did."""
        self.readiness.role = "stopping"
        drained = await self.work.drain(grace)
        for task in self.background:
            task.cancel()
        return drained

    async def aclose(self) -> None:
        for task in self.background:
            task.cancel()
        await self.dataworks.aclose()
        if self._kube is not None:
            await self._kube.aclose()
