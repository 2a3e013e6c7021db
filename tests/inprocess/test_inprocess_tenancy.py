"""Tenancy and secrets, in-process: what a CR's author can reach, and that no secret value comes back out. The e2e
versions (tests/reliability/test_secrets_and_tenancy.py) run the same attacks against the real kube-apiserver."""

from __future__ import annotations

import json
import logging

import pytest
from inprocess_fakes import Fault, long_ago
from inprocess_harness import REALTIME, Operator

from disync_operator import types as t
from disync_operator.controller.runtime import Source

START, STOP, INFO = "StartDISyncInstance", "StopDISyncInstance", "GetDISyncInstanceInfo"
WITH_SECRET = {**REALTIME, "credentials": {"secretRef": {"name": "ak"}}}

PLANTED = {
    "multi-line": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
    "inner space": "abc def-planted-secret",
    "non-ASCII": "sécret-planted-ünïcode",
    "control": "planted\x1b[31msecret",
    "very long": "L" * 20_000,
}


def everything_emitted(op: Operator, name: str, caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        [
            json.dumps(op.kube.objects[("default", name)].get("status")),
            json.dumps(op.kube.events),
            caplog.text,
            json.dumps(op.dataworks.params),
        ]
    )


@pytest.mark.parametrize("shape", list(PLANTED))
@pytest.mark.parametrize("key", ["accessKeyId", "accessKeySecret", "securityToken"])
async def test_a_bad_secret_value_is_refused_by_name_and_never_echoed(
    operator: Operator, caplog: pytest.LogCaptureFixture, shape: str, key: str
) -> None:
    caplog.set_level(logging.DEBUG)
    values = {"accessKeyId": "LTAIplantedid", "accessKeySecret": "planted-good-secret"} | {key: PLANTED[shape]}
    operator.kube.put_secret("ak", values)
    operator.kube.create("a", WITH_SECRET)
    await operator.visit("a")
    assert operator.ready("a") == ("False", "CredentialsUnavailable")
    message = operator.status("a")["message"]
    assert f"Secret default/ak key {key}" in message
    assert operator.dataworks.calls == []
    emitted = everything_emitted(operator, "a", caplog)
    for line in PLANTED[shape].splitlines():
        for i in range(0, max(1, len(line) - 7), 4):
            assert line[i : i + 8] not in emitted, (shape, key)


async def test_a_secret_not_meant_for_the_operator_is_refused(operator: Operator) -> None:
    operator.kube.put_secret("ak", {"accessKeyId": "LTAIx", "accessKeySecret": "y"}, type_="kubernetes.io/tls")
    operator.kube.create("a", WITH_SECRET)
    await operator.visit("a")
    assert operator.ready("a") == ("False", "CredentialsUnavailable")
    assert "is not meant for disync-operator" in operator.status("a")["message"]
    assert operator.dataworks.calls == []


async def test_a_secret_with_its_trailing_line_break_is_used(operator: Operator) -> None:
    operator.kube.put_secret("ak", {"accessKeyId": "LTAIfromfile\n", "accessKeySecret": "from-a-file\n"})
    operator.kube.create("a", WITH_SECRET)
    await operator.visit("a")
    assert operator.ready("a") == ("True", "Started")


async def test_only_allowed_namespaces_use_the_operator_identity(operator: Operator) -> None:
    operator.rt.settings = operator.rt.settings.model_copy(update={"default_credentials_namespaces": ["team-a"]})
    operator.kube.create("a", REALTIME, namespace="team-a")
    operator.kube.create("b", REALTIME | {"fileId": 101}, namespace="team-b")
    await operator.visit("a", namespace="team-a")
    await operator.visit("b", namespace="team-b")
    assert operator.ready("a", "team-a") == ("True", "Started")
    assert operator.ready("b", "team-b") == ("False", "CredentialsUnavailable")
    assert "may not use the operator's own identity" in operator.status("b", "team-b")["message"]
    assert operator.dataworks.calls == [(START, 100)]


async def test_a_second_resource_for_the_same_task_conflicts_and_calls_nothing(operator: Operator) -> None:
    operator.kube.create("first", REALTIME, namespace="team-a", creationTimestamp="2026-11-30T10:00:00Z")
    await operator.visit("first", namespace="team-a")
    operator.kube.create("second", REALTIME, namespace="team-b", creationTimestamp="2026-11-30T10:00:01Z")
    delay = await operator.visit("second", namespace="team-b")
    assert delay is not None  # looked at again, in case the first goes
    assert operator.ready("second", "team-b") == ("False", "Conflict")
    assert "managed by team-a/first" in operator.status("second", "team-b")["conditions"][0]["message"]
    assert operator.dataworks.calls == [(START, 100)]
    # Deleting the loser stops nothing.
    last = operator.kube.delete("second", "team-b")
    assert last is not None  # it never got our finalizer
    await operator.gone(last)
    assert operator.dataworks.calls == [(START, 100)]
    assert operator.ready("first", "team-a") == ("True", "Started")


async def test_the_task_passes_to_the_next_resource_when_its_owner_goes(operator: Operator) -> None:
    operator.kube.create("first", REALTIME, namespace="team-a", creationTimestamp="2026-11-30T10:00:00Z")
    operator.kube.create("second", REALTIME, namespace="team-b", creationTimestamp="2026-11-30T10:00:01Z")
    await operator.startup()  # an operator (re)starting with both there
    await operator.visit("second", namespace="team-b")  # its event comes first: the index knows the first anyway
    await operator.visit("first", namespace="team-a")
    assert operator.ready("second", "team-b") == ("False", "Conflict")
    uid = operator.kube.body("second", "team-b")["metadata"]["uid"]
    assert operator.rt.requeue.due_in(uid) == pytest.approx(60, abs=1)  # the loser waits, looked at every minute
    operator.dataworks.stopped_state = "KILLING"  # the first's stop takes a while
    operator.kube.delete("first", "team-a")
    last = operator.kube.body("first", "team-a")
    await operator.visit("first", namespace="team-a")  # stopped, released
    await operator.gone(last)
    assert operator.rt.requeue.due_in(uid) == 0  # the owner is gone: the loser is looked at now
    waiting = await operator.visit("second", Source.REQUEUE, namespace="team-b")
    assert waiting is not None  # the task is still stopping: no start that DataWorks would refuse
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100)]
    operator.dataworks.states[100] = "NORUN"
    await operator.visit("second", Source.REQUEUE, namespace="team-b")
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100), (INFO, 100), (START, 100)]
    assert operator.ready("second", "team-b") == ("True", "Started")


async def test_a_task_left_running_by_its_previous_resource_is_taken_over_not_restarted(operator: Operator) -> None:
    operator.kube.create("first", REALTIME | {"deletionPolicy": "Orphan"}, namespace="team-a")
    operator.kube.create("second", REALTIME, namespace="team-b", creationTimestamp="2099-01-01T00:00:00Z")
    await operator.startup()
    await operator.visit("first", namespace="team-a")
    await operator.visit("second", namespace="team-b")
    last = operator.kube.delete("first", "team-a")
    assert last is not None
    await operator.gone(last)
    operator.dataworks.states[100] = "RUN"
    await operator.visit("second", Source.REQUEUE, namespace="team-b")
    assert operator.dataworks.count(START) == 1  # the first's; the second found it running
    assert operator.ready("second", "team-b") == ("True", "Running")


async def test_a_malformed_intent_is_verified_not_trusted_and_not_a_wedge(operator: Operator) -> None:
    operator.dataworks.states[100] = "RUN"
    operator.kube.create("a", REALTIME, annotations={t.START_INTENT: "{not json"})
    assert await operator.visit("a") is None
    assert operator.dataworks.calls == [(INFO, 100)]  # verified: it runs, so it is recorded, not started again
    assert operator.ready("a") == ("True", "Running")


async def test_an_intent_from_the_future_waits_one_lease_not_until_its_date(operator: Operator) -> None:
    future = t.StartIntent.model_validate(
        {"generation": 1, "since": "2099-01-01T00:00:00Z", "owner": "someone", "id": "f1"}
    )
    operator.kube.create("a", REALTIME, annotations={t.START_INTENT: future.model_dump_json()})
    assert (await operator.visit("a") or 0) <= 30
    assert operator.dataworks.calls == []
    operator.clock.advance(30)
    assert await operator.visit("a", Source.REQUEUE) is None
    assert operator.dataworks.calls == [(INFO, 100), (START, 100)]
    assert operator.ready("a") == ("True", "Started")


async def test_no_room_for_the_intent_is_a_clear_condition_and_no_call(operator: Operator) -> None:
    operator.kube.refuse_metadata = True
    operator.kube.create("a", REALTIME)
    delay = await operator.visit("a")
    assert delay is not None
    assert operator.ready("a") == ("False", "IntentRejected")
    assert operator.dataworks.calls == []
    writes = len(operator.kube.writes)
    await operator.visit("a", Source.REQUEUE)
    assert len(operator.kube.writes) == writes  # said once
    operator.kube.refuse_metadata = False
    operator.kube.edit("a", annotations={"big": None})
    await operator.visit("a")
    assert operator.ready("a") == ("True", "Started")


@pytest.mark.parametrize(
    "start_param_json",
    [
        '{"errorLimit": {"record": "5"}}',
        '{"errorLimit": {"record": true}}',
        '{"error_limit": {"record": 5}}',
        '{"errorLimit": {"record": 5}, "errorLimit": {"record": 6}}',
        '{"errorLimit": {"record": 5}, "unknown": 1}',
    ],
)
async def test_start_param_json_is_held_to_the_typed_schema(operator: Operator, start_param_json: str) -> None:
    spec = {k: v for k, v in REALTIME.items() if k != "startParam"} | {"startParamJSON": start_param_json}
    operator.kube.create("a", spec)
    await operator.visit("a")
    assert operator.ready("a") == ("False", "InvalidSpec")
    assert operator.dataworks.calls == []


async def test_an_unknown_terminal_error_says_it_is_not_retried(operator: Operator) -> None:
    operator.dataworks.fail_next(START, Fault(http_status=400, code="Something.New"))
    operator.kube.create("a", REALTIME)
    assert await operator.visit("a") is None
    assert operator.ready("a") == ("False", "StartFailed")
    assert "Not retried" in operator.status("a")["conditions"][0]["message"]
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(START, 100)]


async def test_a_missing_secret_says_its_code_in_last_error(operator: Operator) -> None:
    operator.kube.create("a", WITH_SECRET)
    await operator.visit("a")
    assert operator.ready("a") == ("False", "CredentialsUnavailable")
    assert operator.status("a")["lastError"] == {"code": "CredentialsUnavailable", "retryable": False}
