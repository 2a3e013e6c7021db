"""Scenario 5 (admission): a hypothesis corpus of valid and invalid DISyncInstance specs.

Every invalid spec is refused by the real API server (server-side dry run, strict field validation) with the field
path in its message, and the pydantic model `DISyncInstanceSpec` (strict, on the JSON the API server would store)
accepts exactly what the API server accepts.
"""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import ValidationError
from rel_helpers import record_results

from disync_operator import types as t
from disync_operator.devstack.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

BASE: dict[str, Any] = {
    "projectId": 10000,
    "taskType": "DI_REALTIME",
    "fileId": 1000,
    "startParam": {"failoverLimit": {"count": 10, "interval": 30}, "errorLimit": {"record": 0}},
}
INT64_MAX = 2**63 - 1
REGION = r"[a-z]{2,6}(-[a-z0-9]{1,8}){1,3}"
SECRET_NAME = r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?"
DDL_KINDS = list(t.DDLMarkMap.model_fields)
DDL_ACTIONS = [a.value for a in t.DDLAction]
KNOWN_SPEC_FIELDS = {"projectId", "taskType", "fileId", "startParam", "startParamJSON", "region"} | {
    "credentials",
    "deletionPolicy",
    "suspend",
    "managementPolicy",
    "restartPolicy",
}

# (spec, field path the API server must name) -- path None means the spec is valid by construction.
Case = tuple[dict[str, Any], str | None]


def _with(path: tuple[str, ...], value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = copy.deepcopy(base or BASE)
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return spec


def _dotted(path: tuple[str, ...]) -> str:
    return "spec." + ".".join(path)


not_an_int = st.one_of(
    st.text(string.digits, min_size=1, max_size=4),
    st.text(max_size=6),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=2),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)),
    st.dictionaries(st.sampled_from("ab"), st.integers(0, 3), max_size=1),
)
not_a_string = st.one_of(st.integers(), st.booleans(), st.lists(st.text(max_size=3), max_size=2))
not_a_bool = st.one_of(
    st.sampled_from(["true", "false", "yes", ""]), st.integers(0, 1), st.lists(st.booleans(), max_size=1)
)
INT_FIELDS = [
    ("projectId",),
    ("fileId",),
    ("startParam", "failoverLimit", "count"),
    ("startParam", "failoverLimit", "interval"),
    ("startParam", "errorLimit", "record"),
]
STRING_FIELDS = [
    ("taskType",),
    ("region",),
    ("deletionPolicy",),
    ("managementPolicy",),
    ("restartPolicy",),
    ("startParam", "ddlMarkMap", "ADDCOLUMN"),
]
RANGES = {
    ("projectId",): (1, INT64_MAX),
    ("fileId",): (1, INT64_MAX),
    ("startParam", "failoverLimit", "count"): (0, 10_000),
    ("startParam", "failoverLimit", "interval"): (0, 86_400),
    ("startParam", "errorLimit", "record"): (0, 1_000_000_000),
}


@st.composite
def wrong_type(draw: st.DrawFn) -> Case:
    if draw(st.booleans()):
        path = draw(st.sampled_from(INT_FIELDS))
        return _with(path, draw(not_an_int)), _dotted(path)
    if draw(st.integers(0, 5)) == 0:
        return _with(("suspend",), draw(not_a_bool)), "spec.suspend"
    path = draw(st.sampled_from(STRING_FIELDS))
    return _with(path, draw(not_a_string)), _dotted(path)


@st.composite
def out_of_range(draw: st.DrawFn) -> Case:
    path = draw(st.sampled_from(sorted(RANGES)))
    low, high = RANGES[path]
    if high == INT64_MAX:
        value = draw(st.integers(max_value=low - 1))
    else:
        value = draw(st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1, max_value=2**40)))
    return _with(path, value), _dotted(path)


@st.composite
def unknown_enum(draw: st.DrawFn) -> Case:
    path, known = draw(
        st.sampled_from(
            [
                (("taskType",), [e.value for e in t.TaskType]),
                (("deletionPolicy",), [e.value for e in t.DeletionPolicy]),
                (("managementPolicy",), [e.value for e in t.ManagementPolicy]),
                (("restartPolicy",), [e.value for e in t.RestartPolicy]),
                (("startParam", "ddlMarkMap", draw(st.sampled_from(DDL_KINDS))), DDL_ACTIONS),
            ]
        )
    )
    value = draw(st.text(string.ascii_letters + "_", min_size=1, max_size=12).filter(lambda v: v not in known))
    return _with(path, value), _dotted(path)


@st.composite
def start_param_forms(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["both", "neither", "solution", "solution-json"]))
    spec = copy.deepcopy(BASE)
    if kind == "both":
        spec["startParamJSON"] = json.dumps(BASE["startParam"])
        return spec, "spec.startParamJSON"
    if kind == "neither":
        del spec["startParam"]
        return spec, "spec.startParam"
    spec["taskType"] = "DI_SOLUTION"
    if kind == "solution-json":
        spec["startParamJSON"] = json.dumps(spec.pop("startParam"))
    return spec, "spec.startParam"


@st.composite
def lifecycle_combination(draw: st.DrawFn) -> Case:
    """What only real-time tasks can do (stop, restart), or what ObserveOnly never does (stop, start)."""
    kind = draw(st.sampled_from(["suspend-solution", "restart-solution", "suspend-observe", "restart-observe"]))
    spec = copy.deepcopy(BASE)
    if kind.endswith("solution"):
        spec["taskType"] = "DI_SOLUTION"
        del spec["startParam"]
    else:
        spec["managementPolicy"] = "ObserveOnly"
    if kind.startswith("suspend"):
        spec["suspend"] = True
        return spec, "spec.suspend"
    spec["restartPolicy"] = "OnFailure"
    return spec, "spec.restartPolicy"


@st.composite
def huge_string(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["region", "startParamJSON", "secretName", "keyName"]))
    n = draw(st.integers(0, 3000))
    spec = copy.deepcopy(BASE)
    if kind == "region":
        spec["region"] = "cn-" + "a" * (62 + n)
        return spec, "spec.region"
    if kind == "startParamJSON":
        del spec["startParam"]
        spec["startParamJSON"] = json.dumps({"failoverLimit": {"count": 1, "interval": 1}, "x": "a" * (65_536 + n)})
        return spec, "spec.startParamJSON"
    if kind == "secretName":
        spec["credentials"] = {"secretRef": {"name": "a" * (254 + n)}}
        return spec, "spec.credentials.secretRef.name"
    spec["credentials"] = {"secretRef": {"name": "ak", "keys": {"accessKeySecret": "k" * (254 + n)}}}
    return spec, "spec.credentials.secretRef.keys.accessKeySecret"


@st.composite
def bad_pattern(draw: st.DrawFn) -> Case:
    """Strings that only a careless regex would take: trailing newline, capitals, dots, slashes, URLs."""
    spec = copy.deepcopy(BASE)
    if draw(st.booleans()):
        good = draw(st.from_regex(REGION, fullmatch=True))
        value = draw(
            st.sampled_from(
                [good + "\n", good.upper(), good + ".evil.com", "https://" + good, good + "/x", "-" + good, good + " "]
            )
        )
        spec["region"] = value
        return spec, "spec.region"
    good = draw(st.from_regex(SECRET_NAME, fullmatch=True))
    value = draw(st.sampled_from([good + "\n", good.upper() + "X", "../" + good, good + "_x", "-" + good]))
    spec["credentials"] = {"secretRef": {"name": value}}
    return spec, "spec.credentials.secretRef.name"


@st.composite
def other_namespace(draw: st.DrawFn) -> Case:
    namespace = draw(st.sampled_from(["kube-system", "default", "", "prod"]))
    spec = _with(("credentials",), {"secretRef": {"name": "ak", "namespace": namespace}})
    return spec, "spec.credentials.secretRef.namespace"


@st.composite
def unknown_field(draw: st.DrawFn) -> Case:
    name = draw(
        st.one_of(
            st.sampled_from(["endpoint", "Endpoint", "url", "accessKeySecret", "project_id"]),
            st.text(string.ascii_letters, min_size=1, max_size=10),
        ).filter(lambda n: n not in KNOWN_SPEC_FIELDS)
    )
    return _with((name,), draw(st.sampled_from(["https://evil.example.com", 1, True]))), f"spec.{name}"


@st.composite
def missing_required(draw: st.DrawFn) -> Case:
    key = draw(st.sampled_from(["projectId", "taskType", "fileId"]))
    spec = copy.deepcopy(BASE)
    del spec[key]
    return spec, f"spec.{key}"


start_param_objects = st.fixed_dictionaries(
    {},
    optional={
        "failoverLimit": st.fixed_dictionaries({"count": st.integers(0, 10_000), "interval": st.integers(0, 86_400)}),
        "errorLimit": st.fixed_dictionaries({"record": st.integers(0, 1_000_000_000)}),
        "ddlMarkMap": st.dictionaries(st.sampled_from(DDL_KINDS), st.sampled_from(DDL_ACTIONS), max_size=3),
    },
)


@st.composite
def valid_spec(draw: st.DrawFn) -> Case:
    spec: dict[str, Any] = {
        "projectId": draw(st.integers(1, INT64_MAX)),
        "fileId": draw(st.integers(1, INT64_MAX)),
        "taskType": draw(st.sampled_from(["DI_REALTIME", "DI_SOLUTION"])),
    }
    if spec["taskType"] == "DI_REALTIME":
        param = draw(start_param_objects)
        if draw(st.booleans()):
            spec["startParam"] = param
        else:
            spec["startParamJSON"] = json.dumps(param)
    if draw(st.booleans()):
        spec["region"] = draw(st.from_regex(REGION, fullmatch=True))
    if draw(st.booleans()):
        spec["deletionPolicy"] = draw(st.sampled_from(["Stop", "Orphan"]))
    realtime = spec["taskType"] == "DI_REALTIME"
    if draw(st.booleans()):
        spec["managementPolicy"] = draw(st.sampled_from(["Full", "ObserveOnly"]))
    full = spec.get("managementPolicy", "Full") == "Full"
    if draw(st.booleans()):
        spec["suspend"] = draw(st.booleans()) and realtime and full
    if draw(st.booleans()):
        spec["restartPolicy"] = "OnFailure" if realtime and full and draw(st.booleans()) else "Never"
    if draw(st.booleans()):
        ref: dict[str, Any] = {"name": draw(st.from_regex(SECRET_NAME, fullmatch=True))}
        if draw(st.booleans()):
            ref["keys"] = {"accessKeyId": "id", "securityToken": "token"}
        spec["credentials"] = {"secretRef": ref}
    return spec, None


invalid_specs = st.one_of(
    wrong_type(),
    out_of_range(),
    unknown_enum(),
    start_param_forms(),
    lifecycle_combination(),
    huge_string(),
    bad_pattern(),
    other_namespace(),
    unknown_field(),
    missing_required(),
)


@dataclass
class Admission:
    api: k8s.CustomObjectsApi
    namespace: str
    seen: dict[str, int] = field(default_factory=lambda: {"valid": 0, "invalid": 0})

    def admit(self, spec: dict[str, Any]) -> tuple[bool, str]:
        body = {"apiVersion": f"{t.GROUP}/{t.VERSION}", "kind": t.KIND, "metadata": {"name": "fuzz"}, "spec": spec}
        refused: k8s.ApiException | None = None
        try:
            self.api.create_namespaced_custom_object(
                t.GROUP, t.VERSION, self.namespace, t.PLURAL, body, dry_run="All", field_validation="Strict"
            )
        except k8s.ApiException as error:
            refused = error
        if refused is None:
            return True, ""
        assert refused.status in (400, 422), (refused.status, refused.body)
        try:
            message = json.loads(refused.body)["message"]
        except (ValueError, KeyError, TypeError):
            message = str(refused.body)
        return False, message


def pydantic_accepts(spec: dict[str, Any]) -> bool:
    try:
        t.DISyncInstanceSpec.model_validate_json(json.dumps(spec), strict=True)
    except ValidationError:
        return False
    return True


@pytest.fixture
def admission(control_plane: ControlPlane, crd: None, namespace: str) -> Iterator[Admission]:
    api_client = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield Admission(k8s.CustomObjectsApi(api_client), namespace)
    finally:
        api_client.close()


def check(admission: Admission, case: Case) -> None:
    spec, path = case
    admitted, message = admission.admit(spec)
    assert admitted == pydantic_accepts(spec), (spec, admitted, message)
    if path is None:
        admission.seen["valid"] += 1
        assert admitted, (spec, message)
    else:
        admission.seen["invalid"] += 1
        assert not admitted, spec
        assert path in message, (path, message[:400])


@pytest.mark.parametrize(
    "examples",
    [
        pytest.param(60, id="bounded"),
        pytest.param(500, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
    ],
)
def test_admission_and_model_agree_on_a_fuzzed_corpus(admission: Admission, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=examples < 100,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
    @given(case=st.one_of(invalid_specs, invalid_specs, valid_spec()))
    def run(case: Case) -> None:
        check(admission, case)

    run()
    assert admission.seen["invalid"] > 0
    assert admission.seen["valid"] > 0
    print(admission.seen)
    if examples >= 500:
        record_results("bad_input_admission", {"examples": sum(admission.seen.values()), **admission.seen})


def test_startparam_json_content_is_checked_by_the_operator_not_the_api_server(admission: Admission) -> None:
    """The one thing a CRD schema cannot check: what is inside the startParamJSON string. The API server admits it;
    the model refuses it, so the operator reports InvalidSpec without calling DataWorks (see tests/integration)."""
    spec = copy.deepcopy(BASE)
    del spec["startParam"]
    spec["startParamJSON"] = '{"failoverLimit": {"count": "many"}}'
    admitted, _ = admission.admit(spec)
    assert admitted
    assert not pydantic_accepts(spec)
