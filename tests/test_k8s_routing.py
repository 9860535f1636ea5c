"""Every generated alert reaches inferwatch's receivers through the Prometheus Operator.

The Alertmanager configuration is assembled the way the operator assembles it by default
(``tests/support/operator.py``: kube-prometheus-stack's default root route with its ``null``
receiver and Watchdog route, our AlertmanagerConfig's route nested under the
``namespace="<its namespace>"`` matcher of the OnNamespace strategy), and every alerting
rule of the committed PrometheusRule is routed through it by real ``amtool config routes
test``. Cluster alerts of other namespaces must not reach our receivers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch.alerts import alerting
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.alerts.unit_tests import expand
from inferwatch.deploy import kubernetes
from tests.support.amtool import amtool, receivers_reached, route_test
from tests.support.operator import assemble, chart_config

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / kubernetes.OUT_DIR
NAMESPACE = kubernetes.Settings().namespace
# Series labels an alert's template may read ({{ $labels.job }} for `service`).
SERIES = {"job": "inferwatch-api", "instance": "node-1", "http_route": "/v1/generate"}


def manifest(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((OUT / name).read_text(encoding="utf-8"))
    return loaded


def alert_rules(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def alert_labels(rule: dict[str, Any]) -> dict[str, str]:
    """The labels Prometheus sends for ``rule``: its own (templates expanded) on a series."""
    labels = {**SERIES, "alertname": rule["alert"]}
    for key, template in rule.get("labels", {}).items():
        labels[key] = expand(template, SERIES, 0.0)
    return labels


def ours(receiver: str, namespace: str = NAMESPACE) -> str:
    """A receiver of our AlertmanagerConfig as the operator names it."""
    return f"{namespace}/inferwatch/{receiver}"


def expected(labels: dict[str, str], namespace: str = NAMESPACE) -> list[str]:
    if labels["alertname"] == "Watchdog":
        # Our route has `continue: true` (the operator sets it), so the chart's own Watchdog
        # route after it matches too and sends it to `null`.
        return [ours("heartbeat", namespace), "null"]
    return [ours({"critical": "pager", "warning": "chat"}[labels["severity"]], namespace)]


@pytest.fixture(scope="module")
def assembled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = assemble(chart_config(), [manifest("alertmanagerconfig.yaml")])
    path = tmp_path_factory.mktemp("operator") / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    check = amtool("check-config", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    return path


def test_every_alert_carries_the_alertmanager_configs_namespace() -> None:
    amc = manifest("alertmanagerconfig.yaml")
    rules = alert_rules(manifest("prometheusrule.yaml"))
    # every alert the thresholds define (28 with the defaults), none missing, none extra
    assert {r["alert"] for r in rules} == set(alerting.alert_names(load_thresholds()))
    assert len({r["alert"] for r in rules}) == 28
    assert {r["labels"].get("namespace") for r in rules} == {amc["metadata"]["namespace"]}


def _cases() -> list[dict[str, str]]:
    # One case per distinct label set: rules differing only in expression route alike.
    unique = {tuple(sorted(alert_labels(r).items())) for r in alert_rules(manifest(
        "prometheusrule.yaml"))}  # fmt: skip
    return [dict(labels) for labels in sorted(unique)]


CASES = _cases()


@pytest.mark.parametrize(
    "labels", CASES, ids=[f"{c['alertname']}-{c['severity']}-{i}" for i, c in enumerate(CASES)]
)
def test_every_generated_alert_reaches_its_receiver(
    assembled: Path, labels: dict[str, str]
) -> None:
    want = expected(labels)
    result = route_test(assembled, labels, want)
    assert result.returncode == 0, f"{labels}: {result.stdout}{result.stderr}"
    assert result.stdout.strip().split(",") == want


def test_cases_cover_every_alert_and_receiver() -> None:
    rules = alert_rules(manifest("prometheusrule.yaml"))
    assert {c["alertname"] for c in CASES} == {r["alert"] for r in rules}
    reached = {receiver for c in CASES for receiver in expected(c)}
    assert reached == {ours("pager"), ours("chat"), ours("heartbeat"), "null"}


@pytest.mark.parametrize(
    "labels",
    [
        {"alertname": "KubeAPIDown", "severity": "critical"},  # the chart's: no namespace
        {"alertname": "KubePodCrashLooping", "severity": "warning", "namespace": "kube-system"},
        {"alertname": "APIHighErrorRate", "severity": "critical", "namespace": "payments"},
        {"alertname": "Watchdog", "severity": "none"},  # the chart's own heartbeat
    ],
    ids=["cluster-wide", "kube-system", "another-team", "chart-watchdog"],
)
def test_alerts_of_other_namespaces_stay_out(assembled: Path, labels: dict[str, str]) -> None:
    assert receivers_reached(assembled, labels) == ["null"]


def test_another_namespace_is_a_setting_and_routes_alike(tmp_path: Path) -> None:
    settings = kubernetes.Settings(namespace="ml")
    files = kubernetes.files(load_thresholds(), settings)
    del files[kubernetes.CHART_VALUES]
    docs = [yaml.safe_load(t) for t in files.values()]
    (amc,) = [d for d in docs if d["kind"] == "AlertmanagerConfig"]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(assemble(chart_config(), [amc])), encoding="utf-8")
    for labels in (alert_labels(r) for r in alert_rules(rule)):
        assert labels["namespace"] == "ml"
        assert receivers_reached(path, labels) == expected(labels, "ml"), labels


def test_strategy_none_would_page_for_every_cluster_alert(tmp_path: Path) -> None:
    # Why docs/deploy.md no longer recommends it: the cluster's alerts land in our pager.
    config = assemble(chart_config(), [manifest("alertmanagerconfig.yaml")], strategy="None")
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    labels = {"alertname": "KubeAPIDown", "severity": "critical"}
    assert receivers_reached(path, labels) == [ours("pager")]


def test_chart_values_restate_the_charts_inhibit_rules_minus_our_namespace() -> None:
    chart = chart_config()["inhibit_rules"]
    assert [dict(r) for r in kubernetes.CHART_INHIBIT_RULES] == chart
    values = yaml.safe_load((ROOT / kubernetes.CHART_VALUES).read_text(encoding="utf-8"))
    rules = values["alertmanager"]["config"]["inhibit_rules"]
    assert [r["target_matchers"][-1] for r in rules[:2]] == ['namespace!="inferwatch"'] * 2
    assert [{**r, "target_matchers": r["target_matchers"][:1]} for r in rules[:2]] == chart[:2]
    assert rules[2:] == chart[2:]
    # The matcher strategy stays the chart's default: OnNamespace.
    assert "alertmanagerSpec" not in values["alertmanager"]
