"""The kopf handler for DISyncInstance. Thin: it gathers facts, asks `policy`, and applies what it says.

One level-triggered reconcile for every event kopf delivers (and for every requeue and sweep visit), like
Crossplane's managed reconciler: the object's own status says what has been done, so no event is special.
- a generation not started yet  -> start it (exactly once; see policy.decide_start)
- marked for deletion           -> StopDISyncInstance (DI_REALTIME, deletionPolicy Stop), then release our finalizer
- the shared sweep (sweep.py)   -> follows the live state; retries a terminal failure once the credentials changed

Why not kopf's create/update/delete handlers: they cost two more API writes per object (kopf's own finalizer
cycle and its last-handled-configuration annotation), which made a burst of CRs 2.4x slower than the floor and
were the bulk of kopf's per-object memory (bench/). The generation in status is the change detector here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf
from pydantic import ValidationError

from disync_operator import types as t
from disync_operator.controller import policy
from disync_operator.controller.credentials import (
    OPERATOR_DEFAULT,
    CredentialsUnavailable,
    ResolvedCredentials,
    resolve,
)
from disync_operator.controller.kube import Conflict, KubeError
from disync_operator.controller.runtime import Runtime
from disync_operator.controller.sweep import sweep_forever
from disync_operator.dataworks import (
    DataWorksError,
    GetDISyncInstanceInfoRequest,
    OperationFailedError,
    StartDISyncInstanceRequest,
    StopDISyncInstanceRequest,
)
from disync_operator.dataworks import TaskType as ApiTaskType

RESOURCE = (t.GROUP, t.VERSION, t.PLURAL)


def parse_status(body: kopf.Body) -> t.DISyncInstanceStatus:
    try:
        return t.DISyncInstanceStatus.model_validate(dict(body.get("status") or {}))
    except ValidationError:
        # Status is ours, but a human may have edited it: start from a clean slate rather than crash-loop.
        return t.DISyncInstanceStatus()


def _key(body: kopf.Body) -> str:
    return f"{body.metadata.namespace}/{body.metadata.name}"


def _api_task_type(spec: t.DISyncInstanceSpec) -> ApiTaskType:
    return ApiTaskType(spec.task_type.value)


def _info_request(spec: t.DISyncInstanceSpec) -> GetDISyncInstanceInfoRequest:
    return GetDISyncInstanceInfoRequest(
        project_id=spec.project_id, task_type=_api_task_type(spec), file_id=spec.file_id
    )


def _stop_request(spec: t.DISyncInstanceSpec) -> StopDISyncInstanceRequest:
    return StopDISyncInstanceRequest(project_id=spec.project_id, task_type=_api_task_type(spec), file_id=spec.file_id)


class Reconciler:
    """One object's handling; built per handler call from kopf's kwargs."""

    def __init__(self, rt: Runtime, body: kopf.Body, logger: kopf.Logger) -> None:
        self.rt = rt
        self.body = body
        self.logger = logger
        self.namespace = body.metadata.namespace or ""
        self.name = body.metadata.name or ""
        self.generation = int(body.metadata.get("generation") or 0)
        self.status = parse_status(body)
        self.resource_version = body.metadata.get("resourceVersion")
        self.latest: dict[str, Any] | None = None  # the object as our last write left it
        # A start intent whose outcome the next status write records (see policy.answer).
        self.answering: t.PendingStart | None = None

    async def write(self, patch: policy.StatusPatch) -> None:
        kube = await self.rt.kube()
        if self.answering is not None:
            patch = policy.answer(patch, self.status, self.answering)
            self.answering = None
        updated = await kube.patch_status(self.namespace, self.name, patch)
        self.wrote(updated)
        self.status = t.DISyncInstanceStatus.model_validate(updated.get("status") or {})
        ready = self.status.condition(policy.READY)
        self.rt.metrics.set_ready(_key(self.body), ready.status if ready else "Unknown")

    def event(self, type_: str, reason: str, message: str) -> None:
        self.rt.events.record(self.body, type_, reason, message)

    def spec(self) -> tuple[t.DISyncInstanceSpec | None, str]:
        """The parsed spec, or None and what is wrong with it (the API server can't check startParamJSON)."""
        try:
            return t.DISyncInstanceSpec.model_validate(dict(self.body.get("spec") or {})), ""
        except ValidationError as error:
            return None, "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
            )

    async def credentials(self, spec: t.DISyncInstanceSpec) -> ResolvedCredentials:
        # The operator's own identity can only change with a restart (new env, RAM policy fixed): its version
        # includes this process, so a terminal failure with it is retried once after a restart.
        default_version = f"{OPERATOR_DEFAULT}:{self.rt.me}"
        return await resolve(spec, self.namespace, await self.rt.kube(), self.rt.default_credentials, default_version)

    # -- start --------------------------------------------------------------------------------------------------

    async def reconcile(self) -> float | None:
        """Bring the object where its spec says; returns when to look again (seconds), or None."""
        if self.body.metadata.get("deletionTimestamp"):
            return await self.finalize()
        return await self.start()

    async def start(self) -> float | None:
        at = policy.now()
        spec, problem = self.spec()
        if spec is None:
            if self.status.failed_generation != self.generation:
                await self.write(policy.invalid_spec(self.status, self.generation, problem, at))
                self.event("Warning", policy.Reason.INVALID_SPEC, problem)
            return None
        try:
            creds = await self.credentials(spec)
        except CredentialsUnavailable as error:
            if self.status.failed_generation == self.generation and self.status.credentials_version == error.version:
                return None
            await self.write(policy.failed_terminally(self.status, self.generation, error, error.version, at))
            self.event("Warning", policy.Reason.CREDENTIALS_UNAVAILABLE, str(error))
            return None

        claim = self.intent_on_object()
        decision = policy.decide_start(
            generation=self.generation,
            status=self.status,
            credentials_version=creds.version,
            lease_seconds=self.rt.settings.start_lease_seconds,
            at=at,
            claim=claim,
        )
        self.logger.debug("start decision: %s %s", decision.action, decision.why)
        if decision.action is policy.Action.NOTHING:
            return None
        if decision.action is policy.Action.WAIT:
            return max(0.1, decision.wait_seconds)

        client = self.rt.dataworks(spec.region)
        if claim is not None and policy.unanswered(self.status, claim) is claim:
            # An intent on the object that no status write has answered (its process stopped before it could):
            # what is written next records its outcome.
            self.status = self.status.model_copy(update={"pending_start": claim})
            self.answering = claim
        if decision.action is policy.Action.VERIFY:
            try:
                info = await client.get_instance_info(_info_request(spec), credentials=creds.provider)
            except DataWorksError as error:
                # A failed verification is a failed attempt too: it must back off like one.
                return await self._failed(error, creds, keep_pending=True, count_attempt=True)
            if policy.start_took_effect(spec.task_type, info):
                await self.write(
                    policy.started(
                        self.status, self.generation, None, creds.version, at, verified_state=info.data.status
                    )
                )
                self.logger.info("generation %s was already started (live state %s)", self.generation, info.data.status)
                return None

        request = StartDISyncInstanceRequest(
            project_id=spec.project_id,
            task_type=_api_task_type(spec),
            file_id=spec.file_id,
            start_param=spec.api_start_param(),
        )

        async def record_intent() -> None:
            # Runs when the client's rate limit lets the call go: `since` is the send time, so the lease that other
            # processes respect covers the call's flight, not its time in the queue. One metadata write carries the
            # intent and, where deletion must stop the task, our finalizer (before the task may run).
            intent = policy.new_intent(self.generation, self.rt.me, policy.now())
            finalizers = None
            if policy.needs_finalizer(spec) and t.FINALIZER not in self.finalizers:
                finalizers = [*self.finalizers, t.FINALIZER]
            await self.patch_metadata(finalizers=finalizers, annotations={t.START_INTENT: intent.model_dump_json()})
            self.status = policy.claimed(self.status, self.generation, intent)
            self.answering = intent

        try:
            response = await client.start_instance(request, credentials=creds.provider, before_send=record_intent)
        except DataWorksError as error:
            return await self._failed(error, creds, keep_pending=policy.start_may_have_happened(error))
        await self.write(policy.started(self.status, self.generation, response, creds.version, policy.now()))
        self.logger.info(
            "started generation %s (RequestId %s)",
            self.generation,
            response.request_id,
            extra={"request_id": response.request_id},
        )
        self.event("Normal", "Started", f"StartDISyncInstance succeeded (RequestId {response.request_id})")
        return None

    async def _failed(
        self, error: DataWorksError, creds: ResolvedCredentials, *, keep_pending: bool, count_attempt: bool = False
    ) -> float | None:
        at = policy.now()
        extra = {"request_id": error.request_id, "code": error.code}
        if not error.retryable:
            await self.write(policy.failed_terminally(self.status, self.generation, error, creds.version, at))
            reason = policy.error_reason(error)
            self.logger.warning("start failed terminally: %s", error, extra=extra)
            self.event("Warning", reason, policy.error_summary(error))
            return None
        attempts = self.status.attempts + (1 if count_attempt else 0)
        delay = self.rt.backoff.delay(max(1, attempts), error.retry_after)
        patch = policy.retry_scheduled(
            self.status, self.generation, error, delay, at, keep_pending=keep_pending, count_attempt=count_attempt
        )
        await self.write(patch)
        self.rt.metrics.retries.labels(policy.error_reason(error).value).inc()
        self.logger.info(
            "start attempt %s failed, retrying in %.1fs: %s", self.status.attempts, delay, error, extra=extra
        )
        return delay

    # -- observe ------------------------------------------------------------------------------------------------

    async def observe(self) -> float | None:
        """The sweep's visit: follow the live state; returns when to look again if it retried a start."""
        spec, _ = self.spec()
        if spec is None or self.body.metadata.get("deletionTimestamp"):
            return None
        if self.status.started_generation == self.generation:
            try:
                creds = await self.credentials(spec)
                info = await self.rt.dataworks(spec.region).get_instance_info(
                    _info_request(spec), credentials=creds.provider
                )
            except DataWorksError as error:
                self.logger.debug("live state not read: %s", error)
                return None
            patch = policy.observed(self.status, self.generation, spec.task_type, info, policy.now())
            if patch is not None:
                await self.write(patch)
                if patch.get("instance_state") not in policy.STARTED_STATES:
                    self.event("Warning", policy.Reason.NOT_RUNNING, f"live state {info.data.status}")
        elif self.status.failed_generation == self.generation:
            # Terminal failures wait for a change of spec (handled by kopf) or of the credentials (checked here).
            try:
                version = (await self.credentials(spec)).version
            except CredentialsUnavailable as error:
                version = error.version
            if version != self.status.credentials_version and not self._invalid_spec_failure():
                self.logger.info("credentials changed; retrying the start of generation %s", self.generation)
                return await self.start()
        return None

    def _invalid_spec_failure(self) -> bool:
        return self.status.last_error is not None and self.status.last_error.code == "InvalidSpec"

    # -- delete -------------------------------------------------------------------------------------------------

    @property
    def finalizers(self) -> list[str]:
        return list(self.body.metadata.get("finalizers") or [])

    def intent_on_object(self) -> t.PendingStart | None:
        raw = (self.body.metadata.get("annotations") or {}).get(t.START_INTENT)
        if not raw:
            return None
        try:
            return t.PendingStart.model_validate_json(raw)
        except ValidationError:
            self.logger.warning("ignoring an unreadable %s annotation", t.START_INTENT)
            return None

    async def patch_metadata(
        self, *, finalizers: list[str] | None = None, annotations: dict[str, str] | None = None
    ) -> None:
        kube = await self.rt.kube()
        updated = await kube.patch_metadata(
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
        # At once, not when the reconcile ends: a body queued meanwhile is stale from now on (Runtime.already_handled).
        self.rt.wrote(self.body.metadata.uid or "", self.resource_version, settled=False)

    async def finalize(self) -> float | None:
        """Deletion: stop what we started, then let the object go. Returns when to try again if the stop failed."""
        uid = self.body.metadata.uid or ""
        self.rt.metrics.set_ready(_key(self.body), None)
        if t.FINALIZER not in self.finalizers:
            return None  # nothing of ours holds it (another finalizer may)
        delay = await self.stop(self.rt.stop_attempts.get(uid, 0))
        if delay is not None:
            self.rt.stop_attempts[uid] = self.rt.stop_attempts.get(uid, 0) + 1
            return delay
        self.rt.stop_attempts.pop(uid, None)
        try:
            await self.patch_metadata(finalizers=[f for f in self.finalizers if f != t.FINALIZER])
        except KubeError as error:
            if error.status != 404:  # already gone is what we wanted
                raise
        self.rt.finalized.add(uid)
        return None

    @property
    def started_by_us(self) -> bool:
        # A start whose outcome is unknown counts: its intent unanswered (sent, then a crash), or kept pending.
        return self.status.started_generation is not None or (
            policy.unanswered(self.status, self.intent_on_object()) is not None
        )

    def orphaned(self) -> None:
        self.event("Normal", "Orphaned", "deletionPolicy Orphan: the task is left as it is")

    def deleted(self, finalized: bool) -> None:
        """The object is gone. Without our finalizer nothing was done at deletion: say so where a task is left."""
        if finalized or t.FINALIZER in self.finalizers:
            return  # finalize() had its say
        spec, _ = self.spec()
        if (
            spec is not None
            and spec.task_type is t.TaskType.DI_REALTIME
            and spec.deletion_policy is t.DeletionPolicy.ORPHAN
            and self.started_by_us
        ):
            self.orphaned()

    async def stop(self, retry: int) -> float | None:
        """StopDISyncInstance if this object's task must stop; None when done, else seconds until the next try."""
        spec, _ = self.spec()
        if spec is None:
            return None
        if spec.deletion_policy is t.DeletionPolicy.ORPHAN:
            self.orphaned()
            return None
        if spec.task_type is not t.TaskType.DI_REALTIME:
            return None  # only real-time tasks can be stopped
        if not self.started_by_us:
            return None
        try:
            creds = await self.credentials(spec)
            response = await self.rt.dataworks(spec.region).stop_instance(
                _stop_request(spec), credentials=creds.provider
            )
        except OperationFailedError as error:
            # The API answered "fail" (e.g. the task no longer exists): nothing left to stop.
            self.logger.warning("stop reported failure, releasing: %s", error)
            self.event("Warning", "StopReportedFailure", policy.error_summary(error))
            return None
        except DataWorksError as error:
            delay = self.rt.backoff.delay(retry + 1, error.retry_after)
            if not error.retryable:
                await self.write(policy.stop_blocked(self.status, self.generation, error, policy.now()))
                self.event("Warning", policy.Reason.STOP_FAILED, policy.error_summary(error))
                delay = max(delay, min(60.0, self.rt.backoff.cap))
            self.logger.info("stop failed, retrying in %.1fs: %s", delay, policy.error_summary(error))
            return delay
        self.logger.info("stopped", extra={"request_id": response.request_id})
        self.event("Normal", "Stopped", f"StopDISyncInstance succeeded (RequestId {response.request_id})")
        return None


async def reconcile(
    rt: Runtime,
    body: kopf.Body,
    logger: kopf.Logger | logging.LoggerAdapter[Any],
    *,
    source: str,
    observe: bool = False,
) -> None:
    """Reconcile one object, alone, and arrange the next look if it has to wait. `source` says what brought it (for
    the metrics); `observe`: the sweep's visit, which follows the live state (and leaves any requeue as it is)."""
    uid = body.metadata.uid or ""
    rt.metrics.reconciles.labels(source).inc()
    async with rt.exclusive(uid):
        if rt.already_handled(uid, body.metadata.get("resourceVersion"), echo=False):
            return
        reconciler = Reconciler(rt, body, logger)
        settled = False
        try:
            delay = await (reconciler.observe() if observe else reconciler.reconcile())
            settled = True
        except Conflict:
            # The object changed since this body was read; its newer version is on its way as an event and will be
            # reconciled then. The requeue is the safety net should that event be lost.
            delay = 1.0
        except KubeError as error:
            # Gone (404): its DELETED event ends its handling; anything else is worth another look.
            delay = None if error.status == 404 else min(60.0, rt.backoff.cap)
            if delay is not None:
                logger.warning("reconcile failed, retrying in %.0fs: %s", delay, error)
        except CredentialsUnavailable as error:
            delay = min(60.0, rt.backoff.cap)
            logger.warning("reconcile failed, retrying in %.0fs: %s", delay, error)
        except Exception:
            # A bug must not end the object's handling for good: log it, and come back later.
            delay = min(60.0, rt.backoff.cap)
            logger.exception("reconcile failed unexpectedly, retrying in %.0fs", delay)
        if reconciler.latest is not None and settled:
            rt.wrote(uid, reconciler.resource_version, settled=True)
        if delay is None:
            if not observe:
                rt.requeue.cancel(uid)
        else:
            rt.requeue.schedule(uid, reconciler.latest or dict(body), delay)


def object_logger(rt: Runtime, raw: dict[str, Any]) -> tuple[kopf.Body, logging.LoggerAdapter[Any]]:
    """A body and kopf's per-object logger (JSON logs carry the object) for work kopf did not start."""
    body = kopf.Body(cast(kopf.RawBody, raw))
    return body, kopf.LocalObjectLogger(body=body, settings=rt.kopf_settings)


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the handlers on `registry` (explicit, so tests and the CLI build operators side by side)."""

    @kopf.on.login(registry=registry)
    def login(*, memo: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None:
            memo.runtime.connected(info)
        return info

    @kopf.on.startup(registry=registry)
    async def start_background(*, memo: Any, settings: kopf.OperatorSettings, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        runtime.kopf_settings = settings

        def requeued(raw: dict[str, Any]) -> None:
            runtime.work.add(raw.get("metadata", {}).get("uid", ""), raw, "requeue")

        async def work(raw: dict[str, Any], source: str) -> None:
            await reconcile(runtime, *object_logger(runtime, raw), source=source)

        async def post_events() -> None:
            await runtime.events.run(await runtime.kube())

        workers = runtime.work.run(runtime.settings.workers, work)
        runtime.background.append(asyncio.create_task(workers, name="disync-workers"))
        runtime.background.append(asyncio.create_task(runtime.requeue.run(requeued), name="disync-requeue"))
        runtime.background.append(asyncio.create_task(post_events(), name="disync-events"))
        runtime.background.append(asyncio.create_task(sweep_forever(runtime), name="disync-sweep"))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(*, memo: Any, **_: Any) -> None:
        await memo.runtime.aclose()

    @kopf.on.event(*RESOURCE, id="reconcile", registry=registry)
    async def on_event(*, type: str | None, body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        uid = body.metadata.uid or ""
        if type == "DELETED":
            async with runtime.exclusive(uid):  # after a reconcile of it still in flight, so nothing of it is left
                finalized = runtime.forget(uid)
                runtime.metrics.set_ready(_key(body), None)
                Reconciler(runtime, body, logger).deleted(finalized)
            return
        runtime.seen[uid] = int(body.metadata.get("generation") or 0)
        if runtime.already_handled(uid, body.metadata.get("resourceVersion"), echo=True):
            return
        # Queued, not reconciled here: see workqueue.py.
        runtime.work.add(uid, dict(body), "event")
