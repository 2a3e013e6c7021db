"""Typed request and response bodies of the four DI sync-instance operations (dataworks-public 2020-05-18).

Python attribute names are snake_case; wire names are the API's PascalCase (``RequestId``, ``Data``,
``SolutionInfo``...). Models accept either when built in Python (the emulator builds responses by field name)
and serialise to wire names via :meth:`WireModel.to_wire`.

Responses are validated from JSON in *strict* mode by the client (``parse_wire``): ``"Success": "yes"`` or
``"Data": []`` are protocol violations we want to surface as ``MalformedResponseError``, not to coerce.
Unknown fields are ignored so that the API can grow without breaking the operator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_pascal

__all__ = [
    "AccessDeniedDetail",
    "ActionData",
    "ActionResponse",
    "ApiResponse",
    "ErrorBody",
    "GetDISyncInstanceInfoRequest",
    "InstanceInfoData",
    "InstanceInfoResponse",
    "SolutionInfo",
    "SolutionStep",
    "StartDISyncInstanceRequest",
    "StopDISyncInstanceRequest",
    "TaskType",
    "TerminateDISyncInstanceRequest",
    "WireModel",
]


class TaskType(StrEnum):
    DI_REALTIME = "DI_REALTIME"
    DI_SOLUTION = "DI_SOLUTION"


class WireModel(BaseModel):
    """Base for API bodies: PascalCase aliases, immutable, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        frozen=True,
        extra="ignore",
    )

    @classmethod
    def parse_wire(cls, raw: bytes | str) -> Self:
        """Validate a JSON body strictly (no type coercion). Raises pydantic.ValidationError."""
        return cls.model_validate_json(raw, strict=True)

    def to_wire(self) -> dict[str, Any]:
        """JSON-compatible dict keyed by wire names (for the emulator and for tests)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_wire_json(self) -> bytes:
        return json.dumps(self.to_wire(), separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------------- requests


class _InstanceRequest(WireModel):
    """Fields shared by all four operations. Field order is irrelevant: the query is sorted for signing."""

    action: ClassVar[str]

    project_id: int = Field(gt=0)
    task_type: TaskType
    file_id: int = Field(gt=0)

    def to_query(self) -> dict[str, str]:
        """The request's query parameters, values as the SDK stringifies them (integers as decimal strings)."""
        return {
            "FileId": str(self.file_id),
            "ProjectId": str(self.project_id),
            "TaskType": self.task_type.value,
        }

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Self:
        """Build from decoded query parameters (emulator side). Raises pydantic.ValidationError."""
        return cls.model_validate(dict(query))


class StartDISyncInstanceRequest(_InstanceRequest):
    action: ClassVar[str] = "StartDISyncInstance"

    start_param: str | None = None

    @field_validator("start_param")
    @classmethod
    def _empty_is_absent(cls, value: str | None) -> str | None:
        # An empty query value is signed as "StartParam=" by some SDK versions and "StartParam" by others;
        # it carries no meaning for the API, so never send one.
        return value or None

    def to_query(self) -> dict[str, str]:
        query = super().to_query()
        if self.start_param is not None:
            query["StartParam"] = self.start_param
        return query


class StopDISyncInstanceRequest(_InstanceRequest):
    action: ClassVar[str] = "StopDISyncInstance"


class TerminateDISyncInstanceRequest(_InstanceRequest):
    action: ClassVar[str] = "TerminateDISyncInstance"


class GetDISyncInstanceInfoRequest(_InstanceRequest):
    action: ClassVar[str] = "GetDISyncInstanceInfo"


# -------------------------------------------------------------------------------------------------- responses


class ActionData(WireModel):
    """``Data`` of Start/Stop/Terminate: ``Status`` is ``success`` or ``fail``; ``Message`` explains a failure."""

    status: str
    message: str | None = None


class ApiResponse(WireModel):
    """Envelope fields every successful (HTTP 2xx) response carries."""

    request_id: str
    success: bool


class ActionResponse(ApiResponse):
    data: ActionData


class SolutionStep(WireModel):
    step_id: int | None = None
    step_name: str | None = None
    status: str | None = None
    info: str | None = None


class SolutionInfo(WireModel):
    id: int | None = None
    creator_name: str | None = None
    status: str | None = None
    step_detail: tuple[SolutionStep, ...] = ()


class InstanceInfoData(WireModel):
    """``Status``: DI_REALTIME → RUN/PAUSE/NORUN/WAIT/KILLING; DI_SOLUTION → success/fail; ``fail`` + Message
    (e.g. ``fileId:[N] is invalid.``) when the lookup itself failed. Interpreting it is the caller's job."""

    status: str | None = None
    message: str | None = None
    name: str | None = None
    solution_info: SolutionInfo | None = None


class InstanceInfoResponse(ApiResponse):
    data: InstanceInfoData


# ----------------------------------------------------------------------------------------------------- errors


def _alias(*names: str) -> Any:
    # The SDK reads both ``Code`` and ``code`` (some gateways answer camelCase); accept either, emit PascalCase.
    return Field(default=None, validation_alias=AliasChoices(*names), serialization_alias=names[0])


class AccessDeniedDetail(WireModel):
    """Optional 403 detail. Unknown keys are kept (``extra="allow"``) because they are diagnostics."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    auth_action: str | None = None
    auth_principal_display_name: str | None = None
    auth_principal_owner_id: str | None = None
    auth_principal_type: str | None = None
    no_permission_type: str | None = None
    policy_type: str | None = None


class ErrorBody(WireModel):
    """The POP gateway's error document: ``{RequestId, HostId, Code, Message, Recommend, AccessDeniedDetail?}``.

    Parsed leniently (numbers become strings, a malformed AccessDeniedDetail is dropped): an error that is
    slightly odd is still far more useful classified by its Code than reported as malformed.
    """

    model_config = ConfigDict(coerce_numbers_to_str=True)

    request_id: str | None = _alias("RequestId", "requestId")
    host_id: str | None = _alias("HostId", "hostId")
    code: str | None = _alias("Code", "code")
    message: str | None = _alias("Message", "message")
    recommend: str | None = _alias("Recommend", "recommend")
    access_denied_detail: AccessDeniedDetail | None = _alias("AccessDeniedDetail", "accessDeniedDetail")

    @field_validator("access_denied_detail", mode="before")
    @classmethod
    def _drop_non_object(cls, value: object) -> object:
        return value if isinstance(value, dict) else None

    @classmethod
    def parse_error(cls, raw: bytes) -> ErrorBody | None:
        """None unless ``raw`` is a JSON object carrying at least a Code or a RequestId."""
        try:
            decoded = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(decoded, dict):
            return None
        try:
            body = cls.model_validate(decoded)
        except ValueError:
            return None
        if body.code is None and body.request_id is None:
            return None
        return body
