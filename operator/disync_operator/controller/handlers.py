"""kopf handlers for DISyncInstance. Thin: they gather facts, ask `policy`, and apply what it says.

- create / resume / spec change -> start the current generation (exactly once; see policy.decide_start)
- the shared sweep (sweep.py)   -> follows the live state; retries a terminal failure once the credentials changed
- delete                        -> StopDISyncInstance (DI_REALTIME, deletionPolicy Stop), then release the finalizer
"""

from __future__ import annotations

import asyncio
from typing import Any

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
from disync_operator.controller.kube import Conflict
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

    async def write(self, patch: policy.StatusPatch, *, precondition: bool = False) -> None:
        kube = await self.rt.kube()
        rv = self.resource_version if precondition else None
        updated = await kube.patch_status(self.namespace, self.name, patch, resource_version=rv)
        self.resource_version = updated.get("metadata", {}).get("resourceVersion")
        self.status = t.DISyncInstanceStatus.model_validate(updated.get("status") or {})
        ready = self.status.condition(policy.READY)
        self.rt.metrics.set_ready(_key(self.body), ready.status if ready else "Unknown")

    def event(self, type_: str, reason: str, message: str) -> None:
        kopf.event(self.body, type=type_, reason=reason, message=message)

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

    async def start(self) -> None:
        self.rt.seen[self.body.metadata.uid or ""] = self.generation
        at = policy.now()
        spec, problem = self.spec()
        if spec is None:
            if self.status.failed_generation != self.generation:
                await self.write(policy.invalid_spec(self.status, self.generation, problem, at))
                self.event("Warning", policy.Reason.INVALID_SPEC, problem)
            return
        try:
            creds = await self.credentials(spec)
        except CredentialsUnavailable as error:
            if self.status.failed_generation == self.generation and self.status.credentials_version == error.version:
                return
            await self.write(policy.failed_terminally(self.status, self.generation, error, error.version, at))
            self.event("Warning", policy.Reason.CREDENTIALS_UNAVAILABLE, str(error))
            return

        decision = policy.decide_start(
            generation=self.generation,
            status=self.status,
            credentials_version=creds.version,
            lease_seconds=self.rt.settings.start_lease_seconds,
            at=at,
        )
        self.logger.debug("start decision: %s %s", decision.action, decision.why)
        if decision.action is policy.Action.NOTHING:
            return
        if decision.action is policy.Action.WAIT:
            raise kopf.TemporaryError(decision.why, delay=max(1.0, decision.wait_seconds))

        client = self.rt.dataworks(spec.region)
        if decision.action is policy.Action.VERIFY:
            try:
                info = await client.get_instance_info(_info_request(spec), credentials=creds.provider)
            except DataWorksError as error:
                # A failed verification is a failed attempt too: it must back off like one.
                await self._failed(error, creds, keep_pending=True, count_attempt=True)
                return
            if policy.start_took_effect(spec.task_type, info):
                await self.write(
                    policy.started(
                        self.status, self.generation, None, creds.version, at, verified_state=info.data.status
                    )
                )
                self.logger.info("generation %s was already started (live state %s)", self.generation, info.data.status)
                return

        request = StartDISyncInstanceRequest(
            project_id=spec.project_id,
            task_type=_api_task_type(spec),
            file_id=spec.file_id,
            start_param=spec.api_start_param(),
        )

        async def record_intent() -> None:
            # Runs when the client's rate limit lets the call go: `since` is the send time, so the lease that other
            # processes respect covers the call's flight, not its time in the queue.
            await self.write(policy.intent(self.status, self.generation, self.rt.me, policy.now()), precondition=True)

        try:
            response = await client.start_instance(request, credentials=creds.provider, before_send=record_intent)
        except Conflict:
            # Someone (another operator process, or kopf) changed the object since this handler saw it.
            raise kopf.TemporaryError("the object changed meanwhile; re-reading it", delay=1) from None
        except DataWorksError as error:
            await self._failed(error, creds, keep_pending=policy.start_may_have_happened(error))
            return
        await self.write(policy.started(self.status, self.generation, response, creds.version, policy.now()))
        self.logger.info(
            "started generation %s (RequestId %s)",
            self.generation,
            response.request_id,
            extra={"request_id": response.request_id},
        )
        self.event("Normal", "Started", f"StartDISyncInstance succeeded (RequestId {response.request_id})")

    async def _failed(
        self, error: DataWorksError, creds: ResolvedCredentials, *, keep_pending: bool, count_attempt: bool = False
    ) -> None:
        at = policy.now()
        extra = {"request_id": error.request_id, "code": error.code}
        if not error.retryable:
            await self.write(policy.failed_terminally(self.status, self.generation, error, creds.version, at))
            reason = policy.error_reason(error)
            self.logger.warning("start failed terminally: %s", error, extra=extra)
            self.event("Warning", reason, policy.error_summary(error))
            return
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
        raise kopf.TemporaryError(policy.error_summary(error), delay=delay)

    # -- observe ------------------------------------------------------------------------------------------------

    async def observe(self) -> None:
        spec, _ = self.spec()
        if spec is None or self.body.metadata.get("deletionTimestamp"):
            return
        if self.status.started_generation == self.generation:
            try:
                creds = await self.credentials(spec)
                info = await self.rt.dataworks(spec.region).get_instance_info(
                    _info_request(spec), credentials=creds.provider
                )
            except DataWorksError as error:
                self.logger.debug("live state not read: %s", error)
                return
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
                await self.start()

    def _invalid_spec_failure(self) -> bool:
        return self.status.last_error is not None and self.status.last_error.code == "InvalidSpec"

    # -- delete -------------------------------------------------------------------------------------------------

    async def stop(self, retry: int) -> None:
        self.rt.metrics.set_ready(_key(self.body), None)
        spec, _ = self.spec()
        if spec is None:
            return
        if spec.deletion_policy is t.DeletionPolicy.ORPHAN:
            self.event("Normal", "Orphaned", "deletionPolicy Orphan: the task is left as it is")
            return
        if spec.task_type is not t.TaskType.DI_REALTIME:
            return  # only real-time tasks can be stopped
        if self.status.started_generation is None and self.status.pending_start is None:
            return  # never started by us
        try:
            creds = await self.credentials(spec)
            response = await self.rt.dataworks(spec.region).stop_instance(
                _stop_request(spec), credentials=creds.provider
            )
        except OperationFailedError as error:
            # The API answered "fail" (e.g. the task no longer exists): nothing left to stop.
            self.logger.warning("stop reported failure, releasing: %s", error)
            self.event("Warning", "StopReportedFailure", policy.error_summary(error))
            return
        except DataWorksError as error:
            delay = self.rt.backoff.delay(retry + 1, error.retry_after)
            if not error.retryable:
                await self.write(policy.stop_blocked(self.status, self.generation, error, policy.now()))
                self.event("Warning", policy.Reason.STOP_FAILED, policy.error_summary(error))
                delay = max(delay, min(60.0, self.rt.backoff.cap))
            raise kopf.TemporaryError(f"stop failed: {policy.error_summary(error)}", delay=delay) from None
        self.logger.info("stopped", extra={"request_id": response.request_id})
        self.event("Normal", "Stopped", f"StopDISyncInstance succeeded (RequestId {response.request_id})")


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the handlers on `registry` (explicit, so tests and the CLI build operators side by side)."""

    @kopf.on.login(registry=registry)
    def login(*, memo: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None:
            memo.runtime.connected(info)
        return info

    @kopf.on.startup(registry=registry)
    async def start_sweep(*, memo: Any, settings: kopf.OperatorSettings, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        runtime.kopf_settings = settings
        runtime.background.append(asyncio.create_task(sweep_forever(runtime), name="disync-sweep"))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(*, memo: Any, **_: Any) -> None:
        await memo.runtime.aclose()

    @kopf.on.resume(*RESOURCE, id="start", registry=registry)
    @kopf.on.create(*RESOURCE, id="start", registry=registry)
    @kopf.on.update(*RESOURCE, id="start", field="spec", registry=registry)
    async def start(*, body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
        await Reconciler(memo.runtime, body, logger).start()

    @kopf.on.delete(*RESOURCE, id="stop", registry=registry)
    async def stop(*, body: kopf.Body, memo: Any, logger: kopf.Logger, retry: int, **_: Any) -> None:
        await Reconciler(memo.runtime, body, logger).stop(retry)
