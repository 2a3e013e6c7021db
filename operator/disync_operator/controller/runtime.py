"""What every handler shares: settings, clients, policy knobs, metrics. Built once per operator process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import kopf

from disync_operator.controller.events import EventRecorder
from disync_operator.controller.kube import KubeClient
from disync_operator.controller.metrics import Metrics
from disync_operator.controller.policy import Backoff
from disync_operator.controller.requeue import Requeue
from disync_operator.controller.settings import OperatorSettings
from disync_operator.controller.workqueue import WorkQueue, older
from disync_operator.dataworks import (
    ClientOptions,
    CredentialsProvider,
    DataWorksClient,
    default_credentials_provider,
    resolve_endpoint,
)


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
    backoff: Backoff = field(init=False)
    _kube: KubeClient | None = field(init=False, default=None)
    _connected: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _clients: dict[str, DataWorksClient] = field(init=False, default_factory=dict)
    background: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    # UID -> the generation a handler of this process last saw: the sweep nudges only what kopf never delivered.
    seen: dict[str, int] = field(init=False, default_factory=dict)
    requeue: Requeue = field(init=False, default_factory=Requeue)
    events: EventRecorder = field(init=False)
    # UID -> failed StopDISyncInstance attempts of an object being deleted (for its backoff).
    stop_attempts: dict[str, int] = field(init=False, default_factory=dict)
    # UIDs whose deletion this process completed (finalizer released); dropped when their DELETED event comes.
    finalized: set[str] = field(init=False, default_factory=set)
    _locks: dict[str, tuple[asyncio.Lock, int]] = field(init=False, default_factory=dict)
    # UID -> our last write to the object (see `already_handled`).
    _written: dict[str, tuple[str, bool]] = field(init=False, default_factory=dict)
    # Objects waiting for a reconcile (every watch event and requeue goes through it).
    work: WorkQueue = field(init=False, default_factory=WorkQueue)
    kopf_settings: kopf.OperatorSettings = field(init=False, default_factory=kopf.OperatorSettings)

    def __post_init__(self) -> None:
        self.me = self.me or instance_identity(self.settings)
        self.events = EventRecorder(self.me)
        self.metrics.queued.set_function(lambda: len(self.work))
        s = self.settings
        self.backoff = Backoff(base=s.backoff_base, factor=s.backoff_factor, cap=s.backoff_cap)
        self._options = ClientOptions(
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            qps=s.qps,
            max_concurrency=s.max_concurrency,
            on_call=self.metrics.on_call,
        )

    @contextlib.asynccontextmanager
    async def exclusive(self, uid: str) -> AsyncIterator[None]:
        """One reconcile at a time per object: kopf's event, a requeue and the sweep may all arrive together."""
        lock, users = self._locks.get(uid) or (asyncio.Lock(), 0)
        self._locks[uid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[uid]
            if users <= 1:
                del self._locks[uid]  # nobody else waits: a Ready object keeps no lock
            else:
                self._locks[uid] = (lock, users - 1)

    def wrote(self, uid: str, resource_version: str | None, *, settled: bool) -> None:
        """Our write left the object at `resource_version`; `settled`: the reconcile that made it ran to its end."""
        if resource_version:
            self._written[uid] = (resource_version, settled)

    def already_handled(self, uid: str, resource_version: str | None, *, echo: bool) -> bool:
        """Has this process already acted on this version of the object?
        - older than our own last write: it predates our status (acting on it would only fail the intent's
          precondition), and the event of our write is still to come;
        - with `echo` (a watch event, before it is queued): our write's own event, if the reconcile that made it ran
          to its end. It left the object as it wanted, or asked for a requeue, which keeps that body and is never
          skipped. After a failure the object is reconciled again at once.
        The record stays until the object is gone: a body queued before our write may reach a worker after the
        write's own event (the work queue does not keep the watch's order), and must still be known as stale.
        """
        known = self._written.get(uid)
        if known is None or resource_version is None:
            return False
        written, settled = known
        if older(resource_version, written):
            return True
        return echo and settled and resource_version == written

    def forget(self, uid: str) -> bool:
        """The object is gone: drop everything this process kept about it. True if this process finalized it."""
        self.seen.pop(uid, None)
        self._written.pop(uid, None)
        self.requeue.cancel(uid)
        self.work.discard(uid)
        self.stop_attempts.pop(uid, None)
        finalized = uid in self.finalized
        self.finalized.discard(uid)
        return finalized

    def connected(self, info: kopf.ConnectionInfo) -> None:
        if self._kube is None:
            self._kube = KubeClient.from_connection(info)
            self._connected.set()

    async def kube(self) -> KubeClient:
        await self._connected.wait()
        assert self._kube is not None
        return self._kube

    def endpoint_for(self, region: str | None) -> str:
        s = self.settings
        if s.endpoint:
            return resolve_endpoint(None, override=s.endpoint)
        return resolve_endpoint(region or s.region, vpc=s.use_vpc_endpoint)

    def dataworks(self, region: str | None) -> DataWorksClient:
        """One pooled client per endpoint. The QPS limit and concurrency cap are per client, so with an endpoint
        override (every region goes to one place) all CRs share one budget."""
        endpoint = self.endpoint_for(region)
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients[endpoint] = DataWorksClient(
                endpoint, self.default_credentials, options=self._options
            )
        return client

    async def aclose(self) -> None:
        for task in self.background:
            task.cancel()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self._kube is not None:
            await self._kube.aclose()
