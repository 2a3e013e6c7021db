"""The alerts, the dashboard and the metrics they read, checked with real promtool (hack/build-tool.sh builds it from
its pinned Go module) and a real operator's /metrics.

- `promtool check rules` on deploy/monitoring/prometheusrule.yaml's rules, `promtool test rules` on rules.test.yaml,
  and every alert has a case where it fires and one where it stays quiet;
- `promtool check metrics` on the /metrics of an operator that has reconciled a resource;
- every query of the dashboard and the alerts parses (as recording rules, through promtool) and names only metrics that
  operator exports (or `up`, which Prometheus adds);
- the listener binds where DISYNC_METRICS_BIND_ADDRESS says.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from e2e_helpers import dsi, wait_ready

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import OperatorProcess

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
BUILD_TOOL = REPO / "hack" / "build-tool.sh"
RULES_FILE = "disync-operator.rules.yaml"  # what rules.test.yaml's rule_files names


@pytest.fixture(scope="session")
def promtool() -> Path:
    result = subprocess.run(["bash", str(BUILD_TOOL), "promtool"], stdout=subprocess.PIPE, text=True, check=False)
    assert result.returncode == 0, f"building promtool failed; run {BUILD_TOOL} promtool to see why"
    return Path(result.stdout.strip().splitlines()[-1])


def rule_groups() -> dict[str, Any]:
    rule: dict[str, Any] = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    spec: dict[str, Any] = rule["spec"]
    return spec


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule_groups()["groups"] for r in group["rules"] if "alert" in r}


def run(*argv: str | Path, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, input=stdin, capture_output=True, text=True, check=False)


# --- the alerts ----------------------------------------------------------------------------------------------------


def test_rules_pass_promtool_check(promtool: Path, tmp_path: Path) -> None:
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    result = run(promtool, "check", "rules", tmp_path / RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_alert_unit_tests_pass(promtool: Path, tmp_path: Path) -> None:
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    shutil.copy2(MONITORING / "rules.test.yaml", tmp_path / "rules.test.yaml")
    result = run(promtool, "test", "rules", "rules.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_unit_tests_fail_on_a_changed_threshold(promtool: Path, tmp_path: Path) -> None:
    """The unit tests look at the thresholds: the same tests against rules with one threshold moved fail."""
    groups = rule_groups()
    rule = next(r for r in groups["groups"][0]["rules"] if r.get("alert") == "DISyncDataWorksErrors")
    rule["expr"] = rule["expr"].replace("> 0.1", "> 0.5")
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(groups, sort_keys=False))
    shutil.copy2(MONITORING / "rules.test.yaml", tmp_path / "rules.test.yaml")
    result = run(promtool, "test", "rules", "rules.test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "DISyncDataWorksErrors" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load((MONITORING / "rules.test.yaml").read_text())
    assert tests["rule_files"] == [RULES_FILE]
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert set(alerts()) == {
        "DISyncOperatorDown",
        "DISyncOperatorNoLeader",
        "DISyncReconcileErrors",
        "DISyncInstancesNotReady",
        "DISyncDataWorksErrors",
        "DISyncDataWorksThrottled",
        "DISyncWorkQueueBacklog",
    }
    assert firing == set(alerts())
    assert quiet == set(alerts())
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name


def test_every_alert_has_a_runbook_that_exists() -> None:
    runbooks = (MONITORING.parents[1] / "docs" / "runbooks.md").read_text()
    headings = {line[3:].strip().lower() for line in runbooks.splitlines() if line.startswith("## ")}
    for name, rule in alerts().items():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://github.com/disync-operator/disync-operator/blob/main/docs/runbooks.md#"), name
        assert url.rsplit("#", 1)[1] in headings, name


def test_the_dashboard_separates_clusters_namespaces_and_jobs() -> None:
    import json

    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "cluster", "namespace", "job"}
    assert variables["job"]["type"] == "query"  # two installs are two jobs or namespaces, never one sum
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert 'cluster=~"$cluster", namespace=~"$namespace"' in target["expr"], target["expr"]


# --- the metrics a live operator serves ----------------------------------------------------------------------------

# Names in PromQL that are not metrics: functions are followed by "(", these are not.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, durations, strings and grouping lists removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def exported_names(exposition: str) -> set[str]:
    """Every sample name the exposition serves or declares: families with no sample yet (a labelled counter nothing
    has counted) are declared by their TYPE line."""
    names = {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and not line.startswith("#")}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    queries = [t["expr"] for p in panels for t in p["targets"]]
    assert len(queries) >= 20
    return queries


def as_promql(query: str) -> str:
    """A Grafana query as Prometheus sees it once Grafana substituted its variables."""
    substituted = query.replace("$__rate_interval", "2m").replace("$job", "disync-operator")
    return substituted.replace("$cluster", ".*").replace("$namespace", ".*")


def test_metric_names_of_an_expression() -> None:
    expr = 'sum by (le) (rate(a_bucket{job="x", le!="1"}[5m])) / on (job) group_left b and c{d="e(f)"} > bool 0.5'
    assert metric_names(expr) == {"a_bucket", "b", "c"}
    assert metric_names("absent(up{job='x'} == 1)") == {"up"}


def test_dashboard_queries_pass_promtool_check(promtool: Path, tmp_path: Path) -> None:
    """Each dashboard query, as a recording rule, parses: a typo in PromQL fails here, not in Grafana."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": as_promql(q)} for i, q in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.rules.yaml").write_text(yaml.safe_dump(rules))
    result = run(promtool, "check", "rules", tmp_path / "dashboard.rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def scraped(start_operator: Callable[..., OperatorProcess], kubectl: Kubectl) -> str:
    """The /metrics of an operator that has started and observed a resource."""
    operator = start_operator()
    kubectl("apply", "-f", "-", input=dsi("scraped", file_id=100))
    wait_ready(kubectl, "scraped")
    return operator.metrics()


@pytest.mark.cluster
def test_live_metrics_pass_promtool_and_cover_every_query(promtool: Path, scraped: str) -> None:
    result = run(promtool, "check", "metrics", stdin=scraped)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    exported = exported_names(scraped) | {"up"}  # `up` is Prometheus' own, per scrape target
    for prefix in ("process_", "python_", "disync_reconcile_", "disync_workqueue_", "leader_election_"):
        assert any(name.startswith(prefix) for name in exported), prefix
    queries = dashboard_queries() + [rule["expr"] for rule in alerts().values()]
    unknown = {name: q for q in queries for name in metric_names(as_promql(q)) if name not in exported}
    assert unknown == {}, f"queries name metrics the operator does not export: {unknown}"
    # The outcomes on the wire are the documented fixed values.
    outcomes = set(re.findall(r'^disync_dataworks_calls_total\{[^}]*outcome="([^"]+)"', scraped, flags=re.MULTILINE))
    assert outcomes == {"success"}
    # The operator's own Kubernetes requests by method and code (client-go's rest_client_requests_total): the intent
    # and the status write were PATCHes the API server answered 200.
    patches = re.search(
        r'^disync_rest_client_requests_total\{code="200",method="PATCH"\} (\S+)$', scraped, re.MULTILINE
    )
    assert patches is not None, scraped[-2000:]
    assert float(patches.group(1)) >= 2
    assert re.search(r'^disync_max_concurrent_reconciles\{controller="disyncinstance"\} [1-9]', scraped, re.MULTILINE)
    for name in (
        "disync_active_workers",
        "disync_workqueue_unfinished_work_seconds",
        "disync_workqueue_longest_running_processor_seconds",
        "disync_terminal_reconcile_errors_total",
    ):
        assert name in exported, name


@pytest.fixture
def loopback_two_operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    return start_operator({"DISYNC_METRICS_BIND_ADDRESS": "127.0.0.2"})


@pytest.mark.cluster
def test_metrics_listen_only_where_told(loopback_two_operator: OperatorProcess) -> None:
    port = loopback_two_operator.metrics_port
    answer = httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5)
    assert answer.status_code == 200
    assert "disync_reconcile_total" in answer.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
