"""The reconciler in-process, one test per branch: the real Runtime, work queue, policy and DataWorks client, over an
in-memory Kubernetes and an httpx MockTransport (fakes.py). Milliseconds each; the subprocess e2e tests remain the
proof against the real kube-apiserver."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from inprocess_fakes import Fault, long_ago
from inprocess_harness import REALTIME, SOLUTION, Operator

from disync_operator import types as t
from disync_operator.controller.runtime import Source, sweep_once

START, STOP, INFO = "StartDISyncInstance", "StopDISyncInstance", "GetDISyncInstanceInfo"


def intent_annotation(op: Operator, name: str) -> dict[str, object]:
    return json.loads(op.kube.objects[("default", name)]["metadata"]["annotations"][t.START_INTENT])


# --- start ---------------------------------------------------------------------------------------------------------


async def test_first_start_writes_the_intent_before_the_call_and_answers_it(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    assert await operator.visit("a") is None
    assert operator.dataworks.calls == [(START, 100)]
    assert operator.dataworks.params[0]["StartParam"] == '{"errorLimit":{"record":0}}'
    # One metadata write (intent + finalizer) before the call, one status write after it.
    assert operator.kube.writes == ["metadata", "status"]
    obj = operator.kube.objects[("default", "a")]
    assert obj["metadata"]["finalizers"] == [t.FINALIZER]
    status = operator.status("a")
    assert status["answeredIntent"] == intent_annotation(operator, "a")["id"]
    assert (status["startedGeneration"], status["status"], status["requestId"]) == (1, "success", "REQ-1")
    assert "unverifiedIntent" not in status
    assert operator.ready("a") == ("True", "Started")
    assert operator.events() == [("Normal", "Started")]


async def test_our_own_write_coming_back_as_an_event_does_nothing(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    writes = len(operator.kube.writes)
    await operator.visit("a")  # the watch event of our status write: an echo
    await operator.visit("a", Source.REQUEUE)  # looked at again on purpose: already started
    assert operator.dataworks.calls == [(START, 100)]
    assert len(operator.kube.writes) == writes


async def test_a_label_only_change_starts_nothing(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    writes = len(operator.kube.writes)
    operator.kube.edit("a", labels={"team": "data"})
    assert await operator.visit("a") is None
    assert operator.dataworks.calls == [(START, 100)]
    assert len(operator.kube.writes) == writes


async def test_a_spec_change_starts_once_more_with_the_new_parameters(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    operator.kube.edit("a", spec={**REALTIME, "startParam": {"errorLimit": {"record": 5}}})
    await operator.visit("a")
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(START, 100), (START, 100)]
    assert operator.dataworks.params[1]["StartParam"] == '{"errorLimit":{"record":5}}'
    assert operator.status("a")["startedGeneration"] == 2
    # The finalizer was written once, with the first intent.
    assert operator.kube.objects[("default", "a")]["metadata"]["finalizers"] == [t.FINALIZER]


async def test_a_solution_gets_no_finalizer(operator: Operator) -> None:
    operator.kube.create("s", SOLUTION)
    await operator.visit("s")
    assert operator.dataworks.calls == [(START, 200)]
    assert "finalizers" not in operator.kube.objects[("default", "s")]["metadata"]
    assert operator.ready("s") == ("True", "Started")


async def test_a_retryable_error_backs_off_in_status_then_verifies_and_starts(operator: Operator) -> None:
    operator.dataworks.fail_next(START, Fault(http_status=503, code="ServiceUnavailable"))
    operator.kube.create("a", REALTIME)
    delay = await operator.visit("a")
    assert delay is not None
    assert 0.4 <= delay <= 1.1  # attempt 1 of base 1 s, half of it jitter
    status = operator.status("a")
    assert operator.ready("a") == ("False", "RetryScheduled")
    assert status["lastError"] == {"code": "ServiceUnavailable", "httpStatus": 503, "retryable": True}
    assert status["unverifiedIntent"]["callEnded"] is True  # a 5xx may have started it: verify first
    # Looked at again before nextRetryTime: nothing is sent.
    assert await operator.visit("a", Source.REQUEUE) is not None
    assert operator.dataworks.calls == [(START, 100)]
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    assert await operator.visit("a", Source.REQUEUE) is None
    assert operator.dataworks.calls == [(START, 100), (INFO, 100), (START, 100)]
    assert operator.ready("a") == ("True", "Started")
    assert operator.status("a")["attempts"] == 2


async def test_throttling_is_retried_without_verifying(operator: Operator) -> None:
    operator.dataworks.fail_next(START, Fault(http_status=429, code="Throttling.User"))
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    assert "unverifiedIntent" not in operator.status("a")  # refused at the gateway: nothing to verify
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(START, 100), (START, 100)]


async def test_a_terminal_error_is_reported_and_not_retried(operator: Operator) -> None:
    operator.dataworks.fail_next(START, Fault(http_status=403, code="Forbidden.Access"))
    operator.kube.create("a", REALTIME)
    assert await operator.visit("a") is None
    assert operator.ready("a") == ("False", "AccessDenied")
    assert operator.status("a")["failedGeneration"] == 1
    assert operator.events() == [("Warning", "AccessDenied")]
    await operator.visit("a", Source.REQUEUE)
    await operator.visit("a", Source.OBSERVE, observe=True)  # the sweep: same credentials, nothing to do
    assert operator.dataworks.calls == [(START, 100)]


async def test_an_api_fail_answer_is_terminal_with_the_api_message(operator: Operator) -> None:
    operator.dataworks.fail_next(START, Fault(fail_message="fileId:[100] is invalid."))
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    status = operator.status("a")
    assert (status["status"], status["message"]) == ("fail", "fileId:[100] is invalid.")
    assert operator.ready("a") == ("False", "StartFailed")


async def test_a_terminal_failure_is_retried_once_its_secret_changes(operator: Operator) -> None:
    spec = {**REALTIME, "credentials": {"secretRef": {"name": "ak"}}}
    operator.kube.put_secret("ak", {"accessKeyId": "LTAIuser", "accessKeySecret": "wrong"})
    operator.dataworks.fail_next(START, Fault(http_status=400, code="InvalidAccessKeyId.NotFound"))
    operator.kube.create("a", spec)
    await operator.visit("a")
    assert operator.ready("a") == ("False", "AuthenticationFailed")
    await operator.visit("a", Source.OBSERVE, observe=True)
    assert operator.dataworks.count(START) == 1  # the Secret is unchanged
    operator.kube.put_secret("ak", {"accessKeyId": "LTAIuser", "accessKeySecret": "right"})
    await operator.visit("a", Source.OBSERVE, observe=True)  # the sweep notices the new Secret version
    assert operator.dataworks.count(START) == 2
    assert operator.ready("a") == ("True", "Started")


async def test_a_missing_secret_is_reported_by_name_and_nothing_is_called(operator: Operator) -> None:
    operator.kube.create("a", {**REALTIME, "credentials": {"secretRef": {"name": "absent"}}})
    assert await operator.visit("a") is None
    assert operator.ready("a") == ("False", "CredentialsUnavailable")
    assert "Secret default/absent not found" in operator.status("a")["message"]
    assert operator.dataworks.calls == []
    await operator.visit("a", Source.REQUEUE)
    assert operator.events() == [("Warning", "CredentialsUnavailable")]  # once, not at every look


async def test_a_lost_response_is_waited_out_then_verified_not_repeated(operator: Operator) -> None:
    operator.dataworks.fail_next(START, Fault(lost=True))
    operator.kube.create("a", REALTIME)
    delay = await operator.visit("a")
    assert delay is not None
    status = operator.status("a")
    assert status["unverifiedIntent"]["callEnded"] is False  # no answer: the call may still be in flight
    assert operator.ready("a") == ("False", "RetryScheduled")
    # Its backoff over but the lease not: still nothing is sent.
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    lease_left = await operator.visit("a", Source.REQUEUE)
    assert lease_left is not None
    assert lease_left > 20
    assert operator.dataworks.calls == [(START, 100)]
    # The lease over too: verified, found started, not started again.
    operator.clock.advance(30)
    assert await operator.visit("a", Source.REQUEUE) is None
    assert operator.dataworks.calls == [(START, 100), (INFO, 100)]
    status = operator.status("a")
    assert (status["startedGeneration"], status["instanceState"]) == (1, "WAIT")
    assert "unverifiedIntent" not in status


async def test_a_failed_verification_counts_as_an_attempt_and_backs_off(operator: Operator) -> None:
    operator.dataworks.fail_next(START, Fault(http_status=500, code="InternalError"))
    operator.dataworks.fail_next(INFO, Fault(http_status=500, code="InternalError"))
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    delay = await operator.visit("a", Source.REQUEUE)
    assert delay is not None
    assert delay >= 1.0
    assert operator.dataworks.calls == [(START, 100), (INFO, 100)]
    assert operator.status("a")["attempts"] == 2


async def test_another_process_unexpired_intent_is_respected(operator: Operator) -> None:
    theirs = t.StartIntent(generation=1, since=_now(), owner="op-b", id="x1")
    operator.kube.create("a", REALTIME, annotations={t.START_INTENT: theirs.model_dump_json()})
    delay = await operator.visit("a")
    assert delay is not None
    assert 25 <= delay <= 30.01
    assert operator.dataworks.calls == []
    assert operator.kube.writes == []


async def test_another_process_intent_is_verified_a_lease_after_first_sight(operator: Operator) -> None:
    """Its date is the writer's clock, never compared with ours: dated an hour ago, it still gets its whole lease
    from when this process first saw it (the writer's clock may be an hour ahead)."""
    operator.dataworks.states[100] = "RUN"  # it did start
    theirs = {
        "generation": 1,
        "since": long_ago(),
        "owner": "op-b",
        "id": "x1",
        "answered": False,
    }  # an older version's
    operator.kube.create("a", REALTIME, annotations={t.START_INTENT: json.dumps(theirs)})
    assert (await operator.visit("a") or 0) > 29.9
    assert operator.dataworks.calls == []
    operator.clock.advance(30)
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(INFO, 100)]
    status = operator.status("a")
    assert (status["startedGeneration"], status["answeredIntent"]) == (1, "x1")
    assert operator.ready("a") == ("True", "Running")


async def test_an_expired_intent_that_never_started_is_started_once(operator: Operator) -> None:
    theirs = t.StartIntent(generation=1, since=_now(-3600), owner="op-b", id="x2")
    operator.kube.create("a", REALTIME, annotations={t.START_INTENT: theirs.model_dump_json()})
    await operator.visit("a")
    operator.clock.advance(30)
    await operator.visit("a", Source.REQUEUE)
    # Only an intent on the object (a crash, a copy): no answer was seen lost, so a stopped task is started.
    assert operator.dataworks.calls == [(INFO, 100), (START, 100)]
    assert operator.status("a")["answeredIntent"] == intent_annotation(operator, "a")["id"] != "x2"


async def test_an_unverified_intent_under_its_old_status_name_is_still_verified(operator: Operator) -> None:
    """Written before the rename (status.pendingStart): an upgrade must not start the task a second time."""
    operator.dataworks.states[100] = "RUN"
    operator.kube.create("a", REALTIME)
    old = {"generation": 1, "since": long_ago(), "owner": "op-old", "id": "x3", "answered": True}
    operator.kube.edit_status("a", {"pendingStart": old, "answeredIntent": "x3", "observedGeneration": 1})
    await operator.visit("a")
    assert operator.dataworks.calls == [(INFO, 100)]
    status = operator.status("a")
    assert status["startedGeneration"] == 1
    assert "pendingStart" not in status  # cleared once read


async def test_another_writer_between_read_and_intent_means_no_call(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    body = operator.kube.body("a")
    operator.kube.edit("a", labels={"x": "y"})  # the object moves on before the queued body is reconciled
    operator.rt.work.add(body["metadata"]["uid"], body, Source.EVENT)
    await operator.rt.work.settled([body["metadata"]["uid"]])
    assert operator.dataworks.calls == []  # the intent's precondition failed: nothing was sent
    assert operator.rt.requeue.due_in(body["metadata"]["uid"]) == pytest.approx(1.0, abs=0.1)


async def test_an_invalid_start_param_json_is_refused_before_any_call(operator: Operator) -> None:
    spec = {k: v for k, v in REALTIME.items() if k != "startParam"} | {
        "startParamJSON": '{"errorLimit": {"record": -1}}'
    }
    operator.kube.create("a", spec)
    assert await operator.visit("a") is None
    assert operator.ready("a") == ("False", "InvalidSpec")
    assert "spec.startParamJSON" in operator.status("a")["conditions"][0]["message"]
    await operator.visit("a", Source.REQUEUE)
    assert operator.events() == [("Warning", "InvalidSpec")]
    assert operator.dataworks.calls == []


# --- observe -------------------------------------------------------------------------------------------------------


async def test_a_healthy_history_posts_no_warning_and_drift_exactly_one(operator: Operator) -> None:
    """WAIT -> RUN -> PAUSE -> PAUSE -> NORUN -> RUN: Started, then one NotRunning per drift, nothing for healthy."""
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    seen = []
    for state in ("WAIT", "RUN", "RUN", "PAUSE", "PAUSE", "NORUN", "RUN"):
        operator.dataworks.states[100] = state
        await operator.visit("a", Source.OBSERVE, observe=True)
        seen.append((operator.status("a")["instanceState"], operator.ready("a")))
    assert seen == [
        ("WAIT", ("True", "Started")),
        ("RUN", ("True", "Running")),
        ("RUN", ("True", "Running")),
        ("PAUSE", ("False", "NotRunning")),
        ("PAUSE", ("False", "NotRunning")),
        ("NORUN", ("False", "NotRunning")),
        ("RUN", ("True", "Running")),
    ]
    assert operator.events() == [("Normal", "Started"), ("Warning", "NotRunning"), ("Warning", "NotRunning")]
    assert operator.messages()[1:] == ["live state PAUSE", "live state NORUN"]
    assert operator.dataworks.count(START) == 1


async def test_the_events_of_a_wait_run_pause_history(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    for state in ("WAIT", "RUN", "PAUSE"):
        operator.dataworks.states[100] = state
        await operator.visit("a", Source.OBSERVE, observe=True)
    assert operator.events() == [("Normal", "Started"), ("Warning", "NotRunning")]


async def test_a_look_without_change_writes_nothing(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    operator.dataworks.started_state = "RUN"
    await operator.visit("a")
    await operator.visit("a", Source.OBSERVE, observe=True)
    writes = len(operator.kube.writes)
    await operator.visit("a", Source.OBSERVE, observe=True)
    assert len(operator.kube.writes) == writes


async def test_a_solution_that_fails_is_reported_once(operator: Operator) -> None:
    operator.kube.create("s", SOLUTION)
    await operator.visit("s")
    await operator.visit("s", Source.OBSERVE, observe=True)
    assert operator.ready("s") == ("True", "Started")
    operator.dataworks.solution_state = "fail"
    await operator.visit("s", Source.OBSERVE, observe=True)
    await operator.visit("s", Source.OBSERVE, observe=True)
    assert operator.ready("s") == ("False", "NotRunning")
    assert operator.events() == [("Normal", "Started"), ("Warning", "NotRunning")]


async def test_the_sweep_starts_nothing_that_an_event_would_not(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    operator.kube.edit_status("a", {"observedGeneration": 1})  # handled by someone, not started
    await operator.visit("a", Source.OBSERVE, observe=True)
    assert operator.dataworks.calls == []


# --- delete --------------------------------------------------------------------------------------------------------


async def test_delete_with_stop_stops_then_lets_go(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    assert operator.kube.delete("a") is None  # held by our finalizer
    await operator.visit("a")
    assert operator.dataworks.calls == [(START, 100), (STOP, 100)]
    assert ("default", "a") not in operator.kube.objects
    assert operator.events() == [("Normal", "Started"), ("Normal", "Stopped")]


async def test_delete_with_orphan_leaves_the_task_and_says_so(operator: Operator) -> None:
    operator.kube.create("a", {**REALTIME, "deletionPolicy": "Orphan"})
    await operator.visit("a")
    assert "finalizers" not in operator.kube.objects[("default", "a")]["metadata"]
    last = operator.kube.delete("a")
    assert last is not None
    await operator.gone(last)
    assert operator.dataworks.calls == [(START, 100)]
    assert operator.events() == [("Normal", "Started"), ("Normal", "Orphaned")]


async def test_orphan_chosen_after_the_start_releases_without_stopping(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    operator.kube.edit("a", spec={**REALTIME, "deletionPolicy": "Orphan"})
    operator.dataworks.fail_next(START, Fault(http_status=503, code="ServiceUnavailable"))  # the new generation
    await operator.visit("a")
    operator.kube.delete("a")
    await operator.visit("a")
    assert ("default", "a") not in operator.kube.objects
    assert operator.dataworks.count(STOP) == 0
    assert operator.events()[-1] == ("Normal", "Orphaned")


async def test_a_failing_stop_keeps_the_object_and_backs_off_then_succeeds(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    operator.kube.delete("a")
    operator.dataworks.fail_next(STOP, Fault(http_status=503, code="ServiceUnavailable"))
    operator.dataworks.fail_next(STOP, Fault(http_status=403, code="Forbidden.Access"))
    first = await operator.visit("a")
    assert first is not None
    assert first <= 1.1
    assert operator.ready("a") == ("False", "Deleting")
    assert operator.status("a")["stopAttempts"] == 1
    second = await operator.visit("a", Source.REQUEUE)
    assert second is not None
    assert second >= 59.9
    assert operator.ready("a") == ("False", "StopFailed")
    assert operator.status("a")["stopAttempts"] == 2
    assert operator.events()[-1] == ("Warning", "StopFailed")
    await operator.visit("a", Source.REQUEUE)
    assert ("default", "a") not in operator.kube.objects
    assert operator.dataworks.count(STOP) == 3


async def test_a_stop_the_api_reports_failed_releases_the_object(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    operator.kube.delete("a")
    operator.dataworks.fail_next(STOP, Fault(fail_message="the task does not exist"))
    await operator.visit("a")
    assert ("default", "a") not in operator.kube.objects
    assert operator.events()[-1] == ("Warning", "StopReportedFailure")


async def test_a_task_never_started_is_not_stopped(operator: Operator) -> None:
    operator.kube.create("a", REALTIME, finalizers=[t.FINALIZER])  # e.g. the intent write landed, the call did not
    operator.kube.delete("a")
    await operator.visit("a")
    assert operator.dataworks.calls == []
    assert ("default", "a") not in operator.kube.objects


def _now(offset: float = 0.0) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)


async def test_a_sweep_pass_reads_each_shared_secret_once(operator: Operator) -> None:
    operator.kube.put_secret("ak", {"accessKeyId": "LTAIuser", "accessKeySecret": "s"})
    for i in range(5):
        operator.kube.create(f"a{i}", REALTIME | {"fileId": 100 + i, "credentials": {"secretRef": {"name": "ak"}}})
        await operator.visit(f"a{i}")
    reads = operator.kube.secret_gets
    assert reads == 5  # a watch event's reconcile reads the Secret as it is now
    observed, _ = await sweep_once(operator.rt, observe=True, nudge_min_age=None)
    assert observed == 5
    assert operator.kube.secret_gets == reads + 1  # the pass: once for all five
    assert operator.dataworks.count(INFO) == 5


async def test_a_status_from_a_newer_version_keeps_its_record_of_the_start(operator: Operator) -> None:
    """Fields this version does not know (a newer operator's, or a newer CRD's defaults) are ignored, not a reason
    to forget that the task was started."""
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    ready = {"type": "Ready", "status": "True", "reason": "Started", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    operator.kube.edit_status("a", {"someNewField": 3, "conditions": [ready | {"newConditionField": 1}]})
    operator.kube.edit("a", labels={"x": "y"})
    await operator.visit("a")
    assert operator.dataworks.calls == [(START, 100)]


async def test_an_unreadable_status_is_verified_before_any_start(operator: Operator) -> None:
    operator.dataworks.states[100] = "RUN"
    operator.kube.create("a", REALTIME)
    # (The API server's schema refuses most of this; a status its schema admits but this version can't read, e.g.
    # after a downgrade across an incompatible change, is the case that matters.)
    operator.kube.objects[("default", "a")]["status"] = {"startedGeneration": "broken", "observedGeneration": "broken"}
    await operator.visit("a")
    assert operator.dataworks.calls == [(INFO, 100)]  # it runs: recorded, not started a second time
    assert operator.ready("a") == ("True", "Running")


async def test_a_pass_spreads_its_reads_over_the_interval(operator: Operator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass goes as fast as the observation budget lets it (nothing to estimate from); the next ones wait
    interval / (objects of the last pass) between visits, so reads are spread rather than bursted."""
    from disync_operator.controller.runtime import sweep

    for i in range(4):
        operator.kube.create(f"a{i}", REALTIME | {"fileId": 100 + i})
        await operator.visit(f"a{i}")
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def record(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(sweep.asyncio, "sleep", record)
    monkeypatch.setattr(operator.rt, "settings", operator.rt.settings.model_copy(update={"observe_interval": 120.0}))
    assert await sweep_once(operator.rt, observe=True, nudge_min_age=None) == (4, 0)
    assert waits == []
    assert await sweep_once(operator.rt, observe=True, nudge_min_age=None) == (4, 0)
    assert waits == [30.0, 30.0, 30.0]  # 120 s over 4 objects, between the visits
    assert operator.dataworks.count(INFO) == 8
