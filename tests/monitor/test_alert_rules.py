"""The alert rules (monitor/alerts/) pass promtool's checks and unit tests, and the Cloud Monitoring files
(monitor/cloud/) hold the same alerts with the same thresholds.

promtool comes from Debian's `prometheus` package: `bash tools/setup-promtool.sh` installs it (`make setup` runs it).
Without it these tests fail rather than skip, so a CI image that lost it cannot pass with the rules unchecked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from contract.paths import PROJECT_ROOT
from tests.markdown_links import broken_links

ALERTS_DIR = PROJECT_ROOT / "monitor" / "alerts"
RULES = ALERTS_DIR / "serve-rules.yaml"
RULE_TESTS = ALERTS_DIR / "serve-rules.test.yaml"
CLOUD_DIR = PROJECT_ROOT / "monitor" / "cloud"
POLICIES = sorted((CLOUD_DIR / "policies").glob("*.json"))
DASHBOARD = CLOUD_DIR / "dashboard.json"
SETUP_SCRIPT = CLOUD_DIR / "setup-monitoring.sh"
RUNBOOK = "docs/monitoring-alerts.md"

SEVERITIES = {"critical", "warning"}
# Every alert reads "<signal> > <threshold> and <volume> * <window seconds> >= <minimum count>": a share or a
# latency over its line, on enough traffic to judge. The threshold is read from this shape.
ALERT_SHAPE = re.compile(
    r"^(?P<signal>[a-z0-9_:]+) > (?P<threshold>[0-9.]+) and (?:on \(job\) )?"
    r"(?P<volume>[a-z0-9_:]+) \* (?P<window>\d+) >= (?P<minimum>\d+)$"
)
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
DURATION = re.compile(r"^(\d+)([smh])$")


def one_line(expr: str) -> str:
    return " ".join(expr.split())


def load_rules() -> tuple[dict[str, str], list[tuple[str, dict]]]:
    """The recording rules (name -> expression) and the alerts (group name, rule) of serve-rules.yaml."""
    records: dict[str, str] = {}
    alerts: list[tuple[str, dict]] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                records[rule["record"]] = one_line(rule["expr"])
            else:
                alerts.append((group["name"], rule))
    return records, alerts


RECORDS, ALERTS = load_rules()
ALERT_NAMES = [rule["alert"] for _, rule in ALERTS]


def inline(expr: str) -> str:
    """The expression with every recording rule written out (in parentheses), recursively: what Cloud Monitoring,
    which evaluates PromQL on the raw series, must be given."""
    return METRIC_NAME.sub(lambda m: f"({inline(RECORDS[m[0]])})" if m[0] in RECORDS else m[0], one_line(expr))


def seconds(duration: str) -> int:
    number, unit = DURATION.match(duration).groups()
    return int(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def shape(rule: dict) -> re.Match:
    match = ALERT_SHAPE.match(one_line(rule["expr"]))
    assert match, f"{rule['alert']}: expr is not '<signal> > <threshold> and <volume> * <window> >= <minimum>'"
    return match


def promql_policies() -> dict[str, dict]:
    """Cloud policies with a PromQL condition, by the Prometheus alert they mirror (alertRule)."""
    found: dict[str, dict] = {}
    for path in POLICIES:
        policy = json.loads(path.read_text())
        for condition in policy["conditions"]:
            if "conditionPrometheusQueryLanguage" in condition:
                rule = condition["conditionPrometheusQueryLanguage"]["alertRule"]
                assert rule not in found, f"two Cloud policies mirror {rule}"
                found[rule] = policy
    return found


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `bash tools/setup-promtool.sh` (installs Debian's prometheus package)")
    return path


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# ---- promtool


def test_promtool_check_rules(promtool):
    result = run_promtool(promtool, "check", "rules", RULES.name, cwd=ALERTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RECORDS) + len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests(promtool):
    result = run_promtool(promtool, "test", "rules", RULE_TESTS.name, cwd=ALERTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent_on_normal_traffic():
    """For each alert: a unit test where it fires, and one where every evaluation expects it silent."""
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        evaluations: dict[str, list[list]] = {}
        for check in case.get("alert_rule_test", []):
            evaluations.setdefault(check["alertname"], []).append(check.get("exp_alerts") or [])
        for name, expected in evaluations.items():
            if any(expected):
                fires.add(name)
                assert not expected[0], f"{case['name']!r}: {name} should first be seen silent, then firing"
            else:
                silent.add(name)
    assert set(ALERT_NAMES) <= fires, f"never tested firing: {set(ALERT_NAMES) - fires}"
    assert set(ALERT_NAMES) <= silent, f"never tested silent on normal traffic: {set(ALERT_NAMES) - silent}"


# ---- what every rule carries


@pytest.mark.parametrize(("group", "rule"), ALERTS, ids=ALERT_NAMES)
def test_alert_has_for_severity_annotations_and_runbook(group, rule, tmp_path):
    assert DURATION.match(rule.get("for", "")), f"{rule['alert']}: needs a `for:` duration"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    page, _, anchor = annotations["runbook_url"].partition("#")
    assert page == RUNBOOK
    assert anchor, f"{rule['alert']}: the runbook URL names no section"
    assert not broken_links([annotations["runbook_url"]], tmp_path), (
        f"{rule['alert']}: no heading #{anchor} in {RUNBOOK}"
    )
    match = shape(rule)
    assert match["signal"] in RECORDS, "the signal is a recording rule (drawn on the dashboard as it is)"
    assert match["volume"] in RECORDS, "the traffic volume is a recording rule"


def test_recording_rules_follow_the_naming_convention():
    """level:metric:operations, the Prometheus convention, so a name says what it aggregates and over what."""
    for name in RECORDS:
        level, metric, operations = name.split(":")
        assert level.startswith("job"), name
        assert metric.startswith("serve_"), name
        assert operations, name


# ---- Cloud Monitoring: the same alerts


def test_every_prometheus_alert_has_a_cloud_policy():
    assert set(promql_policies()) == set(ALERT_NAMES)


@pytest.mark.parametrize(("group", "rule"), ALERTS, ids=ALERT_NAMES)
def test_cloud_policy_has_the_same_query_threshold_duration_and_severity(group, rule):
    policy = promql_policies()[rule["alert"]]
    (condition,) = policy["conditions"]
    promql = condition["conditionPrometheusQueryLanguage"]
    match = shape(rule)
    query = one_line(promql["query"])
    # The threshold and the minimum traffic, named, so a mismatch says which number differs.
    assert f") > {match['threshold']} and " in query, f"threshold {match['threshold']} not in {query}"
    assert query.endswith(f") * {match['window']} >= {match['minimum']}"), f"minimum traffic differs: {query}"
    expected = inline(rule["expr"])
    assert query == expected, f"the Cloud query must be the rule with its recording rules inlined:\n{expected}"
    assert promql["duration"] == f"{seconds(rule['for'])}s"
    assert promql["labels"] == rule["labels"]
    assert promql["ruleGroup"] == group
    assert policy["severity"] == rule["labels"]["severity"].upper()
    assert policy["userLabels"]["severity"] == rule["labels"]["severity"]
    assert rule["annotations"]["runbook_url"] in policy["documentation"]["content"]


def test_cloud_queries_fire_exactly_like_the_rules(promtool, tmp_path):
    """The unit tests again, against rules made of the Cloud policies' queries, durations and labels: the inlined
    queries are valid PromQL and fire (and stay silent) exactly where the recording-rule versions do."""
    policies = promql_policies()
    rules = []
    for _, rule in ALERTS:
        promql = policies[rule["alert"]]["conditions"][0]["conditionPrometheusQueryLanguage"]
        rules.append(
            {
                "alert": rule["alert"],
                "expr": promql["query"],
                "for": promql["duration"],
                "labels": promql["labels"],
                "annotations": rule["annotations"],
            }
        )
    (tmp_path / "cloud-rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "cloud", "rules": rules}]}))
    unit_tests = yaml.safe_load(RULE_TESTS.read_text())
    unit_tests["rule_files"] = ["cloud-rules.yaml"]
    for case in unit_tests["tests"]:
        case.pop("promql_expr_test", None)  # those evaluate recording rules, which the Cloud has none of
    (tmp_path / "cloud-rules.test.yaml").write_text(yaml.safe_dump(unit_tests))
    result = run_promtool(promtool, "test", "rules", "cloud-rules.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", POLICIES, ids=[p.name for p in POLICIES])
def test_cloud_policy_file_is_complete(path, tmp_path):
    policy = json.loads(path.read_text())
    # setup-monitoring.sh finds an existing policy by its display name, inside a double-quoted filter.
    assert policy["displayName"].startswith("cifar-serve: ")
    assert '"' not in policy["displayName"]
    assert policy["combiner"] == "OR"
    assert len(policy["conditions"]) == 1
    assert policy["severity"] in {s.upper() for s in SEVERITIES}
    assert policy["enabled"] is True
    content = policy["documentation"]["content"]
    assert policy["documentation"]["mimeType"] == "text/markdown"
    runbook = re.search(rf"{re.escape(RUNBOOK)}#([a-z0-9-]+)", content)
    assert runbook, f"{path.name}: documentation names no runbook section"
    assert not broken_links([runbook[0]], tmp_path)


def test_policy_display_names_are_unique():
    names = [json.loads(path.read_text())["displayName"] for path in POLICIES]
    assert len(names) == len(set(names))


def test_drift_check_policy_watches_the_scheduled_job():
    """The one Cloud-only policy: failed executions of the daily drift job that setup-monitoring.sh creates."""
    (job,) = re.findall(r"^DRIFT=(\S+)", SETUP_SCRIPT.read_text(), flags=re.MULTILINE)
    policy = json.loads((CLOUD_DIR / "policies" / "drift-check-failed.json").read_text())
    (condition,) = policy["conditions"]
    query = condition["conditionThreshold"]["filter"]
    assert f'resource.labels.job_name = "{job}"' in query
    assert 'metric.type = "run.googleapis.com/job/completed_execution_count"' in query
    assert 'metric.labels.result = "failed"' in query
    assert "--fail-on-drift" in SETUP_SCRIPT.read_text()


# ---- the dashboard


def dashboard_charts() -> list[dict]:
    return [tile["widget"]["xyChart"] for tile in json.loads(DASHBOARD.read_text())["mosaicLayout"]["tiles"]]


@pytest.mark.parametrize(("group", "rule"), ALERTS, ids=ALERT_NAMES)
def test_dashboard_draws_each_alert_signal_with_its_threshold(group, rule):
    match = shape(rule)
    signal = inline(match["signal"])[1:-1]  # a chart's query is the signal itself, without the outer parentheses
    charts = [
        chart
        for chart in dashboard_charts()
        if any(one_line(d["timeSeriesQuery"]["prometheusQuery"]) == signal for d in chart["dataSets"])
    ]
    assert charts, f"no dashboard chart draws {match['signal']}"
    assert float(match["threshold"]) in [t["value"] for chart in charts for t in chart.get("thresholds", [])]


def test_dashboard_tiles_fit_the_grid_without_overlapping():
    layout = json.loads(DASHBOARD.read_text())["mosaicLayout"]
    cells: set[tuple[int, int]] = set()
    for tile in layout["tiles"]:
        assert tile["xPos"] + tile["width"] <= layout["columns"]
        area = {(x, y) for x in range(tile["xPos"], tile["xPos"] + tile["width"])
                for y in range(tile["yPos"], tile["yPos"] + tile["height"])}  # fmt: skip
        assert not cells & area, f"{tile['widget']['title']!r} overlaps another tile"
        cells |= area
