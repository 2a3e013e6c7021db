"""One DISyncInstance's reconcile: gather the facts, ask `policy`, apply what it says.

Level-triggered, like Crossplane's managed reconciler: the object's own status says what has been done, so no event
is special, and a watch event, a requeue and a sweep visit all run the same code (`reconcile`), in this order:
- annotated `disync.dev/paused: "true"` -> `pause`: no call, no write but the Synced condition saying so;
- marked for deletion           -> `finalize`: StopDISyncInstance if policy says so, then release our finalizer;
- managementPolicy ObserveOnly  -> `observe_only`: the live state, and nothing else;
- spec.suspend                  -> `suspend`: StopDISyncInstance exactly once (policy.decide_suspend, the stop intent);
- a generation not started yet  -> `start`: exactly once (policy.decide_start and the start intent);
- a sweep visit (`observe`)     -> `follow`: the live state of a started task, and a restart if restartPolicy says so.
What it reads and how it writes is `ObjectContext` (context.py); Kubernetes is reached through `Runtime.kube()`,
DataWorks through `Runtime.dataworks` (task.py), never directly.
"""

from __future__ import annotations

import datetime as dt

from disync_operator import types as t
from disync_operator.controller import policy
from disync_operator.controller.context import ObjectContext, object_key
from disync_operator.controller.credentials import CredentialsUnavailable, ResolvedCredentials
from disync_operator.controller.runtime.kube import KubeError
from disync_operator.dataworks import ActionResponse, DataWorksError, OperationFailedError


def earliest(*delays: float | None) -> float | None:
    waiting = [d for d in delays if d is not None]
    return min(waiting) if waiting else None


class Reconciler(ObjectContext):
    """One reconcile of one object: start, follow, suspend, observe or finalize, as policy says."""

    async def reconcile(self, *, starts: bool, observe: bool) -> float | None:
        """What this visit does (`starts`: it may start or stop; `observe`: the sweep's live-state look); returns
        when to look again (seconds), or None."""
        if policy.paused(self.annotations):
            await self.pause()
            return None
        if self.deleting:
            return await self.finalize()
        await self.unpause()
        spec = self.spec
        if spec is not None and spec.observe_only:
            return await self.observe_only(spec, observe=observe)
        if spec is not None and spec.suspend:
            delay = await self.suspend(spec) if starts else None
            if observe:
                await self.follow_suspended(spec)
            return delay
        delay = await self.start() if starts else None
        if observe:
            delay = earliest(delay, await self.follow())
        return delay

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
        creds = await self.usable_credentials(spec, at)
        if creds is None:
            return None

        read = self.read_intent()
        intent = read.intent
        decision = policy.decide_start(
            generation=self.generation,
            status=self.status,
            credentials_version=creds.version,
            lease=self.lease,
            at=at,
            intent=intent,
            unreadable_intent=read.unreadable is not None or self.status_unreadable,
            handed_over=self.uid in self.rt.owners.handed_over,
            stop_intent=self.stop_intent_on_object(),
            spec_digest=spec.start_digest(),
        )
        self.logger.debug("start decision: %s %s", decision.action, decision.why)
        if decision.action is policy.Action.NOTHING:
            if self.status.started_generation == self.generation:
                return await self.restart_if_due(spec, creds)
            return None
        if decision.action is policy.Action.WAIT:
            return max(0.1, decision.wait_seconds)
        if decision.action is policy.Action.CARRY:
            await self.write(policy.carried_over(self.status, self.generation, at))
            self.logger.info("generation %s changes no start parameter: not started again", self.generation)
            return None

        if intent is not None and policy.unanswered(self.status, intent) is intent:
            # An intent on the object that no status write has answered (its process stopped before it could): what
            # is written next answers it.
            self.status = self.status.model_copy(update={"unverified_intent": intent})
            self.answering = intent
        if decision.action in (policy.Action.VERIFY, policy.Action.ADOPT):
            adopting = decision.action is policy.Action.ADOPT
            try:
                info = await self.rt.dataworks.observe(spec, creds.provider)
            except DataWorksError as error:
                # A failed verification is a failed attempt too: it must back off like one.
                return await self.start_failed(error, creds, keep_unverified=not adopting, count_attempt=True)
            if policy.still_stopping(spec.task_type, info):
                return self.rt.backoff.delay(1)  # e.g. its previous resource's stop: started once it has stopped
            self.rt.owners.handed_over.discard(self.uid)
            open_start = policy.unanswered(self.status, intent)
            verified = policy.after_verifying(
                running=policy.start_took_effect(spec.task_type, info),
                status=self.status,
                own_start=open_start if open_start is not None and open_start.generation == self.generation else None,
                adopting=adopting,
                spec_digest=spec.start_digest(),
                restarts_counted=spec.restart_policy is t.RestartPolicy.ON_FAILURE,
            )
            if verified is not policy.Verified.START:
                return await self.record_verified(spec, creds, verified, info.data.status, at)

        sent = await self.send_start(spec, creds)
        if not isinstance(sent, ActionResponse):
            return sent
        request_id = sent.request_id
        await self.write(
            policy.started(
                self.status,
                self.generation,
                sent,
                creds.version,
                policy.now(),
                spec_digest=spec.start_digest(),
            )
        )
        self.logger.info(
            "started generation %s (RequestId %s)", self.generation, request_id, extra={"request_id": request_id}
        )
        self.event("Normal", policy.EventReason.STARTED, f"StartDISyncInstance succeeded (RequestId {request_id})")
        return None

    async def record_verified(
        self,
        spec: t.DISyncInstanceSpec,
        creds: ResolvedCredentials,
        verified: policy.Verified,
        state: str | None,
        at: dt.datetime,
    ) -> float | None:
        """Write what the live state read before a start showed, when it calls for no start."""
        if verified is policy.Verified.SPENT:
            await self.write(
                policy.start_spent(
                    self.status,
                    self.generation,
                    creds.version,
                    at,
                    verified_state=state,
                    spec_digest=spec.start_digest(),
                )
            )
            self.logger.warning("the start's answer was lost and the task is not running (%s): counted as made", state)
            self.event("Warning", policy.Reason.NOT_RUNNING, f"the start's answer was lost; the task is {state}")
            return await self.restart_if_due(spec, creds)
        adopting = verified is policy.Verified.ADOPTED
        if adopting and policy.needs_finalizer(spec) and t.FINALIZER not in self.finalizers:
            # Managed from now on: deletion stops what was taken over, as it would what was started.
            await self.patch_metadata(finalizers=[*self.finalizers, t.FINALIZER])
        update = policy.started(
            self.status,
            self.generation,
            None,
            creds.version,
            at,
            verified_state=state,
            spec_digest=spec.start_digest(),
            adopted=adopting,
        )
        await self.write(update)
        if adopting:
            self.logger.info("taken over from ObserveOnly: the task runs (live state %s)", state)
            self.event("Normal", policy.EventReason.ADOPTED, f"taken over without a start (live state {state})")
        else:
            self.logger.info("generation %s was already started (live state %s)", self.generation, state)
        return None

    async def usable_credentials(self, spec: t.DISyncInstanceSpec, at: dt.datetime) -> ResolvedCredentials | None:
        """The resource's credentials, or None once their being unavailable is written (once per version)."""
        try:
            return await self.credentials(spec)
        except CredentialsUnavailable as error:
            if not policy.failed_for_good(self.status, self.generation, error.version):
                await self.write(policy.failed_terminally(self.status, self.generation, error, error.version, at))
                self.event("Warning", policy.Reason.CREDENTIALS_UNAVAILABLE, str(error))
            return None

    async def send_start(
        self, spec: t.DISyncInstanceSpec, creds: ResolvedCredentials, *, restart: int | None = None
    ) -> ActionResponse | float | None:
        """StartDISyncInstance with its intent (written when the rate limit lets the call go, before the request
        leaves): the answer, or, when it failed, what the failure's handling returned (when to look again)."""
        try:
            outcome = await self.rt.dataworks.start(
                spec, creds.provider, write_intent=lambda: self.write_intent(spec, restart=restart)
            )
        except KubeError as error:
            if error.status != 422:
                raise
            # The API server refused the intent (e.g. annotations at their 256 KiB limit): nothing was sent.
            return await self.intent_rejected(error)
        if outcome.intent is not None:
            self.status = policy.after_sending(self.status, self.generation, outcome.intent)
            self.answering = outcome.intent
        if outcome.error is not None:
            may_have_started = policy.call_may_have_taken_effect(outcome.error)
            # A restart is of a task found stopped: it is not running whatever the failure.
            running = None if restart is None else False
            return await self.start_failed(outcome.error, creds, keep_unverified=may_have_started, running=running)
        assert outcome.response is not None
        return outcome.response

    async def conflict(self, owner: policy.TaskClaim) -> float:
        """Another resource manages this task: call nothing, say who. Looked at again every minute, and at once
        when the owner goes or moves to another task (Runtime.observed)."""
        update = policy.conflict(self.status, self.generation, owner.name, policy.now())
        if update is not None:
            await self.write(update)
            self.event("Warning", policy.Reason.CONFLICT, f"the DataWorks task is managed by {owner.name}")
        return self.rt.backoff.recheck

    async def write_intent(self, spec: t.DISyncInstanceSpec, restart: int | None = None) -> t.StartIntent:
        """One metadata write carries the start intent and, where deletion must stop the task, our finalizer (on
        the object before the task may run). Its resourceVersion precondition lets only one process write it."""
        intent = policy.new_intent(self.generation, self.rt.me, policy.now(), restart=restart)
        self.rt.first_seen.age(policy.intent_key(intent))  # its lease runs from now, on this process's clock
        finalizers = None
        if policy.needs_finalizer(spec) and t.FINALIZER not in self.finalizers:
            finalizers = [*self.finalizers, t.FINALIZER]
        await self.patch_metadata(finalizers=finalizers, annotations={t.START_INTENT: intent.annotation()})
        return intent

    async def intent_rejected(self, error: KubeError, *, stop: bool = False) -> float:
        update = policy.intent_rejected(self.status, self.generation, error.reason, policy.now(), stop=stop)
        if update is not None:
            await self.write(update)
            what = "stop" if stop else "start"
            self.event(
                "Warning", policy.Reason.INTENT_REJECTED, f"the API server refused the {what} intent: {error.status}"
            )
        return self.rt.backoff.recheck

    async def start_failed(
        self,
        error: DataWorksError,
        creds: ResolvedCredentials,
        *,
        keep_unverified: bool,
        count_attempt: bool = False,
        running: bool | None = None,
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
            running=running,
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

    async def follow(self) -> float | None:
        """Read the live state of the started task, record what changed, warn once when it stops running, and restart
        it if restartPolicy says so; returns when to look again for that restart."""
        spec = self.spec
        if spec is None or self.status.started_generation != self.generation or self.other_owner() is not None:
            return None
        try:
            creds = await self.credentials(spec)
            info = await self.rt.dataworks.observe(spec, creds.provider, follow_up=True)
        except DataWorksError as error:
            self.logger.debug("live state not read: %s", policy.error_summary(error))
            return None
        observation = policy.observed(self.status, self.generation, spec.task_type, info, policy.now())
        if observation.update is not None:
            await self.write(observation.update)
        if observation.drift is not None:
            self.event("Warning", policy.Reason.NOT_RUNNING, observation.drift)
        return await self.restart_if_due(spec, creds)

    # -- restart on failure -----------------------------------------------------------------------------------------

    async def restart_if_due(self, spec: t.DISyncInstanceSpec, creds: ResolvedCredentials) -> float | None:
        """restartPolicy OnFailure: a started task found stopped is started again after the backoff, exactly once per
        restart (a start intent that names the restart), at most DISYNC_MAX_RESTARTS_PER_HOUR an hour."""
        if policy.failed_for_good(self.status, self.generation, creds.version):
            return None
        at = policy.now()
        max_per_hour = self.rt.settings.max_restarts_per_hour
        intent = self.intent_on_object()
        decision = policy.decide_restart(
            generation=self.generation,
            spec=spec,
            status=self.status,
            intent=intent,
            lease=self.lease,
            max_per_hour=max_per_hour,
            at=at,
        )
        self.logger.debug("restart decision: %s %s", decision.action, decision.why)
        if decision.action is policy.RestartAction.NOTHING:
            return None
        if decision.action is policy.RestartAction.WAIT:
            return max(0.1, decision.wait_seconds)
        if decision.action is policy.RestartAction.SCHEDULE:
            delay = self.rt.backoff.delay(len(policy.recent_restarts(self.status, at)) + 1)
            await self.write(policy.restart_scheduled(self.status, self.generation, delay, max_per_hour, at))
            self.logger.info("the task is %s: restart in %.1fs", self.status.instance_state, delay)
            return delay
        if decision.action is policy.RestartAction.LIMIT:
            update = policy.restart_limited(self.status, self.generation, max_per_hour, at)
            if update is not None:
                await self.write(update)
                ready = self.status.condition(policy.READY)
                self.event("Warning", policy.Reason.RESTART_LIMIT_REACHED, ready.message if ready else "")
            return max(1.0, decision.wait_seconds)
        verifying = decision.action is policy.RestartAction.VERIFY
        if verifying and intent is not None and policy.unanswered(self.status, intent) is intent:
            self.status = self.status.model_copy(update={"unverified_intent": intent})
            self.answering = intent
        # The live state decides, read once more: someone may have started it meanwhile, or the restart took effect.
        try:
            info = await self.rt.dataworks.observe(spec, creds.provider)
        except DataWorksError as error:
            return await self.start_failed(error, creds, keep_unverified=verifying, count_attempt=True, running=False)
        if policy.still_stopping(spec.task_type, info):
            return self.rt.backoff.delay(1)
        if verifying and not policy.start_took_effect(spec.task_type, info):
            # It may have run and stopped again: it counts against the hourly cap, and the next restart, if any,
            # comes from the stopped state like every other.
            state = info.data.status
            await self.write(
                policy.restart_spent(self.status, self.generation, decision.restart, at, verified_state=state)
            )
            self.logger.warning("restart %s had no known outcome and the task is %s: counted", decision.restart, state)
            return await self.restart_if_due(spec, creds)
        if policy.start_took_effect(spec.task_type, info):
            state = info.data.status
            if verifying:
                await self.write(
                    policy.restarted(self.status, self.generation, decision.restart, at, verified_state=state)
                )
                self.rt.metrics.restarts.inc()
                self.event("Warning", policy.EventReason.RESTARTED, f"restart {decision.restart} took effect ({state})")
                return None
            observation = policy.observed(self.status, self.generation, spec.task_type, info, at)
            if observation.update is not None:
                await self.write(observation.update)
            self.logger.info("the task runs again (live state %s): not restarted", state)
            return None
        return await self.restart(spec, creds, decision.restart, info.data.status)

    async def restart(
        self, spec: t.DISyncInstanceSpec, creds: ResolvedCredentials, restart: int, state: str | None
    ) -> float | None:
        sent = await self.send_start(spec, creds, restart=restart)
        if not isinstance(sent, ActionResponse):
            return sent
        request_id = sent.request_id
        await self.write(policy.restarted(self.status, self.generation, restart, policy.now(), response=sent))
        self.rt.metrics.restarts.inc()
        self.logger.info("restart %s (live state was %s)", restart, state, extra={"request_id": request_id})
        self.event(
            "Warning",
            policy.EventReason.RESTARTED,
            f"the live state was {state}: StartDISyncInstance again (restart {restart}, RequestId {request_id})",
        )
        return None

    # -- suspend --------------------------------------------------------------------------------------------------

    async def suspend(self, spec: t.DISyncInstanceSpec) -> float | None:
        """spec.suspend: StopDISyncInstance exactly once (the stop intent, as for starts), then keep it stopped."""
        owner = self.other_owner()
        if owner is not None:
            return await self.conflict(owner)
        at = policy.now()
        creds = await self.usable_credentials(spec, at)
        if creds is None:
            return None
        start_intent, stop_intent = self.intent_on_object(), self.stop_intent_on_object()
        decision = policy.decide_suspend(
            generation=self.generation,
            status=self.status,
            start_intent=start_intent,
            stop_intent=stop_intent,
            lease=self.lease,
            at=at,
        )
        self.logger.debug("suspend decision: %s %s", decision.action, decision.why)
        if decision.action is policy.SuspendAction.NOTHING:
            update = policy.still_suspended(self.status, self.generation, at)
            if update is not None:
                await self.write(update)
            return None
        if decision.action is policy.SuspendAction.WAIT:
            return max(0.1, decision.wait_seconds)
        open_start = policy.unanswered(self.status, start_intent)
        if decision.action is policy.SuspendAction.VERIFY:
            open_stop = policy.stop_may_be_pending(self.status, stop_intent)
            try:
                info = await self.rt.dataworks.observe(spec, creds.provider)
            except DataWorksError as error:
                return await self.suspend_failed(error, unverified=open_stop, answered=open_stop)
            if policy.stop_took_effect(info):
                state = info.data.status
                update = policy.suspended(
                    self.status,
                    self.generation,
                    at,
                    verified_state=state,
                    stop_intent=open_stop,
                    start_intent=open_start,
                )
                await self.write(update)
                self.logger.info("suspended: an earlier stop had taken effect (live state %s)", state)
                return None
        return await self.stop_for_suspend(spec, creds, open_start)

    async def stop_for_suspend(
        self, spec: t.DISyncInstanceSpec, creds: ResolvedCredentials, open_start: t.StartIntent | None
    ) -> float | None:
        try:
            outcome = await self.rt.dataworks.stop_once(spec, creds.provider, write_intent=self.write_stop_intent)
        except KubeError as error:
            if error.status != 422:
                raise
            return await self.intent_rejected(error, stop=True)
        intent, at, failure = outcome.intent, policy.now(), outcome.error
        if isinstance(failure, OperationFailedError):
            # The API answered "fail" (e.g. the task does not run): there was nothing to stop.
            message = failure.api_message or policy.error_summary(failure)
            update = policy.suspended(
                self.status, self.generation, at, reported_failure=message, stop_intent=intent, start_intent=open_start
            )
            await self.write(update)
            self.event("Warning", policy.EventReason.STOP_REPORTED_FAILURE, policy.error_summary(failure))
            return None
        if failure is not None:
            may_have_stopped = policy.call_may_have_taken_effect(failure)
            return await self.suspend_failed(failure, unverified=intent if may_have_stopped else None, answered=intent)
        assert outcome.response is not None
        request_id = outcome.response.request_id
        update = policy.suspended(
            self.status, self.generation, at, response=outcome.response, stop_intent=intent, start_intent=open_start
        )
        await self.write(update)
        self.logger.info("suspended: stopped", extra={"request_id": request_id})
        self.event("Normal", policy.EventReason.SUSPENDED, f"StopDISyncInstance succeeded (RequestId {request_id})")
        return None

    async def write_stop_intent(self) -> t.StopIntent:
        """The stop intent goes on the object with the same precondition as a start intent: one process writes it."""
        intent = policy.new_stop_intent(self.generation, self.rt.me, policy.now())
        self.rt.first_seen.age(policy.intent_key(intent))
        await self.patch_metadata(annotations={t.STOP_INTENT: intent.annotation()})
        return intent

    async def suspend_failed(
        self, error: DataWorksError, *, unverified: t.StopIntent | None, answered: t.StopIntent | None
    ) -> float:
        delay = self.rt.backoff.delay(self.status.stop_attempts + 1, error.retry_after)
        if not error.retryable:
            delay = max(delay, self.rt.backoff.recheck)
            self.event("Warning", policy.Reason.STOP_FAILED, policy.error_summary(error))
        update = policy.suspend_failed(
            self.status, self.generation, error, delay, policy.now(), unverified=unverified, answered=answered
        )
        await self.write(update)
        self.logger.info("suspend: stop failed, retrying in %.1fs: %s", delay, policy.error_summary(error))
        return delay

    async def follow_suspended(self, spec: t.DISyncInstanceSpec) -> None:
        """A suspended task's live state, recorded without alarms (a stopped task is what was asked for)."""
        if self.other_owner() is not None:
            return
        try:
            info = await self.rt.dataworks.observe(spec, (await self.credentials(spec)).provider, follow_up=True)
        except DataWorksError as error:
            self.logger.debug("live state not read: %s", policy.error_summary(error))
            return
        update = policy.observed_while_suspended(self.status, info, policy.now())
        if update is not None:
            await self.write(update)

    # -- observe only ---------------------------------------------------------------------------------------------

    async def observe_only(self, spec: t.DISyncInstanceSpec, *, observe: bool) -> float | None:
        """managementPolicy ObserveOnly: the live state into status, and nothing else (no start, no stop, no
        finalizer). Read at the first visit of a generation, after a failed read, and at every sweep."""
        if t.FINALIZER in self.finalizers:
            # It was Full: ObserveOnly holds nothing at deletion.
            await self.patch_metadata(finalizers=[f for f in self.finalizers if f != t.FINALIZER])
        synced = self.status.condition(policy.SYNCED)
        read_already = self.status.observe_only_generation == self.generation and synced is not None
        if not observe and read_already and synced is not None and synced.status == "True":
            return None
        at = policy.now()
        try:
            creds = await self.credentials(spec)
            info = await self.rt.dataworks.observe(spec, creds.provider, follow_up=observe)
        except DataWorksError as error:
            delay = max(self.rt.backoff.recheck, error.retry_after or 0.0) if error.retryable else None
            update = policy.observe_failed(self.status, self.generation, error, delay, at)
            if update is not None:
                await self.write(update)
                if not error.retryable:
                    self.event("Warning", policy.error_reason(error), policy.error_summary(error))
            self.logger.info("live state not read: %s", policy.error_summary(error))
            return delay
        observation = policy.observed_only(self.status, self.generation, spec.task_type, info, at)
        if observation.update is not None:
            await self.write(observation.update)
        if observation.drift is not None:
            self.event("Warning", policy.Reason.NOT_RUNNING, observation.drift)
        return None

    # -- pause ----------------------------------------------------------------------------------------------------

    async def pause(self) -> None:
        """disync.dev/paused: "true": hands off. The one write is the Synced condition saying so (and, once deletion
        waits for the annotation, saying that)."""
        deletion_waits = self.deleting and t.FINALIZER in self.finalizers
        update = policy.paused_condition(self.status, self.generation, deletion_waits, policy.now())
        if update is not None:
            await self.write(update)
            self.logger.info("paused: %s", "deletion waits" if deletion_waits else "no call, no change")

    async def unpause(self) -> None:
        update = policy.unpaused(self.status, self.generation, policy.now())
        if update is not None:
            await self.write(update)
            self.logger.info("resumed: the pause annotation is gone")

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
