"""In-memory stand-ins for the two things the reconciler talks to, so it can be tested in-process, in milliseconds.

- `FakeKube`: the few Kubernetes calls the operator makes (`KubeApi`), with the API server's rules that matter to it:
  resourceVersion bumps on every write, the metadata write's precondition (409 Conflict), JSON merge patch of status,
  finalizers holding a deleted object, 404 for what is not there.
- `FakeDataWorks`: an `httpx.MockTransport` handler answering the DI sync-instance operations from a table of task
  states, with scripted faults (an HTTP error, a "fail" answer, a response lost after the action took effect).
The subprocess e2e tests remain the proof against the real kube-apiserver and the emulator.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from disync_operator import types as t
from disync_operator.controller.credentials import SECRET_TYPE
from disync_operator.controller.runtime.kube import Conflict, KubeError


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.writes: list[str] = []  # "metadata" / "status", in order, for every successful write
        self.refuse_metadata = False
        self.secret_gets = 0  # answer metadata writes 422 (e.g. annotations at their size limit)
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.lease_outage = False  # lease reads and writes fail (an unreachable API server)
        self._versions = itertools.count(100)
        self._uids = itertools.count(1)

    def _bump(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))

    # -- what a user (or another process) does --------------------------------------------------------------------

    def create(self, name: str, spec: dict[str, Any], *, namespace: str = "default", **metadata: Any) -> dict[str, Any]:
        obj = {
            "apiVersion": f"{t.GROUP}/{t.VERSION}",
            "kind": t.KIND,
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{next(self._uids)}", "generation": 1}
            | metadata,
            "spec": spec,
        }
        self._bump(obj)
        self.objects[(namespace, name)] = obj
        return self.body(name, namespace)

    def body(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return copy.deepcopy(self.objects[(namespace, name)])

    def edit(self, name: str, *, spec: dict[str, Any] | None = None, namespace: str = "default", **meta: Any) -> None:
        """A user's change: a new spec bumps the generation; metadata (labels, annotations) does not."""
        obj = self.objects[(namespace, name)]
        if spec is not None:
            obj["spec"] = spec
            obj["metadata"]["generation"] += 1
        obj["metadata"] = merge_patch(obj["metadata"], meta)
        self._bump(obj)

    def edit_status(self, name: str, patch: dict[str, Any], namespace: str = "default") -> None:
        obj = self.objects[(namespace, name)]
        obj["status"] = merge_patch(obj.get("status") or {}, patch)
        self._bump(obj)

    def delete(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        """`kubectl delete`: marked for deletion while finalizers hold it (None), else gone (its last body)."""
        obj = self.objects[(namespace, name)]
        if obj["metadata"].get("finalizers"):
            obj["metadata"]["deletionTimestamp"] = "2026-11-30T00:00:00Z"
            self._bump(obj)
            return None
        del self.objects[(namespace, name)]
        return copy.deepcopy(obj)

    def put_secret(
        self, name: str, data: dict[str, str], namespace: str = "default", *, type_: str = SECRET_TYPE
    ) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        old = self.secrets.get((namespace, name))
        uid = old["metadata"]["uid"] if old else f"secret-uid-{next(self._uids)}"
        version = str(next(self._versions))
        self.secrets[(namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": version},
            "type": type_,
            "data": encoded,
        }

    # -- KubeApi ----------------------------------------------------------------------------------------------------

    def _get(self, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((namespace, name))
        if obj is None:
            raise KubeError(404, "NotFound", f"{name} not found")
        return obj

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        self.secret_gets += 1
        secret = self.secrets.get((namespace, name))
        if secret is None:
            raise KubeError(404, "NotFound", f"secrets {name} not found")
        return copy.deepcopy(secret)

    async def patch_status(self, namespace: str, name: str, update: t.StatusUpdate) -> dict[str, Any]:
        obj = self._get(namespace, name)
        patch = json.loads(json.dumps(update.to_patch()))  # as it travels
        status = merge_patch(obj.get("status") or {}, patch)
        t.DISyncInstanceStatus.model_validate(status)  # the CRD's schema: what it does not admit fails the write
        obj["status"] = status
        self._bump(obj)
        self.writes.append("status")
        return copy.deepcopy(obj)

    async def patch_metadata(
        self,
        namespace: str,
        name: str,
        *,
        resource_version: str | None,
        finalizers: list[str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        obj = self._get(namespace, name)
        if resource_version is not None and resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        if self.refuse_metadata:
            raise KubeError(422, "Invalid", "metadata.annotations: Too long: must have at most 262144 bytes")
        if finalizers is not None:
            obj["metadata"]["finalizers"] = finalizers
        if annotations is not None:
            obj["metadata"]["annotations"] = {**obj["metadata"].get("annotations", {}), **annotations}
        self._bump(obj)
        self.writes.append("metadata")
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            del self.objects[(namespace, name)]
        return copy.deepcopy(obj)

    async def list_instances(self, namespace: str | None, *, page_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        for (ns, _), obj in list(self.objects.items()):
            if namespace is None or ns == namespace:
                yield copy.deepcopy(obj)

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        self.events.append(event)

    # Leases, with the API server's optimistic concurrency: a create of an existing one and an update carrying a
    # resourceVersion that is not the current one are refused with 409.
    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.lease_outage:
            raise KubeError(503, "ServiceUnavailable", "the API server is unreachable")
        lease = self.leases.get((namespace, name))
        return copy.deepcopy(lease) if lease else None

    async def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        key = (namespace, lease["metadata"]["name"])
        if key in self.leases:
            raise Conflict(409, "AlreadyExists", "leases already exists")
        stored = copy.deepcopy(lease)
        self._bump(stored)
        self.leases[key] = stored
        return copy.deepcopy(stored)

    async def update_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        if self.lease_outage:
            raise KubeError(503, "ServiceUnavailable", "the API server is unreachable")
        key = (namespace, lease["metadata"]["name"])
        current = self.leases.get(key)
        if current is None or current["metadata"]["resourceVersion"] != lease["metadata"].get("resourceVersion"):
            raise Conflict(409, "Conflict", "the object has been modified")
        stored = copy.deepcopy(lease)
        self._bump(stored)
        self.leases[key] = stored
        return copy.deepcopy(stored)

    async def aclose(self) -> None:
        pass


# --- DataWorks ---------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """What the next call of an action gets instead of the normal answer."""

    http_status: int = 200
    code: str | None = None  # an error document (HTTP >= 400)
    fail_message: str | None = None  # HTTP 200, Data.Status "fail"
    lost: bool = False  # the action takes effect, then the response is lost (read timeout)
    # A success answer with these values instead of the normal ones (the action takes effect)
    data_status: str | None = None
    data_message: str | None = None
    request_id: str | None = None


@dataclass
class FakeDataWorks:
    # (project, file) -> live state; a real-time task starts as NORUN, a started one reads `started_state`
    states: dict[int, str] = field(default_factory=dict)
    started_state: str = "WAIT"
    stopped_state: str = "NORUN"  # KILLING: still stopping (DataWorks refuses a start then)
    solution_state: str = "init"
    calls: list[tuple[str, int]] = field(default_factory=list)
    params: list[dict[str, str]] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, action: str, fault: Fault) -> None:
        self.faults.setdefault(action, []).append(fault)

    def count(self, action: str) -> int:
        return sum(1 for a, _ in self.calls if a == action)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        action = request.headers["x-acs-action"]
        params = dict(request.url.params)
        file_id = int(params["FileId"])
        self.calls.append((action, file_id))
        self.params.append(params)
        request_id = f"REQ-{next(self._ids)}"
        fault = (self.faults.get(action) or [None]).pop(0) if self.faults.get(action) else None
        if fault is not None and fault.request_id is not None:
            request_id = fault.request_id
        if fault is not None and fault.code is not None:
            body = {"RequestId": request_id, "Code": fault.code, "Message": f"{fault.code} from the fake"}
            return httpx.Response(fault.http_status, json=body)
        if fault is not None and fault.fail_message is not None:
            data = {"Status": "fail", "Message": fault.fail_message}
            return httpx.Response(200, json={"RequestId": request_id, "Success": True, "Data": data})
        solution = params.get("TaskType") == "DI_SOLUTION"
        if action == "StartDISyncInstance":
            if solution:
                self.solution_state = "run"
            else:
                self.states[file_id] = self.started_state
        elif action == "StopDISyncInstance":
            self.states[file_id] = self.stopped_state
        if fault is not None and fault.lost:
            raise httpx.ReadTimeout("the response was lost", request=request)
        if action == "GetDISyncInstanceInfo":
            if solution:
                data: dict[str, Any] = {"Status": "success", "SolutionInfo": {"Status": self.solution_state}}
            else:
                data = {"Status": self.states.get(file_id, "NORUN"), "Message": None}
        else:
            data = {"Status": "success", "Message": None}
        if fault is not None and fault.data_status is not None:
            data["Status"] = fault.data_status
        if fault is not None and fault.data_message is not None:
            data["Message"] = fault.data_message
        return httpx.Response(200, json={"RequestId": request_id, "Success": True, "Data": data})


@dataclass
class FakeClock:
    """A monotonic clock the test moves: the operator's own clock for intents' leases (runtime.FirstSeen)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def long_ago(seconds: float = 3600) -> str:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
