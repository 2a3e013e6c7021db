"""One DISyncInstance's reconcile: gather the facts, ask `policy`, apply what it says.

Level-triggered, like Crossplane's managed reconciler: the object's own status says what has been done, so no event
is special, and a watch event, a requeue and a sweep visit all run the same code:
- marked for deletion           -> `finalize`: StopDISyncInstance if policy says so, then release our finalizer;
- a generation not started yet  -> `start`: exactly once (policy.decide_start and the start intent);
- a sweep visit (`observe`)     -> `follow`: the live state of a started task.
Kubernetes is reached through `Runtime.kube()`, DataWorks through `Runtime.dataworks` (task.py), never directly.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import ValidationError

from disync_operator import types as t
from disync_operator.controller import policy
from disync_operator.controller.credentials import (
    OPERATOR_DEFAULT,
    CredentialsUnavailable,
    ResolvedCredentials,
    resolve,
)
from disync_operator.controller.runtime.kube import KubeError
from disync_operator.controller.runtime.process import Runtime
from disync_operator.dataworks import DataWorksError, OperationFailedError

Logger = logging.Logger | logging.LoggerAdapter[Any]


def parse_status(body: dict[str, Any]) -> t.DISyncInstanceStatus:
    try:
        return t.DISyncInstanceStatus.model_validate(dict(body.get("status") or {}))
    except ValidationError:
        # Status is ours, but a human may have edited it: start from a clean slate rather than crash-loop.
        return t.DISyncInstanceStatus()


def parse_spec(body: dict[str, Any]) -> tuple[t.DISyncInstanceSpec | None, str]:
    """The parsed spec, or None and what is wrong with it (the API server can't check startParamJSON)."""
    try:
        return t.DISyncInstanceSpec.model_validate(dict(body.get("spec") or {})), ""
    except ValidationError as error:
        return None, "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
        )


def object_key(body: dict[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


class Reconciler:
    """One reconcile of one object, from one body."""

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
        self.deleting = bool(meta.get("deletionTimestamp"))
        self.status = parse_status(body)
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

    # -- facts ----------------------------------------------------------------------------------------------------

    def read_intent(self) -> policy.IntentOnObject:
        raw = ((self.body.get("metadata") or {}).get("annotations") or {}).get(t.START_INTENT)
        read = policy.read_intent(raw, policy.now(), self.rt.settings.start_lease_seconds)
        if read.unreadable:
            self.logger.warning("the %s annotation is %s: ignored, and verified first", t.START_INTENT, read.unreadable)
        return read

    def intent_on_object(self) -> t.StartIntent | None:
        return self.read_intent().intent

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
            )
        return self._credentials

    # -- writes ---------------------------------------------------------------------------------------------------

    async def write(self, update: t.StatusUpdate) -> None:
        if self.answering is not None:
            update = policy.answer(update, self.status, self.answering)
            self.answering = None
        if self.status.legacy_pending_start is not None:
            update = update.merged(t.StatusUpdate(legacy_pending_start=None))  # moved to unverifiedIntent
        updated = await (await self.rt.kube()).patch_status(self.namespace, self.name, update)
        self.wrote(updated)
        self.status = parse_status(updated)
        ready = self.status.condition(policy.READY)
        self.rt.metrics.set_ready(object_key(self.body), ready.status if ready else "Unknown")

    async def patch_metadata(
        self, *, finalizers: list[str] | None = None, annotations: dict[str, str] | None = None
    ) -> None:
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
        self.rt.events.record(self.body, type_, reason, message)

    # -- start ----------------------------------------------------------------------------------------------------

    async def start(self) -> float | None:
        """Start the current generation if policy says so; returns when to look again (seconds), or None."""
        at = policy.now()
        spec = self.spec
        if spec is None:
            if self.status.failed_generation != self.generation:
                await self.write(policy.invalid_spec(self.status, self.generation, self.spec_problem, at))
                self.event("Warning", policy.Reason.INVALID_SPEC, self.spec_problem)
            return None
        owner = self.other_owner()
        if owner is not None:
            return await self.conflict(owner)
        try:
            creds = await self.credentials(spec)
        except CredentialsUnavailable as error:
            if policy.failed_for_good(self.status, self.generation, error.version):
                return None
            await self.write(policy.failed_terminally(self.status, self.generation, error, error.version, at))
            self.event("Warning", policy.Reason.CREDENTIALS_UNAVAILABLE, str(error))
            return None

        read = self.read_intent()
        intent = read.intent
        decision = policy.decide_start(
            generation=self.generation,
            status=self.status,
            credentials_version=creds.version,
            lease_seconds=self.rt.settings.start_lease_seconds,
            at=at,
            intent=intent,
            unreadable_intent=read.unreadable is not None,
            handed_over=self.uid in self.rt.owners.handed_over,
        )
        self.logger.debug("start decision: %s %s", decision.action, decision.why)
        if decision.action is policy.Action.NOTHING:
            return None
        if decision.action is policy.Action.WAIT:
            return max(0.1, decision.wait_seconds)

        if intent is not None and policy.unanswered(self.status, intent) is intent:
            # An intent on the object that no status write has answered (its process stopped before it could): what
            # is written next answers it.
            self.status = self.status.model_copy(update={"unverified_intent": intent})
            self.answering = intent
        if decision.action is policy.Action.VERIFY:
            try:
                info = await self.rt.dataworks.observe(spec, creds.provider)
            except DataWorksError as error:
                # A failed verification is a failed attempt too: it must back off like one.
                return await self.start_failed(error, creds, keep_unverified=True, count_attempt=True)
            if policy.still_stopping(spec.task_type, info):
                return self.rt.backoff.delay(1)  # e.g. its previous resource's stop: started once it has stopped
            self.rt.owners.handed_over.discard(self.uid)
            if policy.start_took_effect(spec.task_type, info):
                state = info.data.status
                await self.write(
                    policy.started(self.status, self.generation, None, creds.version, at, verified_state=state)
                )
                self.logger.info("generation %s was already started (live state %s)", self.generation, state)
                return None

        # The intent goes on the object when the rate limit lets the call go, before the request leaves.
        try:
            outcome = await self.rt.dataworks.start(spec, creds.provider, write_intent=lambda: self.write_intent(spec))
        except KubeError as error:
            if error.status != 422:
                raise
            # The API server refused the intent (e.g. annotations at their 256 KiB limit): nothing was sent.
            return await self.intent_rejected(error)
        if outcome.intent is not None:
            self.status = policy.after_sending(self.status, self.generation, outcome.intent)
            self.answering = outcome.intent
        if outcome.error is not None:
            may_have_started = policy.start_may_have_happened(outcome.error)
            return await self.start_failed(outcome.error, creds, keep_unverified=may_have_started)
        assert outcome.response is not None
        request_id = outcome.response.request_id
        await self.write(policy.started(self.status, self.generation, outcome.response, creds.version, policy.now()))
        self.logger.info(
            "started generation %s (RequestId %s)", self.generation, request_id, extra={"request_id": request_id}
        )
        self.event("Normal", policy.EventReason.STARTED, f"StartDISyncInstance succeeded (RequestId {request_id})")
        return None

    def other_owner(self) -> policy.TaskClaim | None:
        """The other resource that manages this one's DataWorks task, if it is not this one."""
        owner = self.rt.owners.owner_of(self.uid)
        return owner if owner is not None and owner.uid != self.uid else None

    async def conflict(self, owner: policy.TaskClaim) -> float:
        """Another resource manages this task: call nothing, say who. Looked at again every minute, and at once
        when the owner goes or moves to another task (Runtime.observed)."""
        update = policy.conflict(self.status, self.generation, owner.name, policy.now())
        if update is not None:
            await self.write(update)
            self.event("Warning", policy.Reason.CONFLICT, f"the DataWorks task is managed by {owner.name}")
        return self.rt.backoff.recheck

    async def write_intent(self, spec: t.DISyncInstanceSpec) -> t.StartIntent:
        """One metadata write carries the start intent and, where deletion must stop the task, our finalizer (on
        the object before the task may run). Its resourceVersion precondition lets only one process write it."""
        intent = policy.new_intent(self.generation, self.rt.me, policy.now())
        finalizers = None
        if policy.needs_finalizer(spec) and t.FINALIZER not in self.finalizers:
            finalizers = [*self.finalizers, t.FINALIZER]
        # `callEnded` is always false here; left out, the annotation reads the same to every version of the operator.
        annotation = intent.model_dump_json(exclude={"call_ended"})
        await self.patch_metadata(finalizers=finalizers, annotations={t.START_INTENT: annotation})
        return intent

    async def intent_rejected(self, error: KubeError) -> float:
        update = policy.intent_rejected(self.status, self.generation, error.reason, policy.now())
        if update is not None:
            await self.write(update)
            self.event(
                "Warning", policy.Reason.INTENT_REJECTED, f"the API server refused the start intent: {error.status}"
            )
        return self.rt.backoff.recheck

    async def start_failed(
        self, error: DataWorksError, creds: ResolvedCredentials, *, keep_unverified: bool, count_attempt: bool = False
    ) -> float | None:
        at = policy.now()
        extra = {"request_id": error.request_id, "code": error.code}
        if not error.retryable:
            await self.write(policy.failed_terminally(self.status, self.generation, error, creds.version, at))
            self.logger.warning("start failed terminally: %s", error, extra=extra)
            self.event("Warning", policy.error_reason(error), policy.error_summary(error))
            return None
        attempts = self.status.attempts + (1 if count_attempt else 0)
        delay = self.rt.backoff.delay(max(1, attempts), error.retry_after)
        update = policy.retry_scheduled(
            self.status,
            self.generation,
            error,
            delay,
            at,
            keep_unverified=keep_unverified,
            count_attempt=count_attempt,
        )
        await self.write(update)
        self.rt.metrics.retries.labels(policy.error_reason(error).value).inc()
        self.logger.info(
            "start attempt %s failed, retrying in %.1fs: %s", self.status.attempts, delay, error, extra=extra
        )
        return delay

    # -- observe --------------------------------------------------------------------------------------------------

    async def follow(self) -> None:
        """Read the live state of the started task, record what changed, and warn once when it stops running."""
        spec = self.spec
        if spec is None or self.status.started_generation != self.generation or self.other_owner() is not None:
            return
        try:
            info = await self.rt.dataworks.observe(spec, (await self.credentials(spec)).provider)
        except DataWorksError as error:
            self.logger.debug("live state not read: %s", error)
            return
        observation = policy.observed(self.status, self.generation, spec.task_type, info, policy.now())
        if observation.update is not None:
            await self.write(observation.update)
        if observation.drift is not None:
            self.event("Warning", policy.Reason.NOT_RUNNING, observation.drift)

    # -- delete ---------------------------------------------------------------------------------------------------

    async def finalize(self) -> float | None:
        """Deletion: stop what we started, then let the object go. Returns when to try again if the stop failed."""
        self.rt.metrics.set_ready(object_key(self.body), None)
        if t.FINALIZER not in self.finalizers:
            return None  # nothing of ours holds it (another finalizer may)
        delay = await self.stop()
        if delay is not None:
            return delay
        try:
            await self.patch_metadata(finalizers=[f for f in self.finalizers if f != t.FINALIZER])
        except KubeError as error:
            if error.status != 404:  # already gone is what we wanted
                raise
        self.rt.finalized.add(self.uid)
        return None

    async def stop(self) -> float | None:
        """StopDISyncInstance if this object's task must stop; None when done, else seconds until the next try."""
        spec = self.spec
        if spec is None:
            return None
        if self.other_owner() is not None:
            return None  # the task is another resource's: deleting this one stops nothing
        action = policy.decide_stop(spec, self.status, self.intent_on_object())
        if action is policy.StopAction.ORPHAN:
            self.orphaned()
        if action is not policy.StopAction.STOP:
            return None
        try:
            response = await self.rt.dataworks.stop(spec, (await self.credentials(spec)).provider)
        except OperationFailedError as error:
            # The API answered "fail" (e.g. the task no longer exists): nothing left to stop.
            self.logger.warning("stop reported failure, releasing: %s", error)
            self.event("Warning", policy.EventReason.STOP_REPORTED_FAILURE, policy.error_summary(error))
            return None
        except DataWorksError as error:
            delay = self.rt.backoff.delay(self.status.stop_attempts + 1, error.retry_after)
            if not error.retryable:
                delay = max(delay, self.rt.backoff.recheck)
                self.event("Warning", policy.Reason.STOP_FAILED, policy.error_summary(error))
            await self.write(policy.stop_failed(self.status, self.generation, error, delay, policy.now()))
            self.logger.info("stop failed, retrying in %.1fs: %s", delay, policy.error_summary(error))
            return delay
        self.logger.info("stopped", extra={"request_id": response.request_id})
        self.event(
            "Normal", policy.EventReason.STOPPED, f"StopDISyncInstance succeeded (RequestId {response.request_id})"
        )
        return None

    def orphaned(self) -> None:
        self.event("Normal", policy.EventReason.ORPHANED, "deletionPolicy Orphan: the task is left as it is")

    def deleted(self, finalized: bool) -> None:
        """The object is gone. Without our finalizer nothing was done at deletion: say so where a task is left."""
        if finalized or t.FINALIZER in self.finalizers or self.spec is None:
            return  # finalize() had its say
        if policy.orphaned_on_delete(self.spec, self.status, self.intent_on_object()):
            self.orphaned()
