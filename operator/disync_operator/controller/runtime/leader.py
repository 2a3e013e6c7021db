"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules.

Of the replicas, the one named in the Lease's `holderIdentity` reconciles; it renews `renewTime` every retry period.
It gives up (the process stops reconciling and exits) at once when a renewal finds the Lease held by another or gone
(deleted by hand, or pruned by a GitOps tool: a standby may already have created it anew), and when it could not
renew for the renew deadline. Between a failed renewal and the next good one it hands out no reconcile, and every
call and write of a reconcile in flight first asks `may_act()`: yes only while the last renewal's request left less
than the renew deadline ago, on this process's monotonic clock (which also runs while the process is stopped, so a
leader frozen past its lease and thawed makes no call and no write). A standby reads
the Lease twice per retry period (one small GET a second) and takes it over when it is released (empty holder) or
when its record has not changed for its `leaseDurationSeconds` as measured on the standby's own clock (so clock skew
between nodes does not matter). Every write is an update with the resourceVersion read: of two candidates, one wins
and the other gets 409. On SIGTERM the leader clears the holder, so the next one takes over at its next look instead
of a lease duration later.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from disync_operator.controller.runtime.kube import Conflict, KubeError

log = logging.getLogger(__name__)

EXPIRY_SLACK = 0.01  # a look just after the holder's lease runs out, not just before


class LeaseApi(Protocol):
    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]: ...

    async def update_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]: ...


def micro_time(at: dt.datetime) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds, in UTC."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NotLeading(Exception):
    """This process can't confirm it holds the Lease: a reconcile in flight makes no call and no write from here."""


class LeaderElection:
    def __init__(
        self,
        api: LeaseApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        on_change: Callable[[bool], None] = lambda leading: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self._on_change = on_change
        self._clock = clock
        # The last Lease record seen and when (on our clock) it was first seen as it is.
        self._observed: tuple[str, str, str] | None = None
        self._observed_at = 0.0
        self._observed_duration = lease_duration
        self.holder: str | None = None  # who leads, as last seen
        self.leading = False
        self.reachable = False  # a look at the Lease has succeeded (readiness)
        # When the request of the last good renewal left (our monotonic clock): no other candidate can take over
        # before a lease duration after that, on any clock that runs at about our rate.
        self._renewed_at: float | None = None
        # A release: when, and for how long reconciles in flight may still finish (release()).
        self._released: tuple[float, float] | None = None
        # Called with False when a renewal fails (hand out no reconcile), True when one succeeds again.
        self.on_confirmed: Callable[[bool], None] = lambda confirmed: None

    def _observe(self, lease: dict[str, Any]) -> dict[str, Any]:
        spec: dict[str, Any] = lease.get("spec") or {}
        record = (spec.get("holderIdentity") or "", spec.get("renewTime") or "", str(spec.get("leaseTransitions")))
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
            self._observed_duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        self.holder = record[0] or None
        self.reachable = True
        return spec

    def _spec(self, previous: dict[str, Any]) -> dict[str, Any]:
        now = micro_time(dt.datetime.now(dt.UTC))
        taking_over = previous.get("holderIdentity") != self.identity
        return {
            **previous,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "renewTime": now,
            "acquireTime": now if taking_over else previous.get("acquireTime", now),
            "leaseTransitions": int(previous.get("leaseTransitions") or 0) + (1 if taking_over and previous else 0),
        }

    def may_act(self) -> bool:
        """Whether a reconcile may call DataWorks or write now: leading, and the last renewal (or acquisition) left
        less than the renew deadline ago; or within the grace of a release."""
        if self._released is not None:
            released_at, grace = self._released
            return self._clock() - released_at < grace
        renewed = self._renewed_at
        return self.leading and renewed is not None and self._clock() - renewed < self.renew_deadline

    async def renew(self) -> bool:
        """One renewal by the holder: True if renewed; False if it could not be confirmed (an error, a conflict).
        Raises NotLeading when the Lease is gone or names another holder: then another may already lead."""
        sent = self._clock()
        lease = await self.api.get_lease(self.namespace, self.name)
        if lease is None:
            self.holder = None
            raise NotLeading(f"the Lease {self.namespace}/{self.name} is gone")
        spec = self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        if holder != self.identity:
            raise NotLeading(f"the Lease {self.namespace}/{self.name} names {holder or 'no one'}")
        try:
            self._observe(await self.api.update_lease(self.namespace, {**lease, "spec": self._spec(spec)}))
        except Conflict:
            return False  # changed since our read: the next look tells by whom
        self._renewed_at = sent
        return True

    async def try_acquire_or_renew(self) -> bool:
        """One attempt: True if this process holds the Lease afterwards."""
        lease = await self.api.get_lease(self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec({}),
            }
            sent = self._clock()
            try:
                self._observe(await self.api.create_lease(self.namespace, body))
            except KubeError as error:
                if error.status == 409:  # another candidate created it first
                    return False
                raise
            self._renewed_at = sent
            return True
        spec = self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and self._clock() < self._observed_at + self._observed_duration:
            return False
        # (A record's renewTime from another node's clock is never compared with ours; only its changes are.)
        lease = {**lease, "spec": self._spec(spec)}
        sent = self._clock()
        try:
            self._observe(await self.api.update_lease(self.namespace, lease))
        except Conflict:
            return False
        self._renewed_at = sent
        return True

    async def _attempt(self, within: float) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), within)
        except (KubeError, httpx.HTTPError, TimeoutError) as error:
            where = f"{self.namespace}/{self.name}"
            log.warning("leader election: the Lease %s could not be read or written: %s", where, error)
            return False

    def _set_leading(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            self._on_change(leading)

    def _next_look(self) -> float:
        """A standby looks twice per retry period (a released Lease is taken within about a second of the leader's
        SIGTERM), and right when the holder's lease runs out on its clock (a dead leader is replaced within the lease
        duration plus one look, not plus a whole retry period)."""
        look = self.retry_period / 2
        if self.holder:
            expiry = self._observed_at + self._observed_duration - self._clock()
            look = min(look, max(0.0, expiry) + EXPIRY_SLACK)
        return look

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait as a standby until this process holds the Lease (True), or until `stop` (False)."""
        announced: str | None = None
        while not stop.is_set():
            if await self._attempt(self.retry_period * 2):
                log.info("leader election: leading (Lease %s/%s)", self.namespace, self.name)
                self._set_leading(True)
                return True
            if self.holder != announced:
                announced = self.holder
                log.info("leader election: standing by; %s leads", self.holder or "no one")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._next_look())
        return False

    async def hold(self) -> None:
        """Renew the Lease every retry period; return when this process no longer leads (the process must then stop
        reconciling at once): at the first renewal that finds the Lease gone or another holder, or when it could not
        be renewed for the renew deadline. A failed renewal pauses the handing out of reconciles until one succeeds."""
        renewed = self._clock()
        confirmed = True
        while True:
            await asyncio.sleep(self.retry_period if confirmed else min(self.retry_period, 0.5))
            left = self.renew_deadline - (self._clock() - renewed)
            try:
                ok = left > 0 and await asyncio.wait_for(self.renew(), left)
            except NotLeading as lost:
                log.error("leader election: %s; no longer leading", lost)
                self._set_leading(False)
                return
            except (KubeError, httpx.HTTPError, TimeoutError) as error:
                log.warning(
                    "leader election: the Lease %s/%s could not be renewed: %s", self.namespace, self.name, error
                )
                ok = False
            if ok:
                renewed = self._clock()
            if ok != confirmed:
                confirmed = ok
                self.on_confirmed(ok)
            if not ok and self._clock() - renewed >= self.renew_deadline:
                log.error(
                    "leader election: the Lease %s/%s was not renewed for %.0fs; no longer leading",
                    self.namespace,
                    self.name,
                    self.renew_deadline,
                )
                self._set_leading(False)
                return

    async def release(self, grace: float = 0.0) -> None:
        """Clear the holder (and shorten the lease to 1 s), so that a standby takes over at its next look. The
        reconciles in flight (no new one is handed out by then) may still finish for `grace` s: what they record is
        the outcome of calls whose intents make the next leader wait a start lease before acting on them."""
        if not self.leading:
            return
        self._released = (self._clock(), grace)
        self._set_leading(False)
        try:
            lease = await asyncio.wait_for(self.api.get_lease(self.namespace, self.name), self.retry_period)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            now = micro_time(dt.datetime.now(dt.UTC))
            spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now}
            await asyncio.wait_for(self.api.update_lease(self.namespace, {**lease, "spec": spec}), self.retry_period)
            log.info("leader election: released the Lease %s/%s", self.namespace, self.name)
        except (KubeError, httpx.HTTPError, TimeoutError) as error:
            log.warning("leader election: releasing the Lease failed (it expires by itself): %s", error)
