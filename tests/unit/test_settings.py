"""Settings: a DISYNC_* variable the operator doesn't know stops start-up with its name and the nearest known one."""

from __future__ import annotations

import pytest

from disync_operator.controller.main import load_settings
from disync_operator.controller.settings import unknown_variables


def test_a_misspelled_setting_names_the_one_meant() -> None:
    assert unknown_variables({"DISYNC_QSP": "50", "DISYNC_QPS": "5", "HOME": "/root"}) == [
        "unknown setting DISYNC_QSP (did you mean DISYNC_QPS?)"
    ]
    assert unknown_variables({"DISYNC_NOTHING_LIKE_IT": "1"}) == ["unknown setting DISYNC_NOTHING_LIKE_IT"]


def test_the_dev_tools_variables_are_not_mistakes() -> None:
    assert unknown_variables({"DISYNC_DEV_ONCE": "1", "DISYNC_CONTROLPLANE_CACHE": "/tmp/x"}) == []


def test_start_up_stops_on_an_unknown_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISYNC_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("DISYNC_QSP", "50")
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    assert stopped.value.code == 2
    assert "unknown setting DISYNC_QSP (did you mean DISYNC_QPS?)" in capsys.readouterr().err
    monkeypatch.delenv("DISYNC_QSP")
    assert load_settings().qps == 20.0


def test_the_service_links_kubernetes_adds_are_not_mistakes() -> None:
    links = {
        "DISYNC_OPERATOR_METRICS_SERVICE_HOST": "10.96.0.7",
        "DISYNC_OPERATOR_METRICS_SERVICE_PORT": "9090",
        "DISYNC_OPERATOR_METRICS_SERVICE_PORT_METRICS": "9090",
        "DISYNC_OPERATOR_METRICS_PORT": "tcp://10.96.0.7:9090",
        "DISYNC_OPERATOR_METRICS_PORT_9090_TCP": "tcp://10.96.0.7:9090",
        "DISYNC_OPERATOR_METRICS_PORT_9090_TCP_PROTO": "tcp",
        "DISYNC_OPERATOR_METRICS_PORT_9090_TCP_PORT": "9090",
        "DISYNC_OPERATOR_METRICS_PORT_9090_TCP_ADDR": "10.96.0.7",
    }
    assert unknown_variables(links) == []
    assert unknown_variables({**links, "DISYNC_QSP": "1"}) == ["unknown setting DISYNC_QSP (did you mean DISYNC_QPS?)"]
