"""The pydantic models and the CRD cannot drift: the CRD is generated from the models, and the file shipped in
deploy/crds/ must be exactly what the generator prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from disync_operator import crd
from disync_operator.types import DISyncInstanceSpec, StartParam, TaskType

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "crds" / "disyncinstances.yaml"


def test_shipped_crd_is_the_generated_one() -> None:
    assert SHIPPED.read_text() == crd.render(), "deploy/crds is stale: run `make crd`"


def schema() -> dict:
    return yaml.safe_load(crd.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict, path: str = "") -> list[tuple[str, dict]]:
    found = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        found += walk(sub, f"{path}.{name}")
    if "items" in node:
        found += walk(node["items"], f"{path}[]")
    return found


def test_schema_is_structural_and_documented() -> None:
    for path, node in walk(schema()):
        assert "type" in node, f"{path} has no type"
        assert not {"$ref", "anyOf", "allOf"} & set(node), path
        if path.startswith((".spec", ".status")) and path.count(".") >= 2:
            assert node.get("description"), f"{path} has no description (kubectl explain would be empty)"


def test_spec_fields_match_the_model() -> None:
    spec = schema()["properties"]["spec"]
    model_fields = {f.alias or name for name, f in DISyncInstanceSpec.model_fields.items()}
    assert set(spec["properties"]) == model_fields
    assert spec["required"] == ["projectId", "taskType", "fileId"]
    assert spec["properties"]["taskType"]["enum"] == [t.value for t in TaskType]
    ddl = spec["properties"]["startParam"]["properties"]["ddlMarkMap"]["properties"]
    assert sorted(ddl) == sorted(
        [
            "ADDCOLUMN",
            "DROPCOLUMN",
            "RENAMECOLUMN",
            "MODIFYCOLUMN",
            "CREATETABLE",
            "DROPTABLE",
            "RENAMETABLE",
            "TRUNCATETABLE",
        ]
    )
    assert all(v["enum"] == ["NORMAL", "IGNORE", "WARNING", "CRITICAL"] for v in ddl.values())


def test_printer_columns_are_the_ones_users_asked_for() -> None:
    columns = yaml.safe_load(crd.render())["spec"]["versions"][0]["additionalPrinterColumns"]
    default = [c["name"] for c in columns if not c.get("priority")]
    # READY and SYNCED first, as True/False (what Crossplane users read first), then why.
    assert default == ["Ready", "Synced", "Reason", "Status", "Message", "Age"]
    by_name = {c["name"]: c["jsonPath"] for c in columns}
    assert by_name["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert by_name["Synced"] == '.status.conditions[?(@.type=="Synced")].status'
    assert by_name["Message"] == '.status.conditions[?(@.type=="Ready")].message'
    wide = [c["name"] for c in columns if c.get("priority")]
    assert wide == [
        "Project", "Type", "File", "State", "Attempts", "Suspend", "Policy", "Restarts", "Synced-Reason", "API-Message"
    ]  # fmt: skip


REALTIME = {"projectId": 1, "taskType": "DI_REALTIME", "fileId": 2, "startParam": {"errorLimit": {"record": 0}}}
SOLUTION = {"projectId": 1, "taskType": "DI_SOLUTION", "fileId": 2}


@pytest.mark.parametrize(
    ("spec", "field_path", "message"),
    [
        ({**SOLUTION, "suspend": True}, ".suspend", "suspend applies only to taskType DI_REALTIME"),
        ({**SOLUTION, "restartPolicy": "OnFailure"}, ".restartPolicy", "applies only to taskType DI_REALTIME"),
        ({**REALTIME, "suspend": True, "managementPolicy": "ObserveOnly"}, ".suspend", "needs managementPolicy Full"),
        (
            {**REALTIME, "restartPolicy": "OnFailure", "managementPolicy": "ObserveOnly"},
            ".restartPolicy",
            "needs managementPolicy Full",
        ),
    ],
)
def test_lifecycle_combinations_are_refused_by_cel_and_the_model_alike(
    spec: dict[str, object], field_path: str, message: str
) -> None:
    rules = schema()["properties"]["spec"]["x-kubernetes-validations"]
    rule = next(r for r in rules if message in r["message"] and r["fieldPath"] == field_path)
    assert rule["reason"] == "FieldValueForbidden"
    with pytest.raises(ValidationError, match=message):
        DISyncInstanceSpec.model_validate(spec)


def test_lifecycle_fields_default_to_todays_behaviour() -> None:
    spec = schema()["properties"]["spec"]["properties"]
    assert (spec["suspend"]["default"], spec["managementPolicy"]["default"], spec["restartPolicy"]["default"]) == (
        False,
        "Full",
        "Never",
    )
    assert spec["managementPolicy"]["enum"] == ["Full", "ObserveOnly"]
    assert spec["restartPolicy"]["enum"] == ["Never", "OnFailure"]
    for field in ("suspend", "managementPolicy", "restartPolicy"):
        assert len(spec[field]["description"]) > 80, field  # kubectl explain says what each does
    parsed = DISyncInstanceSpec.model_validate(SOLUTION | {"suspend": False, "managementPolicy": "ObserveOnly"})
    assert parsed.observe_only


def test_the_start_digest_ignores_lifecycle_fields_and_spelt_out_defaults() -> None:
    def digest(**changes: object) -> str:
        return DISyncInstanceSpec.model_validate({**REALTIME, **changes}).start_digest()

    base = digest()
    assert digest(suspend=True) == digest(restartPolicy="OnFailure") == digest(managementPolicy="ObserveOnly") == base
    assert digest(deletionPolicy="Stop", suspend=False) == base  # defaults written out
    assert digest(startParam={"errorLimit": {"record": 1}}) != base
    assert digest(deletionPolicy="Orphan") != base  # any other spec change still starts, as before
    assert digest(region="cn-shanghai") != base


DOC_EXAMPLE = (
    '{"failoverLimit":{"count":10,"interval":30},"errorLimit":{"record":0},"ddlMarkMap":{"RENAMECOLUMN":"WARNING",'
    '"DROPTABLE":"WARNING","CREATETABLE":"IGNORE","MODIFYCOLUMN":"WARNING","TRUNCATETABLE":"NORMAL","DROPCOLUMN":'
    '"IGNORE","ADDCOLUMN":"NORMAL","RENAMETABLE":"CRITICAL"}}'
)


def test_documented_start_param_round_trips() -> None:
    parsed = StartParam.model_validate_json(DOC_EXAMPLE)
    assert json.loads(parsed.to_api_json()) == json.loads(DOC_EXAMPLE)


def test_both_forms_send_the_same_start_param() -> None:
    as_object = DISyncInstanceSpec.model_validate(
        {"projectId": 1, "taskType": "DI_REALTIME", "fileId": 2, "startParam": json.loads(DOC_EXAMPLE)}
    )
    as_json = DISyncInstanceSpec.model_validate(
        {"projectId": 1, "taskType": "DI_REALTIME", "fileId": 2, "startParamJSON": DOC_EXAMPLE}
    )
    assert as_object.api_start_param() == as_json.api_start_param()
    solution = DISyncInstanceSpec.model_validate({"projectId": 1, "taskType": "DI_SOLUTION", "fileId": 2})
    assert solution.api_start_param() is None


@pytest.mark.parametrize(
    "bad",
    [
        '{"failoverLimit": {"count": "ten", "interval": 1}}',
        '{"ddlMarkMap": {"ADDCOLUMN": "LOUD"}}',
        '{"surprise": true}',
        "not json",
    ],
)
def test_start_param_json_is_checked_like_the_object(bad: str) -> None:
    with pytest.raises(ValidationError):
        DISyncInstanceSpec.model_validate(
            {"projectId": 1, "taskType": "DI_REALTIME", "fileId": 2, "startParamJSON": bad}
        )


def test_secret_ref_namespace_is_refused_by_the_model_too() -> None:
    with pytest.raises(ValidationError, match="must be in the DISyncInstance's namespace"):
        DISyncInstanceSpec.model_validate(
            {
                "projectId": 1,
                "taskType": "DI_SOLUTION",
                "fileId": 2,
                "credentials": {"secretRef": {"name": "ak", "namespace": "other"}},
            }
        )


def test_a_status_update_has_exactly_the_fields_of_the_status() -> None:
    """The typed update the policy returns mirrors the status: a field added to one must be added to the other."""
    from disync_operator.types import DISyncInstanceStatus, StatusUpdate

    def aliases(model: type[DISyncInstanceStatus] | type[StatusUpdate]) -> dict[str, str | None]:
        return {name: info.alias for name, info in model.model_fields.items()}

    assert aliases(StatusUpdate) == aliases(DISyncInstanceStatus)


def test_a_status_update_writes_only_its_fields_each_whole() -> None:
    import datetime as dt

    from disync_operator.types import StartIntent, StatusUpdate

    intent = StartIntent(generation=1, since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), owner="a", id="x")
    patch = StatusUpdate(unverified_intent=intent, request_id=None).to_patch()
    # A None clears the field; a nested object is written whole (a merge patch would keep an older callEnded, or
    # the restart number of an older intent: its null removes it).
    assert patch == {
        "unverifiedIntent": {
            "generation": 1,
            "since": "2026-01-01T00:00:00Z",
            "owner": "a",
            "id": "x",
            "callEnded": False,
            "answerLost": False,
            "restart": None,
        },
        "requestId": None,
    }
