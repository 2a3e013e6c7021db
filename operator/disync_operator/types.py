"""The DISyncInstance custom resource: spec and status as pydantic models.

These models are the single source of truth: `disync_operator.crd` generates the CRD's OpenAPI schema (with its
descriptions, bounds, enums and CEL rules) from them, and a test checks that deploy/crds/ matches the output.
The operator reads every CR through `DISyncInstanceSpec.model_validate` and writes status only through
`DISyncInstanceStatus`, so what the API server admits and what the operator understands cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

GROUP = "disync.dev"
VERSION = "v1alpha1"
KIND = "DISyncInstance"
PLURAL = "disyncinstances"
SINGULAR = "disyncinstance"
SHORT_NAMES = ["dsi"]
FINALIZER = f"{GROUP}/stop-instance"
# The start intent (`StartIntent`), written on the object itself (with our finalizer, in one write) when
# StartDISyncInstance is sent; a status write answers it (`status.answeredIntent` names the intent it answers).
START_INTENT = f"{GROUP}/start-intent"
# The stop intent (`StopIntent`) of a `spec.suspend`: the same mechanism for StopDISyncInstance (answered by
# `status.answeredStopIntent`), so a suspend stops the task exactly once.
STOP_INTENT = f"{GROUP}/stop-intent"
# `disync.dev/paused: "true"`: hands off this object (no DataWorks call, no write but one condition).
PAUSED = f"{GROUP}/paused"

DESCRIPTION = "A DataWorks real-time synchronization task or synchronization solution, kept started."

# CEL rules the API server enforces at admission: what a plain schema cannot say. The model enforces the same
# rules with the same messages (DISyncInstanceSpec._start_param_rules), so both admit exactly the same specs.
CEL = "x-kubernetes-validations"
BOTH_FORMS = "set either startParam or startParamJSON, not both"
NEEDS_START_PARAM = "a DI_REALTIME task needs startParam or startParamJSON (managementPolicy ObserveOnly does not)"
ONLY_REALTIME = "startParam and startParamJSON apply only to taskType DI_REALTIME"
SUSPEND_ONLY_REALTIME = "suspend applies only to taskType DI_REALTIME: DataWorks can't stop a solution"
RESTART_ONLY_REALTIME = "restartPolicy OnFailure applies only to taskType DI_REALTIME"
SUSPEND_NEEDS_FULL = "suspend needs managementPolicy Full: ObserveOnly never stops the task"
RESTART_NEEDS_FULL = "restartPolicy OnFailure needs managementPolicy Full: ObserveOnly never starts the task"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class _Written(BaseModel):
    """What the operator writes and reads back (status, the start intent): fields it doesn't know are ignored, so a
    status written by a newer version (or defaults a newer CRD adds) never makes an older one lose its record of
    what was started. Only input from users (the spec) is held strictly."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class TaskType(StrEnum):
    DI_REALTIME = "DI_REALTIME"
    DI_SOLUTION = "DI_SOLUTION"


class DeletionPolicy(StrEnum):
    STOP = "Stop"
    ORPHAN = "Orphan"


class ManagementPolicy(StrEnum):
    FULL = "Full"
    OBSERVE_ONLY = "ObserveOnly"


class RestartPolicy(StrEnum):
    NEVER = "Never"
    ON_FAILURE = "OnFailure"


class DDLAction(StrEnum):
    NORMAL = "NORMAL"
    IGNORE = "IGNORE"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class FailoverLimit(_Model):
    """How often the real-time task may fail over before it stops."""

    count: int = Field(ge=0, le=10_000, description="Number of failovers allowed within `interval`.")
    interval: int = Field(
        ge=0, le=86_400, description="Window over which failovers are counted (the API's `interval`)."
    )


class ErrorLimit(_Model):
    record: int = Field(ge=0, le=1_000_000_000, description="Dirty-data records tolerated before the task fails.")


_DDL_DOC = "What the task does when the source emits this DDL: NORMAL, IGNORE, WARNING or CRITICAL."


class DDLMarkMap(_Model):
    """Per-DDL-kind handling in the real-time task; kinds left out keep DataWorks' default."""

    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="forbid", frozen=True)

    ADDCOLUMN: DDLAction | None = Field(default=None, description=_DDL_DOC)
    DROPCOLUMN: DDLAction | None = Field(default=None, description=_DDL_DOC)
    RENAMECOLUMN: DDLAction | None = Field(default=None, description=_DDL_DOC)
    MODIFYCOLUMN: DDLAction | None = Field(default=None, description=_DDL_DOC)
    CREATETABLE: DDLAction | None = Field(default=None, description=_DDL_DOC)
    DROPTABLE: DDLAction | None = Field(default=None, description=_DDL_DOC)
    RENAMETABLE: DDLAction | None = Field(default=None, description=_DDL_DOC)
    TRUNCATETABLE: DDLAction | None = Field(default=None, description=_DDL_DOC)


class StartParam(_Model):
    """Start-up parameters of a real-time task (the API's StartParam, as a typed object)."""

    failover_limit: FailoverLimit | None = Field(default=None, description="Failover policy.")
    error_limit: ErrorLimit | None = Field(default=None, description="Dirty-data tolerance.")
    ddl_mark_map: DDLMarkMap | None = Field(default=None, description="DDL handling per DDL kind.")

    def to_api_json(self) -> str:
        """The compact JSON string DataWorks expects in StartParam (camelCase keys, unset parts left out)."""
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"))


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key(s) in startParamJSON: {', '.join(duplicates)}")
    return dict(pairs)


def parse_start_param_json(text: str) -> StartParam:
    """startParamJSON, held to exactly what the typed `startParam` admits (the API server checks that one with the
    CRD's schema, this one only the operator can check): strict types (no "5" or true for a number), the API's
    camelCase keys only, no unknown or duplicate keys. What is sent is re-serialised from the parsed model."""
    try:
        json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        # Python's parser recurses per nesting level; a deep document is no StartParam (which nests three deep).
        raise ValueError("startParamJSON is nested too deeply to be a StartParam") from None
    return StartParam.model_validate_json(text, strict=True, by_alias=True, by_name=False)


# Kubernetes' own rules: a Secret's name is a DNS subdomain; a key in its data is [-._a-zA-Z0-9]+.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"


class SecretKeyNames(_Model):
    access_key_id: str = Field(
        default="accessKeyId",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
        description="Key holding the AccessKey ID.",
    )
    access_key_secret: str = Field(
        default="accessKeySecret",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
        description="Key holding the AccessKey secret.",
    )
    security_token: str = Field(
        default="securityToken",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
        description="Key holding an STS token (optional in the Secret).",
    )


class SecretReference(_Model):
    """A Secret in the DISyncInstance's own namespace; other namespaces cannot be named."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Secret name (a DNS subdomain).")
    keys: SecretKeyNames | None = Field(default=None, description="Key names inside the Secret, if not the defaults.")
    namespace: str | None = Field(
        default=None,
        max_length=63,
        description=(
            "Not allowed. Declared only so that a CR naming another namespace is refused at admission instead of the "
            "field being silently dropped: the Secret is always read from the DISyncInstance's own namespace."
        ),
    )

    @field_validator("namespace")
    @classmethod
    def _no_other_namespace(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("secretRef.namespace is not allowed: the Secret must be in the DISyncInstance's namespace")
        return value


class CredentialsSpec(_Model):
    """Where the AccessKey for this instance comes from. Without it the operator's own identity is used."""

    secret_ref: SecretReference = Field(
        description="Secret with accessKeyId, accessKeySecret and optional securityToken."
    )


# The spec fields that say how to manage the task, not how to start it.
LIFECYCLE_FIELDS = {"suspend", "management_policy", "restart_policy"}


class DISyncInstanceSpec(_Model):
    """Desired state: which DataWorks sync task to start, with which parameters, as whom."""

    project_id: int = Field(ge=1, le=2**63 - 1, description="DataWorks workspace (project) ID.")
    task_type: TaskType = Field(
        description="DI_REALTIME: a real-time synchronization task. DI_SOLUTION: a data synchronization solution."
    )
    file_id: int = Field(
        ge=1, le=2**63 - 1, description="ID of the real-time task (DI_REALTIME) or of the solution (DI_SOLUTION)."
    )
    start_param: StartParam | None = Field(
        default=None, description="Start parameters as an object (DI_REALTIME only). Exclusive with startParamJSON."
    )
    start_param_json: str | None = Field(
        default=None,
        alias="startParamJSON",
        min_length=2,
        max_length=65_536,
        description=(
            "Start parameters as the API's JSON string, for users who already have it (DI_REALTIME only). "
            "Exclusive with startParam. Checked against the same schema before any call."
        ),
    )
    region: str | None = Field(
        default=None,
        min_length=2,
        max_length=64,
        pattern=r"^[a-z]{2,}(-[a-z0-9]+)+$",
        description=(
            "Alibaba Cloud region (e.g. cn-shanghai). Defaults to the operator's region. Selects only among "
            "DataWorks' own endpoints: the endpoint itself is operator configuration, never set by a CR."
        ),
    )
    credentials: CredentialsSpec | None = Field(
        default=None, description="Credentials for this instance. Default: the operator's (environment or RRSA)."
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.STOP,
        description="On delete, Stop the real-time task (default) or Orphan it (leave it running).",
    )
    suspend: bool = Field(
        default=False,
        description=(
            "true: stop the real-time task (StopDISyncInstance, once) and keep it stopped, e.g. for a maintenance "
            "window; Ready is False with reason Suspended. Back to false: started once. DI_REALTIME only. Flipping "
            "it is no change of the start parameters: it never starts a suspended task, nor twice on resume."
        ),
    )
    management_policy: ManagementPolicy = Field(
        default=ManagementPolicy.FULL,
        description=(
            "Full (default): start, follow and stop the task. ObserveOnly: only follow its live state (status and "
            "Ready reason Observed or NotRunning): never start or stop it, no finalizer. ObserveOnly -> Full takes "
            "the task over: recorded as started (reason Adopted) if it runs, else started once."
        ),
    )
    restart_policy: RestartPolicy = Field(
        default=RestartPolicy.NEVER,
        description=(
            "Never (default): a started task found stopped is reported (NotRunning). OnFailure: started again with "
            "exponential backoff, counted in status.restarts, at most DISYNC_MAX_RESTARTS_PER_HOUR an hour. A stop "
            "by the operator itself (suspend, deletion) is never undone. DI_REALTIME only."
        ),
    )

    @field_validator("start_param_json")
    @classmethod
    def _start_param_json_is_a_start_param(cls, value: str | None) -> str | None:
        if value is not None:
            parse_start_param_json(value)
        return value

    @model_validator(mode="after")
    def _start_param_rules(self) -> DISyncInstanceSpec:
        # The same rules as SPEC_RULES (CEL, enforced by the API server), so the model admits exactly what it admits.
        has_object, has_json = self.start_param is not None, self.start_param_json is not None
        if has_object and has_json:
            raise ValueError(BOTH_FORMS)
        observe_only = self.management_policy is ManagementPolicy.OBSERVE_ONLY  # adopting a console task: no start
        if self.task_type is TaskType.DI_REALTIME and not (has_object or has_json or observe_only):
            raise ValueError(NEEDS_START_PARAM)
        if self.task_type is not TaskType.DI_REALTIME and (has_object or has_json):
            raise ValueError(ONLY_REALTIME)
        return self

    @model_validator(mode="after")
    def _lifecycle_rules(self) -> DISyncInstanceSpec:
        # The same rules as LIFECYCLE_RULES (CEL).
        realtime = self.task_type is TaskType.DI_REALTIME
        on_failure = self.restart_policy is RestartPolicy.ON_FAILURE
        observe_only = self.management_policy is ManagementPolicy.OBSERVE_ONLY
        if self.suspend and not realtime:
            raise ValueError(SUSPEND_ONLY_REALTIME)
        if on_failure and not realtime:
            raise ValueError(RESTART_ONLY_REALTIME)
        if self.suspend and observe_only:
            raise ValueError(SUSPEND_NEEDS_FULL)
        if on_failure and observe_only:
            raise ValueError(RESTART_NEEDS_FULL)
        return self

    @property
    def observe_only(self) -> bool:
        return self.management_policy is ManagementPolicy.OBSERVE_ONLY

    def start_digest(self) -> str:
        """What a start was made with: the spec without the lifecycle fields (suspend, managementPolicy,
        restartPolicy), defaults left out so a default written out or a field added later changes nothing. Two
        generations with the same digest need no second start (`status.startedSpecDigest`)."""
        essence = self.model_dump(
            mode="json", by_alias=True, exclude_defaults=True, exclude=LIFECYCLE_FIELDS, exclude_none=True
        )
        text = json.dumps(essence, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def api_start_param(self) -> str | None:
        """StartParam as sent to the API, from whichever of the two forms the user chose."""
        if self.task_type is not TaskType.DI_REALTIME:
            return None
        if self.start_param is not None:
            return self.start_param.to_api_json()
        if self.start_param_json is not None:
            return parse_start_param_json(self.start_param_json).to_api_json()
        return None


SECRET_REF_RULES: list[dict[str, str]] = [
    {
        "rule": "!has(self.__namespace__)",
        "message": "secretRef.namespace is not allowed: the Secret must be in the DISyncInstance's own namespace",
        "fieldPath": ".namespace",
        "reason": "FieldValueForbidden",
    }
]

SPEC_RULES: list[dict[str, str]] = [
    {
        "rule": "!(has(self.startParam) && has(self.startParamJSON))",
        "message": BOTH_FORMS,
        "fieldPath": ".startParamJSON",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "self.taskType != 'DI_REALTIME' || has(self.startParam) || has(self.startParamJSON) || "
        "(has(self.managementPolicy) && self.managementPolicy == 'ObserveOnly')",
        "message": NEEDS_START_PARAM,
        "fieldPath": ".startParam",
        "reason": "FieldValueRequired",
    },
    {
        "rule": "self.taskType == 'DI_REALTIME' || (!has(self.startParam) && !has(self.startParamJSON))",
        "message": ONLY_REALTIME,
        "fieldPath": ".startParam",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "!has(self.suspend) || !self.suspend || self.taskType == 'DI_REALTIME'",
        "message": SUSPEND_ONLY_REALTIME,
        "fieldPath": ".suspend",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "!has(self.restartPolicy) || self.restartPolicy != 'OnFailure' || self.taskType == 'DI_REALTIME'",
        "message": RESTART_ONLY_REALTIME,
        "fieldPath": ".restartPolicy",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "!has(self.suspend) || !self.suspend || !has(self.managementPolicy) || "
        "self.managementPolicy != 'ObserveOnly'",
        "message": SUSPEND_NEEDS_FULL,
        "fieldPath": ".suspend",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "!has(self.restartPolicy) || self.restartPolicy != 'OnFailure' || !has(self.managementPolicy) || "
        "self.managementPolicy != 'ObserveOnly'",
        "message": RESTART_NEEDS_FULL,
        "fieldPath": ".restartPolicy",
        "reason": "FieldValueForbidden",
    },
]

# --- status ------------------------------------------------------------------------------------------------------

# ANSI escape sequences and control characters other than tab and line feed: the cloud's text reaches terminals
# through `kubectl get`/`describe`, and must not drive them.
_CONTROLS = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b.|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
CUT = "…[cut]"


def bounded(value: object, limit: int) -> object:
    """Text from the cloud as status may hold it: control characters and escape sequences dropped, and cut to
    `limit` characters with a visible marker. Everything the API sends passes here before it reaches status (and so
    conditions and Events): a value too long for the CRD's schema would fail every status write with 422, leaving
    the resource with no status at all."""
    if not isinstance(value, str):
        return value
    text = _CONTROLS.sub("", value)
    return text if len(text) <= limit else text[: limit - len(CUT)] + CUT


def CloudText(limit: int) -> BeforeValidator:
    return BeforeValidator(lambda value: bounded(value, limit))


STATUS_LEN, MESSAGE_LEN, REQUEST_ID_LEN, CODE_LEN, CONDITION_MESSAGE_LEN = 64, 4096, 256, 256, 32768
# The most DISYNC_MAX_RESTARTS_PER_HOUR may be: `status.restartTimes` holds one time per restart of the last hour.
MAX_RESTARTS_PER_HOUR = 100

ConditionStatus = Literal["True", "False", "Unknown"]
RestartTime = Annotated[dt.datetime, Field(description="When a restart was made.")]


class Condition(_Written):
    """A metav1.Condition."""

    type: str = Field(max_length=316, description="Ready or Synced.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(default=None, ge=0, description="Generation this condition describes.")
    last_transition_time: dt.datetime = Field(description="When status last changed.")
    reason: str = Field(max_length=1024, description="CamelCase reason (see the README for each).")
    message: Annotated[str, CloudText(CONDITION_MESSAGE_LEN)] = Field(
        default="", max_length=CONDITION_MESSAGE_LEN, description="Human-readable detail."
    )


class Intent(_Written):
    """A call about to be sent, written on the object before it leaves (one metadata write with a resourceVersion
    precondition), so that a crash or a lost response can never lead to a second call for the same purpose. A
    status write *answers* it; one whose outcome stays unknown is kept in status as unverified and verified with
    GetDISyncInstanceInfo before any new call."""

    generation: int = Field(ge=0, description="Generation the call is made for.")
    # With a timezone: a bare local time is not a date another process can read (it is unreadable, not a crash).
    since: AwareDatetime = Field(
        description=(
            "When the call was sent, by its sender's clock: information only; a reader times the intent on its own "
            "clock, from when it first saw it."
        )
    )
    owner: str = Field(max_length=253, description="Operator process that made the call.")
    id: str | None = Field(default=None, max_length=64, description="This intent's identity (random).")
    call_ended: bool = Field(
        default=False,
        # "answered": the name before v0.2, still read from intents written then.
        validation_alias=AliasChoices("callEnded", "call_ended", "answered"),
        serialization_alias="callEnded",
        description=(
            "The call got an HTTP answer (e.g. a 5xx) whose effect is unknown: nothing is in flight any more, so the "
            "outcome can be verified at once. Without an answer (timeout, reset) the lease is waited out first."
        ),
    )

    answer_lost: bool = Field(
        default=False,
        description=(
            "The request left and its answer was lost (a reset or timeout after sending): the call may have taken "
            "effect, so it counts as made. Set only by the operator, in status."
        ),
    )

    def annotation(self) -> str:
        """The annotation's value. `callEnded` and `answerLost` are always false on the object; left out, the
        annotation reads the same to every version of the operator."""
        return self.model_dump_json(exclude={"call_ended", "answer_lost"}, exclude_none=True)


class StartIntent(Intent):
    """A StartDISyncInstance about to be sent (annotation `disync.dev/start-intent`), answered by
    `status.answeredIntent`; one whose outcome stays unknown is kept as `unverifiedIntent`."""

    restart: int | None = Field(
        default=None,
        ge=1,
        description="For a restart (restartPolicy OnFailure): which one it is (status.restarts once it took effect).",
    )


class StopIntent(Intent):
    """A StopDISyncInstance of a `suspend` about to be sent (annotation `disync.dev/stop-intent`), answered by
    `status.answeredStopIntent`; one whose outcome stays unknown is kept as `unverifiedStopIntent`."""


class LastError(_Written):
    code: Annotated[str | None, CloudText(CODE_LEN)] = Field(
        default=None, max_length=CODE_LEN, description="API error code, or the client error kind."
    )
    http_status: int | None = Field(default=None, description="HTTP status of the failed call.")
    retryable: bool = Field(description="Whether the operator will retry on its own.")


class DISyncInstanceStatus(_Written):
    """Observed state, written only by the operator through the status subresource."""

    status: Annotated[str | None, CloudText(STATUS_LEN)] = Field(
        default=None, max_length=STATUS_LEN, description="Data.Status of the last start: success | fail."
    )
    message: Annotated[str | None, CloudText(MESSAGE_LEN)] = Field(
        default=None, max_length=MESSAGE_LEN, description="Data.Message of the last call, as the API said."
    )
    request_id: Annotated[str | None, CloudText(REQUEST_ID_LEN)] = Field(
        default=None, max_length=REQUEST_ID_LEN, description="RequestId of the last DataWorks call."
    )
    instance_state: Annotated[str | None, CloudText(STATUS_LEN)] = Field(
        default=None,
        max_length=STATUS_LEN,
        description="Live state from GetDISyncInstanceInfo: RUN, PAUSE, NORUN, WAIT, KILLING.",
    )
    instance_message: Annotated[str | None, CloudText(MESSAGE_LEN)] = Field(
        default=None, max_length=MESSAGE_LEN, description="Message of the last GetDISyncInstanceInfo."
    )
    last_observed_time: dt.datetime | None = Field(default=None, description="When the live state was last read.")
    observed_generation: int | None = Field(default=None, ge=0, description="Generation last acted upon.")
    started_generation: int | None = Field(default=None, ge=0, description="Generation whose start succeeded.")
    failed_generation: int | None = Field(
        default=None,
        ge=0,
        description="Generation whose start failed terminally (not retried until spec or credentials change).",
    )
    credentials_version: str | None = Field(
        default=None, max_length=512, description="Version of the credentials used last (never their value)."
    )
    unverified_intent: StartIntent | None = Field(
        default=None,
        description="A start intent whose outcome is unknown: verified (GetDISyncInstanceInfo) before any new start.",
    )
    answered_intent: str | None = Field(
        default=None, max_length=64, description="Id of the last start intent whose outcome this status records."
    )
    legacy_pending_start: StartIntent | None = Field(
        default=None,
        alias="pendingStart",
        description="Deprecated: unverifiedIntent's name before v0.2. Read once after an upgrade, then cleared.",
    )
    last_start_time: dt.datetime | None = Field(default=None, description="When the last successful start was made.")
    started_spec_digest: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "Digest of the spec the task was last started with, lifecycle fields left out: a later generation with "
            "the same digest needs no new start while the task was not stopped since."
        ),
    )
    stopped_generation: int | None = Field(
        default=None, ge=0, description="Generation whose suspend stopped the task (StopDISyncInstance took effect)."
    )
    unverified_stop_intent: StopIntent | None = Field(
        default=None,
        description="A stop intent whose outcome is unknown: verified (GetDISyncInstanceInfo) before any new stop.",
    )
    answered_stop_intent: str | None = Field(
        default=None, max_length=64, description="Id of the last stop intent whose outcome this status records."
    )
    observe_only_generation: int | None = Field(
        default=None,
        ge=0,
        description="Generation last handled as managementPolicy ObserveOnly (the next Full one takes the task over).",
    )
    restarts: int = Field(default=0, ge=0, description="Restarts of the task (restartPolicy OnFailure).")
    last_restart_time: dt.datetime | None = Field(default=None, description="When the last restart was made.")
    restart_times: Annotated[list[RestartTime], Field(max_length=MAX_RESTARTS_PER_HOUR)] = Field(
        default_factory=list,
        description="When the restarts of the last hour were made (DISYNC_MAX_RESTARTS_PER_HOUR counts them).",
    )
    attempts: int = Field(default=0, ge=0, description="Start attempts for the current generation.")
    stop_attempts: int = Field(
        default=0,
        ge=0,
        description="Failed StopDISyncInstance attempts of the stop under way (deletion or suspend): their backoff.",
    )
    next_retry_time: dt.datetime | None = Field(default=None, description="When the next attempt is due, if retrying.")
    last_error: LastError | None = Field(default=None, description="The last error, if any.")
    conditions: Annotated[list[Condition], Field(max_length=8)] = Field(
        default_factory=list, description="Ready and Synced."
    )

    @model_validator(mode="after")
    def _read_legacy_intent(self) -> DISyncInstanceStatus:
        # An object written before the rename keeps its unverified intent under the old name: it must still be
        # verified before any new start, or an upgrade could start a task twice.
        if self.unverified_intent is None and self.legacy_pending_start is not None:
            object.__setattr__(self, "unverified_intent", self.legacy_pending_start)
        return self

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class StatusUpdate(_Model):
    """The status fields one write sets, and only those: it is sent as a merge patch of exactly these fields (a field
    set to None is cleared). Built by the reconcile policy with keyword arguments, so a misspelled field is a type
    error; serialised once, at the Kubernetes edge (`to_patch`). Mirrors DISyncInstanceStatus (a test keeps them so)."""

    status: Annotated[str | None, CloudText(STATUS_LEN)] = None
    message: Annotated[str | None, CloudText(MESSAGE_LEN)] = None
    request_id: Annotated[str | None, CloudText(REQUEST_ID_LEN)] = None
    instance_state: Annotated[str | None, CloudText(STATUS_LEN)] = None
    instance_message: Annotated[str | None, CloudText(MESSAGE_LEN)] = None
    last_observed_time: dt.datetime | None = None
    observed_generation: int | None = None
    started_generation: int | None = None
    failed_generation: int | None = None
    credentials_version: str | None = None
    unverified_intent: StartIntent | None = None
    answered_intent: str | None = None
    legacy_pending_start: StartIntent | None = Field(default=None, alias="pendingStart")
    last_start_time: dt.datetime | None = None
    started_spec_digest: str | None = None
    stopped_generation: int | None = None
    unverified_stop_intent: StopIntent | None = None
    answered_stop_intent: str | None = None
    observe_only_generation: int | None = None
    restarts: int | None = None
    last_restart_time: dt.datetime | None = None
    restart_times: list[dt.datetime] | None = None
    attempts: int | None = None
    stop_attempts: int | None = None
    next_retry_time: dt.datetime | None = None
    last_error: LastError | None = None
    conditions: list[Condition] | None = None

    def merged(self, other: StatusUpdate) -> StatusUpdate:
        """This update with `other`'s fields on top."""
        return self.model_copy(update={name: getattr(other, name) for name in other.model_fields_set})

    def applied_to(self, status: DISyncInstanceStatus) -> DISyncInstanceStatus:
        """`status` as it reads once this update is written."""
        return status.model_copy(update={name: getattr(self, name) for name in self.model_fields_set})

    def to_patch(self) -> dict[str, object]:
        """The JSON merge patch of `.status` (camelCase, only the fields set). Each field is written whole: a merge
        patch merges nested objects, so a default left out would keep an older value (e.g. an intent's callEnded)."""
        patch: dict[str, object] = self.model_dump(mode="json", by_alias=True, include=set(self.model_fields_set))
        return patch
