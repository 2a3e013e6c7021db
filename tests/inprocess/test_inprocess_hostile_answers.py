"""What the cloud sends is bounded and cleaned before it reaches status, conditions or Events, and outcomes the API
does not document are verified, never assumed: in-process, over the mock DataWorks."""

from __future__ import annotations

import json

import pytest
from inprocess_fakes import Fault, long_ago
from inprocess_harness import REALTIME, Operator

from disync_operator.controller.runtime import Source
from disync_operator.types import CUT

START, INFO = "StartDISyncInstance", "GetDISyncInstanceInfo"
STACK_TRACE = "java.lang.IllegalStateException: boom\n" + "\tat com.example.Frame.call(Frame.java:42)\n" * 2000


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        (Fault(data_message=STACK_TRACE), "message"),
        (Fault(request_id="R" * 10_000), "requestId"),
        (Fault(data_message="\x1b[31mred\x1b[0m and \x07bell\r"), "message"),
    ],
)
async def test_an_over_long_or_dirty_answer_still_gives_a_clear_status_at_once(
    operator: Operator, fault: Fault, field: str
) -> None:
    operator.dataworks.fail_next(START, fault)
    operator.kube.create("a", REALTIME)
    assert await operator.visit("a") is None
    status = operator.status("a")
    assert operator.ready("a") == ("True", "Started")  # the first attempt's write went through
    value = status[field]
    assert len(value) <= {"message": 4096, "requestId": 256}[field]
    assert "\x1b" not in json.dumps(status)
    assert "\x07" not in value
    if len(value) >= 256:
        assert value.endswith(CUT)
    assert operator.dataworks.count(START) == 1


async def test_an_over_long_error_message_gives_a_clear_status_and_event(operator: Operator) -> None:
    operator.dataworks.fail_next(START, Fault(fail_message=STACK_TRACE))
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    assert operator.ready("a") == ("False", "StartFailed")
    assert operator.status("a")["message"].endswith(CUT)
    assert all(len(e["message"]) <= 1024 for e in operator.kube.events)
    assert operator.dataworks.count(START) == 1


@pytest.mark.parametrize("answer", ["RUNNING", "", "OK" * 100])
async def test_an_undocumented_start_outcome_is_verified_not_assumed(operator: Operator, answer: str) -> None:
    operator.dataworks.fail_next(START, Fault(data_status=answer))
    operator.kube.create("a", REALTIME)
    delay = await operator.visit("a")
    assert delay is not None  # not Ready on a value the API does not document
    ready = next(c for c in operator.status("a")["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RetryScheduled")
    assert "UnknownOutcome" in ready["message"]
    assert operator.status("a")["unverifiedIntent"]["callEnded"] is True
    # The next look verifies: the start did take effect (the fake ran it), so it is recorded, not repeated.
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(START, 100), (INFO, 100)]
    assert operator.ready("a") == ("True", "Started")
