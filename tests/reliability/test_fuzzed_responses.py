"""Scenario 5 (responses): whatever DataWorks (or a proxy in front of it) answers, nothing breaks.

- The client, fed random statuses, headers and bodies through httpx.MockTransport, either returns a parsed response or
  raises one of its own DataWorksError subclasses -- never anything else.
- A running operator, fed malformed 502s and truncated bodies by the emulator, stays live and converges once the
  faults stop, with no unexpected handler exception in its log.
"""

from __future__ import annotations

import asyncio
import json
import string
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from e2e_helpers import assert_live
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_helpers import (
    FIRST_FILE,
    assert_exactly_once,
    create_burst,
    list_dsi,
    record_results,
)

from disync_operator.controller import policy
from disync_operator.controller.policy import Backoff
from disync_operator.dataworks import (
    DataWorksClient,
    DataWorksError,
    GetDISyncInstanceInfoRequest,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    StopDISyncInstanceRequest,
    TaskType,
)
from disync_operator.dataworks._client import MAX_RETRY_AFTER
from disync_operator.dataworks._models import ApiResponse
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for
from disync_operator.types import DISyncInstanceStatus

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
KEYS = ["Success", "RequestId", "Data", "Status", "Message", "Code", "SolutionInfo", "HostId", "Recommend"]
# Bodies shaped like API documents (right keys, wrong values) find more than uniformly random JSON does.
api_like = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(KEYS), children, max_size=6)
    ),
    max_leaves=16,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_value.map(lambda v: json.dumps(v).encode()),
    api_like.map(lambda v: json.dumps(v).encode()),
    api_like.map(lambda v: json.dumps(v).encode()[: max(1, len(json.dumps(v)) // 2)]),
)
header_values = st.one_of(
    st.text(string.printable.strip("\r\n\x0b\x0c"), max_size=20),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "nan", "inf", "-1", "1e308"]),
)
headers = st.dictionaries(
    st.sampled_from(["x-acs-retry-after", "retry-after", "x-acs-request-id", "content-type", "content-encoding"]),
    header_values,
    max_size=4,
)
statuses = st.one_of(st.sampled_from([200, 200, 200, 400, 403, 404, 429, 500, 502, 503]), st.integers(100, 599))
outcomes = st.tuples(statuses, headers, bodies)

OPERATIONS: list[Callable[[DataWorksClient], Any]] = [
    lambda c: c.start_instance(
        StartDISyncInstanceRequest(project_id=1, task_type=TaskType.DI_REALTIME, file_id=2, start_param="{}")
    ),
    lambda c: c.stop_instance(StopDISyncInstanceRequest(project_id=1, task_type=TaskType.DI_REALTIME, file_id=2)),
    lambda c: c.get_instance_info(
        GetDISyncInstanceInfoRequest(project_id=1, task_type=TaskType.DI_SOLUTION, file_id=2)
    ),
]


async def _exercise(status: int, head: dict[str, str], body: bytes, operation: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=head, content=body)

    credentials = StaticCredentialsProvider("LTAIfuzz", "fuzz-secret", "fuzz-token")
    async with DataWorksClient("http://dataworks.test", credentials, transport=httpx.MockTransport(answer)) as client:
        failure: DataWorksError | None = None
        try:
            result = await OPERATIONS[operation](client)
        except DataWorksError as error:
            failure = error
        if failure is None:
            assert isinstance(result, ApiResponse)
            return
        text = str(failure) + repr(failure)
        assert "fuzz-secret" not in text
        assert "fuzz-token" not in text
        assert failure.retry_after is None or 0 <= failure.retry_after <= MAX_RETRY_AFTER, failure.retry_after
        # What the operator does with any such error must not raise either (a non-finite or absurd retry-after
        # once overflowed the next-retry timestamp and escaped the handler).
        status = DISyncInstanceStatus(attempts=3)
        if failure.retryable:
            delay = Backoff(base=0.2, factor=2, cap=3).delay(3, failure.retry_after)
            policy.retry_scheduled(status, 1, failure, delay, policy.now(), keep_unverified=True)
        else:
            policy.failed_terminally(status, 1, failure, "operator-default", policy.now())


@pytest.mark.parametrize(
    "examples",
    [
        pytest.param(300, id="bounded"),
        pytest.param(3000, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
    ],
)
def test_client_raises_only_its_own_errors_on_fuzzed_responses(examples: int) -> None:
    seen = {"n": 0}

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=examples < 1000,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(outcome=outcomes, operation=st.integers(0, len(OPERATIONS) - 1))
    def run(outcome: tuple[int, dict[str, str], bytes], operation: int) -> None:
        seen["n"] += 1
        asyncio.run(_exercise(*outcome, operation))

    run()
    if examples >= 3000:
        record_results("fuzzed_client_responses", {"examples": seen["n"], "non_dataworks_exceptions": 0})


@pytest.mark.cluster
@pytest.mark.parametrize(
    "count",
    [
        pytest.param(15, id="bounded"),
        pytest.param(150, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
    ],
)
def test_operator_stays_alive_on_malformed_answers_and_converges(
    kubectl: Kubectl,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    count: int,
) -> None:
    operator = start_operator()
    emulator.set_faults(seed=5, malformed_rate=0.45, truncated_rate=0.45)
    create_burst(kubectl, range(FIRST_FILE, FIRST_FILE + count))
    # Under the faults: enough calls answered with garbage, while the liveness probe keeps answering.
    liveness_checks = 0

    def garbage_seen() -> bool:
        nonlocal liveness_checks
        assert_live(operator)
        liveness_checks += 1
        faults = [e for e in emulator.requests() if e["fault"] in ("malformed", "truncated")]
        return len(faults) >= 2 * count

    wait_for(garbage_seen, timeout=60 + count, interval=0.5, what="garbage answers")
    emulator.set_faults()
    began = time.monotonic()

    def converged() -> list[dict[str, Any]] | None:
        assert_live(operator)
        items = list_dsi(kubectl)
        ready = [
            o
            for o in items
            if any(c["type"] == "Ready" and c["status"] == "True" for c in o["status"].get("conditions", []))
        ]
        return items if len(ready) == count else None

    items = wait_for(converged, timeout=60 + count, interval=1.0, what="convergence after the faults stop")
    assert_exactly_once(emulator, items)
    # Garbage is an error the handlers understand: no unexpected exception escaped into kopf.
    unexpected = [r for r in operator.log_records() if "failed with an exception" in str(r.get("message", ""))]
    assert not unexpected, unexpected[:3]
    garbage = sum(1 for e in emulator.requests() if e["fault"] in ("malformed", "truncated"))
    if count >= 150:
        record_results(
            "malformed_answers_operator",
            {
                "crs": count,
                "garbage_answers": garbage,
                "liveness_checks_passed": liveness_checks,
                "operator_crashes": 0,
                "seconds_to_converge_after_faults": round(time.monotonic() - began, 1),
            },
        )
