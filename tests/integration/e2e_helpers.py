"""Helpers for end-to-end tests: manifests and waits on conditions (never sleeps)."""

from __future__ import annotations

import json
from typing import Any

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.waiting import wait_for


def dsi(name: str, file_id: int = 100, project_id: int = 10000, task_type: str = "DI_REALTIME", **spec: Any) -> str:
    body: dict[str, Any] = {"projectId": project_id, "taskType": task_type, "fileId": file_id, **spec}
    if task_type == "DI_REALTIME" and "startParam" not in spec and "startParamJSON" not in spec:
        body["startParam"] = {"failoverLimit": {"count": 10, "interval": 30}, "errorLimit": {"record": 0}}
    return json.dumps(
        {"apiVersion": "disync.dev/v1alpha1", "kind": "DISyncInstance", "metadata": {"name": name}, "spec": body}
    )


def condition(obj: dict[str, Any], type_: str = "Ready") -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def wait_ready(kubectl: Kubectl, name: str, generation: int | None = None, timeout: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.get_json("disyncinstance", name)
        cond = condition(obj)
        want = generation or obj["metadata"]["generation"]
        if cond and cond["status"] == "True" and cond.get("observedGeneration") == want:
            return obj
        return None

    return wait_for(ready, timeout=timeout, what=f"{name} to be Ready")


def wait_reason(kubectl: Kubectl, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.get_json("disyncinstance", name)
        cond = condition(obj)
        return obj if cond and cond["reason"] == reason else None

    return wait_for(reached, timeout=timeout, what=f"{name} to reach Ready reason {reason}")
