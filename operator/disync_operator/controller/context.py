"""One reconcile's view of its object: the facts it reads (spec, status, start intent, credentials, the task's owner)
and the writes it makes (status updates, the metadata write, Events). The decisions are in reconciler.py."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import ValidationError

from disync_operator import types as t
from disync_operator.controller import policy
from disync_operator.controller.credentials import OPERATOR_DEFAULT, ResolvedCredentials, resolve
from disync_operator.controller.metrics import CONTROLLER
from disync_operator.controller.runtime.process import Runtime

_REASONS = frozenset(reason.value for reason in policy.Reason)

Logger = logging.Logger | logging.LoggerAdapter[Any]


def parse_status(body: dict[str, Any]) -> tuple[t.DISyncInstanceStatus, bool]:
    """The status, and whether it was unreadable. Status is ours, but a human may have edited it: start from a clean
    slate rather than crash-loop, and (the caller) verify the live state before any start, since the record of what
    was started is what got lost."""
    try:
        return t.DISyncInstanceStatus.model_validate(dict(body.get("status") or {})), False
    except (ValidationError, ValueError, TypeError, RecursionError):
        return t.DISyncInstanceStatus(), True


def parse_spec(body: dict[str, Any]) -> tuple[t.DISyncInstanceSpec | None, str]:
    """The parsed spec, or None and what is wrong with it (the API server can't check startParamJSON)."""
    try:
        return t.DISyncInstanceSpec.model_validate(dict(body.get("spec") or {})), ""
    except ValidationError as error:
        return None, "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
        )
    except (ValueError, TypeError, RecursionError):
        # Not what the CRD's schema admits (an object written under an older CRD, say): InvalidSpec, not a crash.
        return None, "spec: not a DISyncInstance spec this operator can read"


def object_key(body: dict[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


class ObjectContext:
    """What one reconcile of one object knows (from one body) and how it writes: the facts the policy is asked
    about, and the object's status, metadata and Events."""

    def __init__(self, rt: Runtime, body: dict[str, Any], logger: Logger) -> None:
        self.rt = rt
        self.body = body
        self.logger = logger
        meta = body.get("metadata") or {}
        self.namespace: str = meta.get("namespace") or ""
        self.name: str = meta.get("name") or ""
        self.uid: str = meta.get("uid") or ""
        self.generation = int(meta.get("generation") or 0)
        self.finalizers: list[str] = list(meta.get("finalizers") or [])
        self.annotations: dict[str, str] = dict(meta.get("annotations") or {})
        self.deleting = bool(meta.get("deletionTimestamp"))
        self.status, self.status_unreadable = parse_status(body)
        self.spec, self.spec_problem = parse_spec(body)
        if self.spec is not None:
            region_problem = rt.dataworks.region_problem(self.spec)
            if region_problem is not None:
                self.spec, self.spec_problem = None, region_problem
        self.resource_version: str | None = meta.get("resourceVersion")
        self.latest: dict[str, Any] | None = None  # the object as our last write left it
        # The start intent on the object that the next status write answers (policy.answer).
        self.answering: t.StartIntent | None = None
        self._credentials: ResolvedCredentials | None = None
        self.sweep_visit = False  # the sweep's live-state visit: Secrets come from the pass's reads

    # -- facts ----------------------------------------------------------------------------------------------------

    def read_intent(self) -> policy.IntentOnObject[t.StartIntent]:
        raw = self.annotations.get(t.START_INTENT)
        read = policy.read_intent(raw, t.StartIntent)
        if read.unreadable:
            self.logger.warning("the %s annotation is %s: ignored, and verified first", t.START_INTENT, read.unreadable)
        return read

    @property
    def lease(self) -> policy.IntentLease:
        """Intents' leases, on this process's clock (from when it first saw each intent)."""
        first_seen = self.rt.first_seen
        return policy.IntentLease(
            self.rt.settings.start_lease_seconds, lambda intent: first_seen.age(policy.intent_key(intent))
        )

    def intent_on_object(self) -> t.StartIntent | None:
        return self.read_intent().intent

    def stop_intent_on_object(self) -> t.StopIntent | None:
        """A suspend's stop intent. An unreadable one is ignored: a stop is verified only where it could matter (a
        stop of ours with no known outcome); a stop sent again by mistake would stop a task that must be stopped."""
        raw = self.annotations.get(t.STOP_INTENT)
        read = policy.read_intent(raw, t.StopIntent)
        if read.unreadable:
            self.logger.warning("the %s annotation is %s: ignored", t.STOP_INTENT, read.unreadable)
        return read.intent

    async def credentials(self, spec: t.DISyncInstanceSpec) -> ResolvedCredentials:
        """Resolved once per reconcile. The operator's own identity can only change with a restart (new env, RAM
        policy fixed): its version includes this process, so a terminal failure with it is retried after one."""
        if self._credentials is None:
            default_version = f"{OPERATOR_DEFAULT}:{self.rt.me}"
            self._credentials = await resolve(
                spec,
                self.namespace,
                await self.rt.kube(),
                self.rt.default_credentials,
                default_version,
                operator_identity_allowed=self.rt.settings.may_use_operator_identity(self.namespace),
                read_secret=self.rt.pass_secrets.get if self.sweep_visit and self.rt.pass_secrets else None,
            )
        return self._credentials

    # -- writes ---------------------------------------------------------------------------------------------------

    async def write(self, update: t.StatusUpdate) -> None:
        self.rt.check_leading()
        if self.answering is not None:
            update = policy.answer(update, self.status, self.answering)
            self.answering = None
        if self.status.legacy_pending_start is not None:
            update = update.merged(t.StatusUpdate(legacy_pending_start=None))  # moved to unverifiedIntent
        updated = await (await self.rt.kube()).patch_status(self.namespace, self.name, update)
        self.wrote(updated)
        if update.failed_generation is not None:
            self.rt.metrics.terminal_errors.labels(CONTROLLER).inc()
        self.status, _ = parse_status(updated)
        ready = self.status.condition(policy.READY)
        if ready is None:
            self.rt.metrics.set_ready(object_key(self.body), "Unknown")
        else:
            # Only the operator's own reasons become label values: a hand-edited status can't add series.
            reason = ready.reason if ready.reason in _REASONS else "Other"
            self.rt.metrics.set_ready(object_key(self.body), ready.status, reason)

    async def patch_metadata(
        self, *, finalizers: list[str] | None = None, annotations: dict[str, str] | None = None
    ) -> None:
        self.rt.check_leading()
        updated = await (await self.rt.kube()).patch_metadata(
            self.namespace,
            self.name,
            resource_version=self.resource_version,
            finalizers=finalizers,
            annotations=annotations,
        )
        self.wrote(updated)

    def wrote(self, updated: dict[str, Any]) -> None:
        self.latest = updated
        self.resource_version = updated.get("metadata", {}).get("resourceVersion")
        # At once, not when the reconcile ends: a body queued meanwhile is stale from now on.
        self.rt.work.wrote(self.uid, self.resource_version, settled=False)

    def event(
        self, type_: Literal["Normal", "Warning"], reason: policy.Reason | policy.EventReason, message: str
    ) -> None:
        if self.rt.leadership is None or self.rt.leadership.may_act():
            self.rt.events.record(self.body, type_, reason, message)

    def other_owner(self) -> policy.TaskClaim | None:
        """The other resource that manages this one's DataWorks task, if it is not this one."""
        owner = self.rt.owners.owner_of(self.uid)
        return owner if owner is not None and owner.uid != self.uid else None
