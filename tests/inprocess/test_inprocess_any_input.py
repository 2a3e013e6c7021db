"""Whatever a user can write into a spec or the intent annotations ends in a status with a reason: never in an
exception that fails every retry and leaves the object with no status at all. Hypothesis writes the inputs; each
runs through the in-process reconciler (the real runtime, work queue and policy)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inprocess_fakes import FakeClock, FakeDataWorks, FakeKube
from inprocess_harness import LOG, REALTIME, Operator

from disync_operator import types as t
from disync_operator.controller import policy
from disync_operator.controller.runtime import Runtime, Source
from disync_operator.controller.runtime.first_seen import FirstSeen
from disync_operator.controller.settings import OperatorSettings
from disync_operator.controller.worker import reconcile
from disync_operator.dataworks import StaticCredentialsProvider

REASONS = {reason.value for reason in policy.Reason}

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
)


@st.composite
def deep_json(draw: st.DrawFn) -> str:
    depth = draw(st.integers(100, 6000))
    opener = draw(st.sampled_from(['{"a":', "["]))
    return opener * depth + "1" + ("}" if opener.startswith("{") else "]") * depth


FIELDS = ["projectId", "taskType", "fileId", "region", "startParam", "startParamJSON", "suspend", "managementPolicy",
          "restartPolicy", "deletionPolicy", "credentials"]  # fmt: skip

specs = st.one_of(
    st.fixed_dictionaries({}, optional={field: json_values for field in FIELDS}),
    st.builds(
        lambda changes: {**REALTIME, **changes}, st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3)
    ),
    st.builds(
        lambda text: {k: v for k, v in {**REALTIME, "startParamJSON": text}.items() if k != "startParam"},
        deep_json() | st.text(max_size=60),
    ),
)

intent_fields = st.fixed_dictionaries(
    {},
    optional={
        "generation": json_values | st.integers(-5, 5),
        "since": st.sampled_from(
            ["2024-01-01T00:00:00", "2024-01-01T00:00:00Z", "2099-01-01T00:00:00+14:00", "yesterday", "0001-01-01"]
        )
        | json_values,
        "owner": json_values,
        "id": json_values,
        "restart": json_values,
        "callEnded": json_values,
        "answerLost": json_values,
    },
)
annotations = st.one_of(
    st.text(max_size=60),
    st.builds(lambda fields: json.dumps(fields), intent_fields),
    deep_json(),
)


def fresh_operator() -> Operator:
    kube, dataworks, clock = FakeKube(), FakeDataWorks(), FakeClock()
    rt = Runtime(
        OperatorSettings(
            endpoint="http://dataworks.test",
            metrics_port=0,
            liveness_port=0,
            qps=None,
            default_credentials_namespaces=["*"],
        ),
        default_credentials=StaticCredentialsProvider("LTAIoperator", "operator-secret"),
        me="op-test/1",
        dataworks_transport=dataworks.transport(),
        first_seen=FirstSeen(clock=clock),
    )
    rt.use_kube(kube)
    return Operator(kube, dataworks, rt, clock)


async def run_once(spec: dict[str, Any], extra: dict[str, str]) -> Operator:
    import asyncio

    op = fresh_operator()

    async def work(item: Any) -> None:
        await reconcile(op.rt, item, LOG)

    workers = asyncio.create_task(op.rt.work.run(1, work))
    try:
        op.kube.create("a", spec, annotations=extra)
        await op.visit("a")
        op.clock.advance(31)  # an intent's lease, on the operator's clock
        await op.visit("a", Source.REQUEUE)
    finally:
        workers.cancel()
        await op.rt.aclose()
    return op


@pytest.fixture
def no_surprises(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.ERROR)
    return caplog


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs, start_intent=annotations | st.none(), stop_intent=annotations | st.none())
async def test_any_spec_and_intent_end_in_a_status_with_a_reason(
    no_surprises: pytest.LogCaptureFixture,
    spec: dict[str, Any],
    start_intent: str | None,
    stop_intent: str | None,
) -> None:
    no_surprises.clear()
    extra = {k: v for k, v in {t.START_INTENT: start_intent, t.STOP_INTENT: stop_intent}.items() if v is not None}
    op = await run_once(spec, extra)
    unexpected = [r.getMessage() for r in no_surprises.records if "unexpectedly" in r.getMessage()]
    assert unexpected == []
    conditions = op.status("a").get("conditions") or []
    ready = next((c for c in conditions if c["type"] == "Ready"), None)
    assert ready is not None, (spec, extra)
    assert ready["reason"] in REASONS


async def test_the_two_inputs_that_wedged_a_resource_now_say_why(operator: Operator) -> None:
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    spec = {k: v for k, v in {**REALTIME, "startParamJSON": deep}.items() if k != "startParam"}
    operator.kube.create("deep", spec)
    await operator.visit("deep")
    assert operator.ready("deep") == ("False", "InvalidSpec")
    naive = json.dumps({"generation": 1, "since": "2024-01-01T00:00:00", "owner": "x", "id": "n1"})
    operator.dataworks.states[101] = "RUN"
    operator.kube.create("naive", {**REALTIME, "fileId": 101}, annotations={t.START_INTENT: naive})
    await operator.visit("naive")
    # Unreadable, so a start may have been sent that nothing records: verified first, found running, recorded.
    assert operator.ready("naive") == ("True", "Running")
