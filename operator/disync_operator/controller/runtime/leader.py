"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules.

Of the replicas, the one named in the Lease's `holderIdentity` reconciles; it renews `renewTime` every retry period
and gives up (the process stops reconciling and exits) if it could not renew for the renew deadline. A standby reads
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
            try:
                self._observe(await self.api.create_lease(self.namespace, body))
            except KubeError as error:
                if error.status == 409:  # another candidate created it first
                    return False
                raise
            return True
        spec = self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and self._clock() < self._observed_at + self._observed_duration:
            return False
        # (A record's renewTime from another node's clock is never compared with ours; only its changes are.)
        lease = {**lease, "spec": self._spec(spec)}
        try:
            self._observe(await self.api.update_lease(self.namespace, lease))
        except Conflict:
            return False
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
        """Renew the Lease every retry period; return when it could not be renewed for the renew deadline (the
        process must then stop reconciling at once: another may take over after the lease duration)."""
        renewed = self._clock()
        while True:
            await asyncio.sleep(self.retry_period)
            left = self.renew_deadline - (self._clock() - renewed)
            if left > 0 and await self._attempt(left):
                renewed = self._clock()
            elif self._clock() - renewed >= self.renew_deadline:
                log.error(
                    "leader election: the Lease %s/%s was not renewed for %.0fs; no longer leading",
                    self.namespace,
                    self.name,
                    self.renew_deadline,
                )
                self._set_leading(False)
                return

    async def release(self) -> None:
        """Clear the holder (and shorten the lease to 1 s), so that a standby takes over at its next look."""
        if not self.leading:
            return
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
