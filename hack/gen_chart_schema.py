"""Writes the Helm chart's values.schema.json: every value the chart reads, typed, and nothing else.

`settings` is generated from the operator's own settings model (controller/settings.py), so a setting the operator
doesn't know (`settings.qsp`) or a value of the wrong type is refused by `helm install`, `helm template` and
`helm lint`, with the value's path, before anything reaches a cluster. `make chart-files` runs this; a test checks
that the committed file is current.

    python hack/gen_chart_schema.py > deploy/helm/disync-operator/values.schema.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic.alias_generators import to_camel

from disync_operator.controller.settings import OperatorSettings

# Kubernetes' own name rules: a DNS-1123 label (namespaces) and subdomain (most other names).
LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OPTIONAL_SUBDOMAIN = "^(" + SUBDOMAIN[1:-1] + ")?$"  # empty: the chart's default
NUMBER = r"^[0-9]+(\.[0-9]+)?$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def strict(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def settings_schema() -> dict[str, Any]:
    """Each operator setting under its camelCase key (the chart turns it into DISYNC_<UPPER_SNAKE>); null leaves the
    operator's default."""
    model = OperatorSettings.model_json_schema()
    properties = {}
    for name, field in model["properties"].items():
        kept = {k: v for k, v in field.items() if k not in {"title", "default"}}
        description = kept.pop("description", None)
        choices = kept.pop("anyOf", None) or [kept]
        if any(choice.get("type") == "number" for choice in choices):
            # `helm --set qps=2.5` passes a string (Helm's --set converts only integers and booleans); the operator
            # reads the number from it.
            choices = [*choices, {"type": "string", "pattern": NUMBER}]
        if not any(choice.get("type") == "null" for choice in choices):
            choices = [*choices, {"type": "null"}]
        properties[to_camel(name)] = {"anyOf": choices, **({"description": description} if description else {})}
    return strict(properties)


def schema() -> dict[str, Any]:
    resources = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
    return strict(
        {
            "global": {"type": "object"},
            "image": strict(
                {
                    "repository": {"type": "string", "minLength": 1, "pattern": r"^[^\s]+$"},
                    "tag": {"type": "string", "pattern": r"^([\w][\w.-]{0,127})?$"},
                    "digest": {"type": "string", "pattern": r"^(sha256:[a-f0-9]{64})?$"},
                    "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                }
            ),
            "imagePullSecrets": {
                "type": "array",
                "items": strict({"name": {"type": "string", "pattern": SUBDOMAIN}}, required=["name"]),
            },
            "replicaCount": {"type": "integer", "minimum": 0},
            "settings": settings_schema(),
            "watchNamespaces": {"type": "array", "items": {"type": "string", "maxLength": 63, "pattern": LABEL}},
            "credentialsSecretName": {"type": "string", "maxLength": 253, "pattern": OPTIONAL_SUBDOMAIN},
            "nameOverride": {"type": "string", "maxLength": 53, "pattern": "^(" + LABEL[1:-1] + ")?$"},
            "fullnameOverride": {"type": "string", "maxLength": 63, "pattern": "^(" + LABEL[1:-1] + ")?$"},
            "serviceAccount": strict(
                {
                    "create": {"type": "boolean"},
                    "name": {"type": "string", "pattern": OPTIONAL_SUBDOMAIN},
                    "annotations": STRING_MAP,
                }
            ),
            # Kubernetes' own schema checks these at admission; here only their shape.
            "podSecurityContext": nullable({"type": "object"}),
            "containerSecurityContext": nullable({"type": "object"}),
            "namespace": strict(
                {
                    "create": {"type": "boolean"},
                    "name": {"type": "string", "maxLength": 63, "pattern": "^(" + LABEL[1:-1] + ")?$"},
                }
            ),
            "crds": strict({"install": {"type": "boolean"}, "keep": {"type": "boolean"}}),
            "podDisruptionBudget": strict(
                {
                    "enabled": {"type": "boolean"},
                    "minAvailable": {
                        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^\d+%$"}]
                    },
                }
            ),
            "resources": strict({"requests": resources, "limits": resources}),
            "podAnnotations": STRING_MAP,
            "podLabels": STRING_MAP,
            "nodeSelector": STRING_MAP,
            "tolerations": {"type": "array", "items": {"type": "object"}},
            "priorityClassName": {"type": "string", "maxLength": 253, "pattern": OPTIONAL_SUBDOMAIN},
            "affinity": nullable({"type": "object"}),
            "extraEnv": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "minLength": 1}},
                },
            },
            "serviceMonitor": strict(
                {
                    "enabled": {"type": "boolean"},
                    "labels": STRING_MAP,
                    "interval": {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"},
                }
            ),
            "prometheusRule": strict({"enabled": {"type": "boolean"}, "labels": STRING_MAP}),
            "dashboard": strict({"enabled": {"type": "boolean"}, "labels": STRING_MAP}),
        },
        **{"$schema": "http://json-schema.org/draft-07/schema#", "title": "disync-operator Helm values"},
    )


if __name__ == "__main__":
    json.dump(schema(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
