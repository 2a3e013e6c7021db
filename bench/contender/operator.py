"""The idiomatic kopf operator a user would write in an afternoon instead of disync-operator: kopf's create/update
(and, optionally, delete) handlers, the official Alibaba Cloud SDK called from sync handlers (kopf's thread pool),
the outcome written through `patch.status` with a Ready condition, `kopf.TemporaryError` on 5xx and throttling.

Kept honest: what a competent user would write, with the same limits the project runs under (a client-side QPS
limit and a cap on calls in flight), not a strawman; and nothing more (no start intent: a crash between the call
and kopf's bookkeeping write repeats the start).

Run: `python -m kopf run --standalone --namespace NS bench/contender/operator.py`, configured by the environment:
DATAWORKS_ENDPOINT (host:port or URL), ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET, CONTENDER_QPS, CONTENDER_WORKERS,
CONTENDER_DELETE_HANDLER ("1": stop real-time tasks on deletion, with kopf's finalizer).
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from typing import Any

import kopf
from alibabacloud_dataworks_public20200518 import models
from alibabacloud_dataworks_public20200518.client import Client
from alibabacloud_tea_openapi.exceptions import ServerException, ThrottlingException
from alibabacloud_tea_openapi.models import Config

RESOURCE = ("disync.dev", "v1alpha1", "disyncinstances")


class RateLimit:
    """At most `qps` calls a second across kopf's handler threads (a token bucket of one)."""

    def __init__(self, qps: float) -> None:
        self.interval = 1.0 / qps
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next)
            self.next = at + self.interval
        time.sleep(max(0.0, at - now))


ENDPOINT = os.environ["DATAWORKS_ENDPOINT"].removeprefix("http://")
LIMIT = RateLimit(float(os.environ.get("CONTENDER_QPS", "20")))
CLIENT = Client(
    Config(
        access_key_id=os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        access_key_secret=os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        endpoint=ENDPOINT,
        protocol="http" if "127.0.0.1" in ENDPOINT or "localhost" in ENDPOINT else "https",
    )
)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.execution.max_workers = int(os.environ.get("CONTENDER_WORKERS", "32"))
    settings.posting.level = 30  # warnings and errors only, as the project posts
    settings.persistence.finalizer = "contender.disync.dev/finalizer"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready(patch: kopf.Patch, generation: int, status: str, reason: str, message: str) -> None:
    patch.status["conditions"] = [
        {
            "type": "Ready",
            "status": status,
            "reason": reason,
            "message": message[:1000],
            "observedGeneration": generation,
            "lastTransitionTime": now(),
        }
    ]
    patch.status["observedGeneration"] = generation


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def start(spec: kopf.Spec, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
    generation = int(meta.get("generation") or 1)
    start_param = spec.get("startParamJSON") or (json.dumps(spec["startParam"]) if spec.get("startParam") else None)
    request = models.StartDISyncInstanceRequest(
        project_id=spec["projectId"], task_type=spec["taskType"], file_id=spec["fileId"], start_param=start_param
    )
    LIMIT.wait()
    try:
        response = CLIENT.start_disync_instance(request)
    except ThrottlingException as error:
        raise kopf.TemporaryError(f"throttled: {error.code}", delay=error.retry_after or 5) from None
    except ServerException as error:
        raise kopf.TemporaryError(f"DataWorks {error.status_code}: {error.code}", delay=5) from None
    data = response.body.data
    patch.status["status"] = data.status
    patch.status["message"] = data.message
    patch.status["requestId"] = response.body.request_id
    if data.status == "success":
        ready(patch, generation, "True", "Started", "started")
    else:
        ready(patch, generation, "False", "StartFailed", data.message or "")


if os.environ.get("CONTENDER_DELETE_HANDLER") == "1":

    @kopf.on.delete(*RESOURCE)
    def stop(spec: kopf.Spec, **_: Any) -> None:
        if spec.get("taskType") != "DI_REALTIME" or spec.get("deletionPolicy") == "Orphan":
            return
        request = models.StopDISyncInstanceRequest(
            project_id=spec["projectId"], task_type=spec["taskType"], file_id=spec["fileId"]
        )
        LIMIT.wait()
        try:
            CLIENT.stop_disync_instance(request)
        except (ThrottlingException, ServerException) as error:
            raise kopf.TemporaryError(f"stop failed: {error.code}", delay=5) from None
