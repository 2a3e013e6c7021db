"""One DISyncInstance's reconcile: gather the facts, ask `policy`, apply what it says.

Level-triggered, like Crossplane's managed reconciler: the object's own status says what has been done, so no event
is special, and a watch event, a requeue and a sweep visit all run the same code:
- marked for deletion           -> `finalize`: StopDISyncInstance if policy says so, then release our finalizer;
- a generation not started yet  -> `start`: exactly once (policy.decide_start and the start intent);
- a sweep visit (`observe`)     -> `follow`: the live state of a started task.
What it reads and how it writes is `ObjectContext` (context.py); Kubernetes is reached through `Runtime.kube()`,
DataWorks through `Runtime.dataworks` (task.py), never directly.
"""

from __future__ import annotations

from disync_operator import types as t
from disync_operator.controller import policy
from disync_operator.controller.context import ObjectContext, object_key
from disync_operator.controller.credentials import CredentialsUnavailable, ResolvedCredentials
from disync_operator.controller.runtime.kube import KubeError
from disync_operator.dataworks import DataWorksError, OperationFailedError


class Reconciler(ObjectContext):
    """One reconcile of one object: start, follow or finalize, as policy says."""

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
            unreadable_intent=read.unreadable is not None or self.status_unreadable,
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
            self.logger.warning("start failed terminally: %s", policy.error_summary(error), extra=extra)
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
            "start attempt %s failed, retrying in %.1fs: %s",
            self.status.attempts,
            delay,
            policy.error_summary(error),
            extra=extra,
        )
        return delay

    # -- observe --------------------------------------------------------------------------------------------------

    async def follow(self) -> None:
        """Read the live state of the started task, record what changed, and warn once when it stops running."""
        spec = self.spec
        if spec is None or self.status.started_generation != self.generation or self.other_owner() is not None:
            return
        try:
            info = await self.rt.dataworks.observe(spec, (await self.credentials(spec)).provider, follow_up=True)
        except DataWorksError as error:
            self.logger.debug("live state not read: %s", policy.error_summary(error))
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
            self.logger.warning("stop reported failure, releasing: %s", policy.error_summary(error))
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
