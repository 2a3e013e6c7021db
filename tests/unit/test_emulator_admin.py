"""The /_emulator/ admin API, the request log and counters, and config loading."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from disync_operator.emulator import Emulator, EmulatorConfig, RequestLog, RequestRecord, demo_config
from disync_operator.emulator.testing import sign_request

AK, SECRET = "LTAIdemoAccessKeyId", "demo-secret-not-real"


@pytest.fixture
async def emu() -> AsyncIterator[tuple[Emulator, str]]:
    emulator = Emulator()  # the embedded demo registry
    async with emulator.serve() as url:
        yield emulator, url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def call(
    http: httpx.AsyncClient, url: str, action: str, file_id: int = 100, task_type: str = "DI_REALTIME", **extra: str
) -> httpx.Response:
    params: dict[str, str | int] = {"ProjectId": 10000, "FileId": file_id, "TaskType": task_type, **extra}
    req = sign_request(url, action, params, access_key_id=AK, access_key_secret=SECRET)
    return await http.post(httpx.URL(req.url), headers=req.headers)


async def test_healthz(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    response = await http.get(f"{url}/_emulator/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_request_log_and_counters(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    start_param = '{"errorLimit": {"record": 5}}'
    ok = await call(http, url, "StartDISyncInstance", StartParam=start_param)
    await call(http, url, "StartDISyncInstance", 999)
    await call(http, url, "GetDISyncInstanceInfo")
    await call(http, url, "StartDISyncInstance", StartParam="{")

    entries = (await http.get(f"{url}/_emulator/requests")).json()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert set(entries[0]) == {
        "seq",
        "time",
        "action",
        "params",
        "access_key_id",
        "http_status",
        "code",
        "fault",
        "request_id",
        "sent_bytes",
        "answer_seconds",
        "answer_end",
    }
    assert entries[0]["params"] == {
        "ProjectId": "10000",
        "FileId": "100",
        "TaskType": "DI_REALTIME",
        "StartParam": start_param,
    }
    assert entries[0]["request_id"] == ok.json()["RequestId"]
    assert [(e["action"], e["http_status"], e["code"], e["fault"]) for e in entries] == [
        ("StartDISyncInstance", 200, "success", None),
        ("StartDISyncInstance", 200, "fail", None),
        ("GetDISyncInstanceInfo", 200, "success", None),
        ("StartDISyncInstance", 400, "Param.Invalid", None),
    ]
    assert all(e["access_key_id"] == AK for e in entries)

    filtered = (await http.get(f"{url}/_emulator/requests", params={"action": "GetDISyncInstanceInfo"})).json()
    assert [e["seq"] for e in filtered] == [3]
    since = (await http.get(f"{url}/_emulator/requests", params={"since": "2"})).json()
    assert [e["seq"] for e in since] == [3, 4]
    assert (await http.get(f"{url}/_emulator/requests", params={"since": "x"})).status_code == 400

    counters = (await http.get(f"{url}/_emulator/counters")).json()
    assert counters == {
        "StartDISyncInstance": {"success": 1, "fail": 1, "Param.Invalid": 1},
        "GetDISyncInstanceInfo": {"success": 1},
    }

    cleared = await http.delete(f"{url}/_emulator/requests")
    assert cleared.json() == {"cleared": 4}
    assert (await http.get(f"{url}/_emulator/requests")).json() == []
    assert (await http.get(f"{url}/_emulator/counters")).json() == {}
    await call(http, url, "GetDISyncInstanceInfo")
    # Sequence numbers keep increasing across a clear, so "since" cursors stay valid.
    assert [e["seq"] for e in (await http.get(f"{url}/_emulator/requests")).json()] == [5]


async def test_log_never_contains_secrets(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    await call(http, url, "GetDISyncInstanceInfo")
    text = (await http.get(f"{url}/_emulator/requests")).text
    assert SECRET not in text
    assert "Signature=" not in text


async def test_instances_endpoint_and_reset(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    await call(http, url, "StartDISyncInstance", StartParam='{"failoverLimit": {"count": 1}}')
    await call(http, url, "StopDISyncInstance", 101)
    instances = (await http.get(f"{url}/_emulator/instances")).json()
    assert [(i["project"], i["file_id"], i["task_type"]) for i in instances] == [
        (10000, 100, "DI_REALTIME"),
        (10000, 101, "DI_REALTIME"),
        (10000, 200, "DI_SOLUTION"),
    ]
    orders = instances[0]
    assert orders["state"] == "WAIT"
    assert (orders["start_count"], orders["stop_count"]) == (1, 0)
    assert orders["last_start_param"] == {"failoverLimit": {"count": 1}}
    assert instances[1]["stop_count"] == 1
    assert {"name", "deployed", "terminate_count"} <= set(orders)

    reset = (await http.delete(f"{url}/_emulator/instances")).json()
    assert all(i["start_count"] == 0 and i["state"] == "NORUN" for i in reset)


async def test_unknown_admin_path_is_404(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    assert (await http.get(f"{url}/_emulator/nope")).status_code == 404


def test_request_log_is_bounded_but_counters_exact() -> None:
    log = RequestLog(maxlen=3)
    for _ in range(5):
        seq = log.next_seq()
        log.append(RequestRecord(seq, 0.0, "GetDISyncInstanceInfo", {}, "ak", 200, "success", None, f"r{seq}"))
    assert [r.seq for r in log.entries()] == [3, 4, 5]
    assert log.counters() == {"GetDISyncInstanceInfo": {"success": 5}}


async def test_request_log_size_from_config(http: httpx.AsyncClient) -> None:
    emulator = Emulator(demo_config().model_copy(update={"request_log_size": 2}))
    async with emulator.serve() as url:
        for _ in range(4):
            await call(http, url, "GetDISyncInstanceInfo")
    assert [e.seq for e in emulator.request_log.entries()] == [3, 4]
    assert emulator.request_log.counters() == {"GetDISyncInstanceInfo": {"success": 4}}


async def test_start_stop_and_url() -> None:
    emulator = Emulator()
    url = await emulator.start()
    try:
        assert emulator.url == url
        assert url.startswith("http://127.0.0.1:")
        with pytest.raises(RuntimeError):
            await emulator.start()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/_emulator/healthz")).status_code == 200
    finally:
        await emulator.stop()
    assert emulator.url is None
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{url}/_emulator/healthz")


def test_serve_in_thread() -> None:
    emulator = Emulator()
    with emulator.serve_in_thread() as url, httpx.Client() as http:
        assert http.get(f"{url}/_emulator/healthz").json() == {"status": "ok"}


def test_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "emu.yaml"
    path.write_text(
        textwrap.dedent(
            """
            access_keys:
              - {id: AK1, secret: s1, projects: [1]}
              - {id: STS.AK2, secret: s2, security_token: tok}
            projects:
              - id: 1
                tasks: [{file_id: 7, task_type: DI_REALTIME, name: seven}]
            timings: {start_wait_seconds: 1.5, stop_seconds: 0, stop_state: NORUN}
            faults: {seed: 3, error_rate: 0.25, actions: [StartDISyncInstance]}
            request_log_size: 10
            """
        )
    )
    config = EmulatorConfig.from_yaml(path)
    assert config.access_keys[0].projects == [1]
    assert config.access_keys[1].projects == "*"
    assert config.access_keys[1].security_token is not None
    assert config.timings.stop_state == "NORUN"
    assert (config.faults.seed, config.faults.error_rate) == (3, 0.25)
    assert config.request_log_size == 10


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"access_keys": []}, "access_keys"),
        ({"access_keys": [{"id": "a", "secret": ""}]}, "secret must not be empty"),
        ({"access_keys": [{"id": "a", "secret": "s"}, {"id": "a", "secret": "t"}]}, "duplicate access key"),
        ({"access_keys": [{"id": "a", "secret": "s", "projects": [5]}]}, "unknown project"),
        ({"access_keys": [{"id": "a", "secret": "s"}], "projects": [{"id": 1}, {"id": 1}]}, "duplicate project"),
        (
            {
                "access_keys": [{"id": "a", "secret": "s"}],
                "projects": [{"id": 1, "tasks": [{"file_id": 2, "task_type": "DI_BATCH", "name": "x"}]}],
            },
            "task_type",
        ),
        (
            {
                "access_keys": [{"id": "a", "secret": "s"}],
                "projects": [
                    {
                        "id": 1,
                        "tasks": [
                            {"file_id": 2, "task_type": "DI_REALTIME", "name": "x"},
                            {"file_id": 2, "task_type": "DI_REALTIME", "name": "y"},
                        ],
                    }
                ],
            },
            "duplicate file_id",
        ),
        ({"access_keys": [{"id": "a", "secret": "s"}], "timing": {}}, "timing"),
        ({"access_keys": [{"id": "a", "secret": "s"}], "timings": {"stop_state": "DONE"}}, "stop_state"),
    ],
)
def test_config_validation(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        EmulatorConfig.model_validate(data)


def test_demo_file_is_the_emulators() -> None:
    from importlib import resources

    text = resources.files("disync_operator.emulator").joinpath("demo-emulator.yaml").read_text()
    assert "LTAIdemoAccessKeyId" in text
    assert EmulatorConfig.from_yaml_text(text) == demo_config()


async def test_console_calls_act_without_entering_the_request_log(
    emu: tuple[Emulator, str], http: httpx.AsyncClient
) -> None:
    emulator, url = emu
    started = await http.post(f"{url}/_emulator/console/10000/100/start")
    assert (started.status_code, started.json()["state"], started.json()["console_start_count"]) == (200, "WAIT", 1)
    failed = await http.post(f"{url}/_emulator/console/10000/100/fail", json={"times": 2, "state": "PAUSE"})
    assert (failed.json()["state"], failed.json()["failure_count"]) == ("PAUSE", 1)
    assert emulator.state.instance(10000, 100).state == "PAUSE"
    stopped = await http.post(f"{url}/_emulator/console/10000/100/stop")
    assert stopped.json()["console_stop_count"] == 1
    assert (await http.get(f"{url}/_emulator/requests")).json() == []
    # Bad input is refused with what is wrong, and changes nothing.
    bad = [
        await http.post(f"{url}/_emulator/console/10000/100/fail", json={"times": -1}),
        await http.post(f"{url}/_emulator/console/10000/100/fail", json={"surprise": 1}),
        await http.post(f"{url}/_emulator/console/10000/100/fail", content=b"not json"),
        await http.post(f"{url}/_emulator/console/10000/200/stop"),
        await http.post(f"{url}/_emulator/console/10000/999/stop"),
        await http.post(f"{url}/_emulator/console/10000/100/explode"),
        await http.post(f"{url}/_emulator/console/x/100/stop"),
    ]
    assert [r.status_code for r in bad] == [400, 400, 400, 400, 404, 404, 400]
    assert emulator.state.instance(10000, 100).failure_count == 1
