"""The Argo CD health check (deploy/argocd/health.lua) under Lua 5.1, in a sandbox shaped like Argo CD's.

Argo CD runs custom health checks in gopher-lua (Lua 5.1) with only the base, table, package and a "safe" os
library opened: no `string`, no `math`. A script that works in a full Lua can fail in Argo CD with "attempt to index
a nil value", and Argo CD then shows the resource with no useful health at all. So the sandbox here offers only base
and table functions, and strings have no methods (their metatable's __index is removed, as without the string
library).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from disync_operator.controller.policy import TERMINAL_REASONS, Reason

lua51 = pytest.importorskip("lupa.lua51")

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "deploy" / "argocd"
SCRIPT = (ARGOCD / "health.lua").read_text()
HEALTH_KEY = "resource.customizations.health.disync.dev_DISyncInstance"
IGNORE_KEY = "resource.customizations.ignoreResourceUpdates.disync.dev_DISyncInstance"

# The base library as Argo CD opens it, minus what could load code or reach outside (not needed by health checks).
BASE = [
    "assert",
    "error",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setmetatable",
    "getmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
    "_VERSION",
]

RUNNER = """
function(source, obj, base)
  local env = {obj = obj}
  for _, name in ipairs(base) do env[name] = _G[name] end
  env.table = {concat = table.concat, insert = table.insert, remove = table.remove, sort = table.sort,
               maxn = table.maxn}
  env._G = env
  local chunk, err = loadstring(source, "=health.lua")
  if chunk == nil then error(err) end
  setfenv(chunk, env)
  return chunk()
end
"""


class Sandbox:
    def __init__(self) -> None:
        self.lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
        assert self.lua.eval("_VERSION") == "Lua 5.1"
        # Without the string library strings have no methods: `s:sub(1)` must fail here as it does in Argo CD.
        self.lua.execute('getmetatable("").__index = nil')
        self._run = self.lua.eval(RUNNER)
        self._base = self.lua.table_from(BASE)

    def _to_lua(self, value: Any) -> Any:
        # Argo CD hands the object over as decoded JSON: JSON null is simply absent (nil) in Lua.
        if isinstance(value, dict):
            return self.lua.table_from({k: self._to_lua(v) for k, v in value.items() if v is not None})
        if isinstance(value, list):
            return self.lua.table_from([self._to_lua(v) for v in value])
        return value

    def run(self, source: str, obj: dict[str, Any]) -> dict[str, Any]:
        result = self._run(source, self._to_lua(obj), self._base)
        return dict(result.items())


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


def cr(
    *,
    generation: int = 1,
    ready: tuple[str, str, str] | None = None,
    observed: int | None = None,
    status_observed: int | None = None,
    synced_only: bool = False,
    status: bool = True,
    deleting: bool = False,
    paused: str | None = None,
) -> dict[str, Any]:
    """A DISyncInstance as the operator leaves it: `ready` is (status, reason, message) of the Ready condition;
    `paused`: the value of its disync.dev/paused annotation."""
    metadata: dict[str, Any] = {"name": "orders", "namespace": "data", "generation": generation}
    if paused is not None:
        metadata["annotations"] = {"disync.dev/paused": paused, "team": "data"}
    if deleting:
        metadata["deletionTimestamp"] = "2025-01-01T00:00:00Z"
        metadata["finalizers"] = ["disync.dev/stop-instance"]
    obj: dict[str, Any] = {"apiVersion": "disync.dev/v1alpha1", "kind": "DISyncInstance", "metadata": metadata}
    obj["spec"] = {"projectId": 10000, "taskType": "DI_REALTIME", "fileId": 100}
    if not status:
        return obj
    conditions = []
    if ready is not None:
        conditions.append(
            {
                "type": "Ready",
                "status": ready[0],
                "reason": ready[1],
                "message": ready[2],
                "observedGeneration": generation if observed is None else observed,
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }
        )
    if synced_only or ready is not None:
        conditions.append({"type": "Synced", "status": "True", "reason": "ReconcileSuccess", "message": ""})
    obj["status"] = {"observedGeneration": status_observed, "conditions": conditions}
    return obj


def without_condition_generation(obj: dict[str, Any]) -> dict[str, Any]:
    for condition in obj["status"]["conditions"]:
        condition.pop("observedGeneration", None)
    return obj


TERMINAL_MESSAGE = "Forbidden.Access: denied (RequestId R1). Not retried until the spec or the credentials change."

# (id, object, expected status, words the message must contain)
SAMPLES: list[tuple[str, dict[str, Any], str, str]] = [
    ("running", cr(ready=("True", "Running", "the real-time task is running")), "Healthy", "Running"),
    ("started", cr(ready=("True", "Started", "StartDISyncInstance succeeded")), "Healthy", "Started"),
    ("starting", cr(ready=("False", "Starting", "starting generation 1")), "Progressing", "Starting"),
    (
        "retry-scheduled",
        cr(ready=("False", "RetryScheduled", "InternalError.System; retrying in 2.0s")),
        "Progressing",
        "RetryScheduled: InternalError.System",
    ),
    # A retry after an earlier success keeps Ready True but is still not settled.
    ("retry-while-ready", cr(ready=("True", "RetryScheduled", "Throttling.User")), "Progressing", "RetryScheduled"),
    ("clock-skew", cr(ready=("False", "ClockSkew", "check NTP")), "Progressing", "ClockSkew: check NTP"),
    ("deleting-reason", cr(ready=("False", "Deleting", "stopping")), "Progressing", "Deleting"),
    ("ready-unknown", cr(ready=("Unknown", "Starting", "")), "Progressing", "Starting"),
    ("unknown-reason", cr(ready=("False", "SomethingNew", "")), "Progressing", "SomethingNew"),
    ("no-status", cr(status=False), "Progressing", "Waiting for the operator"),
    ("no-conditions", cr(ready=None), "Progressing", "Waiting for the operator"),
    ("synced-but-no-ready", cr(ready=None, synced_only=True), "Progressing", "Waiting for the operator"),
    (
        "generation-behind",
        cr(generation=3, observed=2, ready=("True", "Running", "running")),
        "Progressing",
        "generation 3",
    ),
    (
        "terminal-but-generation-behind",
        cr(generation=2, observed=1, ready=("False", "InvalidSpec", "spec.fileId: bad")),
        "Progressing",
        "generation 2",
    ),
    # A condition without its own observedGeneration falls back to status.observedGeneration.
    (
        "fallback-to-status-observed-generation",
        without_condition_generation(cr(ready=("True", "Running", "running"), status_observed=1)),
        "Healthy",
        "Running",
    ),
    ("deleted", cr(deleting=True, ready=("True", "Running", "running")), "Progressing", "Pending deletion"),
    ("deleted-no-status", cr(deleting=True, status=False), "Progressing", "Pending deletion"),
    (
        "deleted-stop-failed",
        cr(deleting=True, ready=("False", "StopFailed", "Forbidden.Access: no")),
        "Degraded",
        "StopFailed: Forbidden.Access: no",
    ),
    ("terminal-without-message", cr(ready=("False", "StartFailed", "")), "Degraded", "StartFailed"),
    # The lifecycle: suspend is Argo CD's Suspended; an observed or adopted task that runs is Healthy.
    (
        "suspended",
        cr(ready=("False", "Suspended", "suspended: StopDISyncInstance succeeded")),
        "Suspended",
        "Suspended",
    ),
    (
        "suspended-generation-behind",
        cr(generation=2, observed=1, ready=("False", "Suspended", "suspended")),
        "Progressing",
        "generation 2",
    ),
    ("observed", cr(ready=("True", "Observed", "observed only; the task runs")), "Healthy", "Observed"),
    ("adopted", cr(ready=("True", "Adopted", "taken over from ObserveOnly")), "Healthy", "Adopted"),
    ("restart-scheduled", cr(ready=("False", "RestartScheduled", "restarting in 1.0s")), "Progressing", "Restart"),
    # A paused object keeps the health it had, whatever changed in its spec meanwhile, and says it is paused.
    (
        "paused-healthy-spec-changed",
        cr(generation=4, observed=2, paused="true", ready=("True", "Running", "running")),
        "Healthy",
        "Paused (disync.dev/paused): Running",
    ),
    (
        "paused-degraded",
        cr(paused="true", ready=("False", "AccessDenied", TERMINAL_MESSAGE)),
        "Degraded",
        "Paused (disync.dev/paused): AccessDenied",
    ),
    (
        "paused-suspended",
        cr(generation=3, observed=2, paused="true", ready=("False", "Suspended", "suspended")),
        "Suspended",
        "Paused",
    ),
    (
        "paused-progressing",
        cr(paused="true", ready=("False", "RetryScheduled", "retrying")),
        "Progressing",
        "Paused (disync.dev/paused): RetryScheduled",
    ),
    ("paused-no-status", cr(paused="true", status=False), "Progressing", "Paused"),
    ("paused-deleted", cr(deleting=True, paused="true"), "Progressing", "waiting until disync.dev/paused is removed"),
    # Only "true" pauses: any other value is an ordinary annotation.
    (
        "paused-false-generation-behind",
        cr(generation=2, observed=1, paused="false", ready=("True", "Running", "running")),
        "Progressing",
        "generation 2",
    ),
]
for _reason in (
    "StartFailed",
    "InvalidSpec",
    "InvalidParameter",
    "AccessDenied",
    "AuthenticationFailed",
    "CredentialsUnavailable",
    "NotRunning",
    "StopFailed",
    "Conflict",
    "IntentRejected",
    "RestartLimitReached",
):
    SAMPLES.append((f"terminal-{_reason}", cr(ready=("False", _reason, TERMINAL_MESSAGE)), "Degraded", _reason))


@pytest.mark.parametrize(("obj", "expected", "words"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES])
def test_health_of_every_sample(sandbox: Sandbox, obj: dict[str, Any], expected: str, words: str) -> None:
    result = sandbox.run(SCRIPT, obj)
    assert result["status"] == expected
    assert words in result["message"]


def test_degraded_carries_the_condition_message(sandbox: Sandbox) -> None:
    result = sandbox.run(SCRIPT, cr(ready=("False", "AccessDenied", TERMINAL_MESSAGE)))
    assert result == {"status": "Degraded", "message": f"AccessDenied: {TERMINAL_MESSAGE}"}


def test_every_operator_reason_has_a_sample() -> None:
    sampled = {
        c["reason"] for s in SAMPLES for c in s[1].get("status", {}).get("conditions", []) if c["type"] == "Ready"
    }
    synced_only = {Reason.RECONCILE_SUCCESS, Reason.RECONCILE_ERROR, Reason.RECONCILE_PAUSED}
    ready_reasons = {r.value for r in Reason} - synced_only
    assert ready_reasons <= sampled
    # Everything the operator will not retry on its own must be Degraded.
    degraded = {s[1]["status"]["conditions"][0]["reason"] for s in SAMPLES if s[2] == "Degraded"}
    assert {r.value for r in TERMINAL_REASONS} <= degraded


def test_every_health_status_is_one_argo_cd_accepts() -> None:
    assert {s[2] for s in SAMPLES} <= {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


@pytest.mark.parametrize(
    "snippet",
    [
        'return {status = string.format("%s", "Healthy")}',
        "return {status = tostring(math.floor(1.5))}",
        "return {status = tostring(os.time())}",
        'io.write("x") return {status = "Healthy"}',
        'local s = "Healthy" return {status = s:sub(1, 7)}',
        'local s = "Healthy" return {status = s.upper(s)}',
        'return {status = require("string").upper("x")}',
    ],
)
def test_sandbox_rejects_what_argo_cd_does_not_offer(sandbox: Sandbox, snippet: str) -> None:
    with pytest.raises(lua51.LuaError):
        sandbox.run(snippet, cr())


def test_sandbox_still_offers_base_and_table(sandbox: Sandbox) -> None:
    snippet = 'local t = {} table.insert(t, "Hea") table.insert(t, "lthy") return {status = table.concat(t)}'
    assert sandbox.run(snippet, cr()) == {"status": "Healthy"}


def test_argocd_cm_patch_embeds_exactly_the_script() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"][HEALTH_KEY] == SCRIPT


def test_ignore_resource_updates_covers_what_the_operator_writes() -> None:
    """The operator writes status, its finalizer and its start and stop intents, nothing else (test_deploy checks that
    on a real run)."""
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    rules = yaml.safe_load(patch["data"][IGNORE_KEY])
    assert rules["jsonPointers"] == [
        "/status",
        "/metadata/finalizers",
        "/metadata/annotations/disync.dev~1start-intent",
        "/metadata/annotations/disync.dev~1stop-intent",
    ]


def test_application_points_at_deploy() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert app["kind"] == "Application"
    assert app["spec"]["source"]["path"] == "deploy"
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
