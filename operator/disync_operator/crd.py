"""Generate the DISyncInstance CRD from the pydantic models in `disync_operator.types`.

pydantic's JSON Schema is close to what Kubernetes wants; the differences handled here: `$ref`s are inlined
(structural schemas forbid them), `Optional` unions collapse to the inner type, titles go, datetimes become
`format: date-time`, 64-bit integers get `format: int64`, and Kubernetes-only keys (CEL rules, list types) are added.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from disync_operator import types as t

# What `kubectl get dsi` shows: whether it is Ready and Synced (True/False, as Crossplane users read first), and why;
# `-o wide` adds the task and the details.
READY = '.status.conditions[?(@.type=="Ready")]'
SYNCED = '.status.conditions[?(@.type=="Synced")]'
PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Ready", "type": "string", "jsonPath": f"{READY}.status"},
    {
        "name": "Synced",
        "type": "string",
        "jsonPath": f"{SYNCED}.status",
        "description": 'False while the last reconcile failed, or the object is annotated disync.dev/paused: "true"',
    },
    {"name": "Reason", "type": "string", "jsonPath": f"{READY}.reason"},
    {"name": "Status", "type": "string", "jsonPath": ".status.status", "description": "Data.Status of the last start"},
    {"name": "Message", "type": "string", "jsonPath": f"{READY}.message", "description": "Why it is (not) Ready"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Project", "type": "integer", "jsonPath": ".spec.projectId", "priority": 1},
    {"name": "Type", "type": "string", "jsonPath": ".spec.taskType", "priority": 1},
    {"name": "File", "type": "integer", "jsonPath": ".spec.fileId", "priority": 1},
    {"name": "State", "type": "string", "jsonPath": ".status.instanceState", "priority": 1},
    {"name": "Attempts", "type": "integer", "jsonPath": ".status.attempts", "priority": 1},
    {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend", "priority": 1},
    {"name": "Policy", "type": "string", "jsonPath": ".spec.managementPolicy", "priority": 1},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts", "priority": 1},
    {"name": "Synced-Reason", "type": "string", "jsonPath": f"{SYNCED}.reason", "priority": 1},
    {
        "name": "API-Message",
        "type": "string",
        "jsonPath": ".status.message",
        "description": "Data.Message as the API said",
        "priority": 1,
    },
]

_DROP = {"title", "additionalProperties"}


def _to_structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_to_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _to_structural(merged, defs)
    if "anyOf" in node:
        # Optional[X] is anyOf[X, null]: absence already means null to Kubernetes.
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if rest.get("default", 0) is None:
                rest.pop("default")
            return _to_structural({**options[0], **rest}, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return _to_structural({**node["allOf"][0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "properties":
            out[key] = {name: _to_structural(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _to_structural(value, defs)
    if out.get("type") == "string" and out.get("format") == "date-time":
        out.pop("default", None)
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if out.get("type") == "integer" and out.get("maximum", 0) > 2**31:
        out["format"] = "int64"
        if out["maximum"] > 2**53:
            # The apiserver holds bounds as float64, where 2^63-1 is out of range; int64 already bounds the value.
            del out["maximum"]
    if out.get("default") is None:
        out.pop("default", None)
    if out.get("type") == "object" and "default" in out and not out["default"]:
        out.pop("default")
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    structural: dict[str, Any] = _to_structural(raw, raw.get("$defs", {}))
    return structural


def openapi_schema() -> dict[str, Any]:
    spec = schema_of(t.DISyncInstanceSpec)
    spec[t.CEL] = t.SPEC_RULES
    spec["properties"]["credentials"]["properties"]["secretRef"][t.CEL] = t.SECRET_REF_RULES
    status = schema_of(t.DISyncInstanceStatus)
    status["properties"]["conditions"].update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    return {
        "type": "object",
        "description": t.DESCRIPTION,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{t.PLURAL}.{t.GROUP}",
            "labels": {"app.kubernetes.io/name": "disync-operator", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": t.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": t.KIND,
                "listKind": f"{t.KIND}List",
                "plural": t.PLURAL,
                "singular": t.SINGULAR,
                "shortNames": t.SHORT_NAMES,
                "categories": ["dataworks", "all-disync"],
            },
            "versions": [
                {
                    "name": t.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


HEADER = "# Generated by `make crd` (disync-operator crd) from operator/disync_operator/types.py. Do not edit.\n"


def render() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=120)
