"""The cloud side of a DISyncInstance: observe, start and stop its DataWorks task. Crossplane's ExternalClient.

This is the one place that knows DataWorks: the request models, the task-type mapping and the endpoint each region
goes to. The reconciler hands it a spec and credentials and gets typed answers or a `DataWorksError`; the policy
(conditions, backoff, exactly-once) lives outside it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from disync_operator import types as t
from disync_operator.controller.settings import OperatorSettings
from disync_operator.dataworks import (
    ActionResponse,
    CallBudget,
    ClientOptions,
    CredentialsProvider,
    DataWorksClient,
    DataWorksError,
    GetDISyncInstanceInfoRequest,
    InstanceInfoResponse,
    StartDISyncInstanceRequest,
    StopDISyncInstanceRequest,
    TokenBucket,
    UnknownRegionError,
    resolve_endpoint,
)
from disync_operator.dataworks import TaskType as ApiTaskType

CallHook = Callable[[str, str, float], None]
WriteIntent = Callable[[], Awaitable[t.StartIntent]]
WriteStopIntent = Callable[[], Awaitable[t.StopIntent]]


@dataclass(frozen=True)
class StartOutcome:
    """What became of a start: the intent written before the request left (None: it never left), and the API's
    answer or the error. Exactly one of `response` and `error` is set."""

    intent: t.StartIntent | None
    response: ActionResponse | None = None
    error: DataWorksError | None = None


@dataclass(frozen=True)
class StopOutcome:
    """What became of a suspend's stop, as `StartOutcome` for a start."""

    intent: t.StopIntent | None
    response: ActionResponse | None = None
    error: DataWorksError | None = None


class DataWorksTask:
    def __init__(
        self,
        settings: OperatorSettings,
        default_credentials: CredentialsProvider,
        *,
        on_call: CallHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        before_call: Callable[[], None] = lambda: None,
    ) -> None:
        """`before_call` runs before every call and may raise to stop it (the leadership check)."""
        self._settings = settings
        self._before_call = before_call
        self._default_credentials = default_credentials
        self._transport = transport
        self._options = ClientOptions(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            call_timeout=settings.call_timeout,
            max_response_bytes=settings.max_response_bytes,
            qps=settings.qps,
            max_concurrency=settings.max_concurrency,
            on_call=on_call,
        )
        # One budget for the process, whatever the region: DataWorks throttles per account. The endpoint clients
        # are as many as the allow-list has hosts at most, and each closes idle connections itself (httpx keep-alive).
        self._budget = CallBudget(settings.qps, settings.max_concurrency)
        # How long after its intent is written a start may still leave: what the intent's lease leaves once the
        # call's own deadline is taken off, less a margin (settings ensure the lease outlasts a call).
        spare = settings.start_lease_seconds - settings.effective_call_timeout
        self._send_window = spare - 1.0 if spare > 2.0 else spare / 2
        # Following live states takes at most this share, so starts and stops never wait behind a sweep.
        observe_qps = settings.effective_observe_qps
        self._observe_budget = TokenBucket(observe_qps) if observe_qps is not None else None
        self._clients: dict[str, DataWorksClient] = {}
        self._addresses: dict[str, str] = {}  # region as written -> endpoint, for task_address

    def region_problem(self, spec: t.DISyncInstanceSpec) -> str | None:
        """Why the spec's region can't be used, before any call: only DataWorks regions (the official SDK's endpoint
        map, and DISYNC_EXTRA_REGIONS) ever become a host, so a CR can't send credentials anywhere else."""
        region = spec.region or self._settings.region
        if region is None:
            return None  # an endpoint override and no default region: the override is the one place calls go
        try:
            resolve_endpoint(region, extra_regions=self._settings.extra_regions)
        except UnknownRegionError as error:
            return f"spec.region: {error}"
        return None

    def task_address(self, region: object, project: object, file: object) -> str | None:
        """What DataWorks addresses a task by: the endpoint its calls go to, the project and the file (None if the
        spec names no usable task). No RegionId is sent, so two region names that resolve to one host (36 regions of
        the SDK's map share the central host) name one task, and with DISYNC_ENDPOINT every region does."""
        if not isinstance(project, int) or not isinstance(file, int):
            return None
        if region is not None and not isinstance(region, str):
            return None
        key = region or ""
        endpoint = self._addresses.get(key)
        if endpoint is None:
            try:
                endpoint = self.endpoint_for(region)
            except ValueError:  # an unknown region (InvalidSpec): it names no task
                return None
            if len(self._addresses) < 1024:  # regions are few; a flood of names is resolved each time, not kept
                self._addresses[key] = endpoint
        return f"{endpoint.split('://', 1)[-1]}/{project}/{file}"

    def endpoint_for(self, region: str | None) -> str:
        s = self._settings
        if s.endpoint:
            return resolve_endpoint(None, override=s.endpoint)
        return resolve_endpoint(region or s.region, vpc=s.use_vpc_endpoint, extra_regions=s.extra_regions)

    def _client(self, spec: t.DISyncInstanceSpec) -> DataWorksClient:
        """One pooled client per endpoint. The QPS limit and concurrency cap are per client, so with an endpoint
        override (every region goes to one place) all CRs share one budget."""
        endpoint = self.endpoint_for(spec.region)
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients[endpoint] = DataWorksClient(
                endpoint,
                self._default_credentials,
                options=self._options,
                transport=self._transport,
                budget=self._budget,
            )
        return client

    async def observe(
        self, spec: t.DISyncInstanceSpec, credentials: CredentialsProvider, *, follow_up: bool = False
    ) -> InstanceInfoResponse:
        """The task's live state (GetDISyncInstanceInfo). `follow_up`: the sweep's routine look, which waits for the
        observation budget first (a verification before a start does not)."""
        if follow_up and self._observe_budget is not None:
            await self._observe_budget.acquire()
        self._before_call()
        request = GetDISyncInstanceInfoRequest(
            project_id=spec.project_id, task_type=ApiTaskType(spec.task_type.value), file_id=spec.file_id
        )
        return await self._client(spec).get_instance_info(request, credentials=credentials)

    async def start(
        self, spec: t.DISyncInstanceSpec, credentials: CredentialsProvider, *, write_intent: WriteIntent
    ) -> StartOutcome:
        """StartDISyncInstance. `write_intent` runs once the rate limit lets the call go, before it takes one of
        the concurrency cap's slots (so the intent's time is close to the send time); the call leaves within the
        intent's lease minus its own deadline, or is not sent (a retryable error). If `write_intent` raises,
        nothing is sent and the error propagates."""
        self._before_call()
        request = StartDISyncInstanceRequest(
            project_id=spec.project_id,
            task_type=ApiTaskType(spec.task_type.value),
            file_id=spec.file_id,
            start_param=spec.api_start_param(),
        )
        written: list[t.StartIntent] = []

        async def before_send() -> float:
            # The intent's lease must cover the wait for a concurrency slot and the whole call: the call must
            # leave within the lease minus the call's deadline (with a margin), or not at all.
            send_by = time.monotonic() + self._send_window
            written.append(await write_intent())
            return send_by

        try:
            response = await self._client(spec).start_instance(
                request, credentials=credentials, before_send=before_send
            )
        except DataWorksError as error:
            return StartOutcome(written[0] if written else None, error=error)
        return StartOutcome(written[0], response=response)

    async def stop(self, spec: t.DISyncInstanceSpec, credentials: CredentialsProvider) -> ActionResponse:
        """StopDISyncInstance (real-time tasks only: the API has no stop for a solution)."""
        self._before_call()
        return await self._client(spec).stop_instance(self._stop_request(spec), credentials=credentials)

    async def stop_once(
        self, spec: t.DISyncInstanceSpec, credentials: CredentialsProvider, *, write_intent: WriteStopIntent
    ) -> StopOutcome:
        """StopDISyncInstance for a suspend: `write_intent` (the stop intent) and the send window as for a start."""
        self._before_call()
        written: list[t.StopIntent] = []

        async def before_send() -> float:
            send_by = time.monotonic() + self._send_window  # the stop intent has the start intent's lease
            written.append(await write_intent())
            return send_by

        try:
            response = await self._client(spec).stop_instance(
                self._stop_request(spec), credentials=credentials, before_send=before_send
            )
        except DataWorksError as error:
            return StopOutcome(written[0] if written else None, error=error)
        return StopOutcome(written[0], response=response)

    @staticmethod
    def _stop_request(spec: t.DISyncInstanceSpec) -> StopDISyncInstanceRequest:
        return StopDISyncInstanceRequest(
            project_id=spec.project_id, task_type=ApiTaskType(spec.task_type.value), file_id=spec.file_id
        )

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
