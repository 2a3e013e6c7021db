"""Events are budgeted like client-go's recorder (runtime/events.py): Warnings always queue, Normal Events beyond
the rate and its burst are dropped and counted."""

from __future__ import annotations

from typing import Any

from disync_operator.controller.runtime.events import EventRecorder

OBJ: dict[str, Any] = {
    "apiVersion": "disync.dev/v1alpha1",
    "kind": "DISyncInstance",
    "metadata": {"name": "a", "namespace": "ns", "uid": "u"},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Kube:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        self.events.append(event)


async def test_normal_events_beyond_the_burst_are_dropped_and_counted() -> None:
    clock, dropped = Clock(), []
    recorder = EventRecorder("me", qps=5, burst=25, on_drop=dropped.append, clock=clock)
    for _ in range(30):
        recorder.record(OBJ, "Normal", "Started", "StartDISyncInstance succeeded")
    kube = Kube()
    assert await recorder.post_queued(kube) == 25  # type: ignore[arg-type]
    assert dropped == ["Normal"] * 5
    clock.now += 1.0  # 5 more at 5/s
    for _ in range(10):
        recorder.record(OBJ, "Normal", "Started", "StartDISyncInstance succeeded")
    assert await recorder.post_queued(kube) == 5  # type: ignore[arg-type]
    assert len(dropped) == 10


async def test_warnings_always_post_and_spend_the_budget_first() -> None:
    clock, dropped = Clock(), []
    recorder = EventRecorder("me", qps=5, burst=2, on_drop=dropped.append, clock=clock)
    for _ in range(10):
        recorder.record(OBJ, "Warning", "StartFailed", "denied")
    recorder.record(OBJ, "Normal", "Started", "ok")
    kube = Kube()
    assert await recorder.post_queued(kube) == 10  # type: ignore[arg-type]
    assert [e["type"] for e in kube.events] == ["Warning"] * 10
    assert dropped == ["Normal"]
    clock.now += 10 / 5  # the Warnings' debt paid back: Normal Events post again
    recorder.record(OBJ, "Normal", "Started", "ok")
    assert await recorder.post_queued(kube) == 1  # type: ignore[arg-type]
