"""Async client for the DataWorks OpenAPI (dataworks-public 2020-05-18) DI sync-instance operations.

The public face is this module; everything behind it is private and may change::

    async with DataWorksClient(resolve_endpoint("cn-shanghai"), default_credentials_provider()) as client:
        info = await client.get_instance_info(
            GetDISyncInstanceInfoRequest(project_id=10000, task_type=TaskType.DI_REALTIME, file_id=100)
        )

Each call is one signed attempt (ACS3-HMAC-SHA256). Failures raise a :class:`DataWorksError` subclass whose
``retryable`` and ``retry_after`` tell the caller whether and when to try again.

A badly answering endpoint costs a bounded amount: a call ends within ``ClientOptions.effective_call_timeout``
(``TransportError`` code ``CallTimeout``), a body beyond ``ClientOptions.max_response_bytes``, received or decoded,
is abandoned unread (``MalformedResponseError`` code ``ResponseTooLarge``), and an action answered with a
``Data.Status`` other than success/fail raises :class:`UnknownOutcomeError`.

Credentials go only to DataWorks hosts: :func:`resolve_endpoint` takes a host from ``REGION_ENDPOINTS`` (the official
SDK's map) or builds it from a region id the operator's configuration allows, and raises :class:`UnknownRegionError`
otherwise. Credential values are checked by :func:`credential_problem`, which describes a bad value without quoting it.
"""

from ._client import API_VERSION, ClientOptions, DataWorksClient
from ._credentials import (
    Credentials,
    CredentialsProvider,
    EnvironmentCredentialsProvider,
    OIDCRoleCredentialsProvider,
    StaticCredentialsProvider,
    credential_problem,
    default_credentials_provider,
)
from ._endpoints import REGION_ENDPOINTS, UnknownRegionError, allowed_regions, resolve_endpoint
from ._errors import (
    AccessDeniedError,
    AuthenticationError,
    CallOutcome,
    ClockSkewError,
    CredentialsError,
    DataWorksError,
    InvalidParameterError,
    MalformedResponseError,
    NonceReusedError,
    OperationFailedError,
    RetryableError,
    ServerError,
    TerminalError,
    ThrottlingError,
    TransportError,
    UnknownOutcomeError,
    call_outcome,
)
from ._models import (
    AccessDeniedDetail,
    ActionData,
    ActionResponse,
    ErrorBody,
    GetDISyncInstanceInfoRequest,
    InstanceInfoData,
    InstanceInfoResponse,
    SolutionInfo,
    SolutionStep,
    StartDISyncInstanceRequest,
    StopDISyncInstanceRequest,
    TaskType,
    TerminateDISyncInstanceRequest,
)
from ._throttle import CallBudget, TokenBucket

__all__ = [
    "API_VERSION",
    "REGION_ENDPOINTS",
    "AccessDeniedDetail",
    "AccessDeniedError",
    "ActionData",
    "ActionResponse",
    "AuthenticationError",
    "CallBudget",
    "CallOutcome",
    "ClientOptions",
    "ClockSkewError",
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "DataWorksClient",
    "DataWorksError",
    "EnvironmentCredentialsProvider",
    "ErrorBody",
    "GetDISyncInstanceInfoRequest",
    "InstanceInfoData",
    "InstanceInfoResponse",
    "InvalidParameterError",
    "MalformedResponseError",
    "NonceReusedError",
    "OIDCRoleCredentialsProvider",
    "OperationFailedError",
    "RetryableError",
    "ServerError",
    "SolutionInfo",
    "SolutionStep",
    "StartDISyncInstanceRequest",
    "StaticCredentialsProvider",
    "StopDISyncInstanceRequest",
    "TaskType",
    "TerminalError",
    "TerminateDISyncInstanceRequest",
    "ThrottlingError",
    "TokenBucket",
    "TransportError",
    "UnknownOutcomeError",
    "UnknownRegionError",
    "allowed_regions",
    "call_outcome",
    "credential_problem",
    "default_credentials_provider",
    "resolve_endpoint",
]
