"""Every alert's links open something in the deployment it fires in.

``runbook_url`` points at the repository's own runbook of the alert (a file that exists) in
every deployment; ``dashboard_url`` points at a dashboard of the Grafana the deployment runs:
docker-compose's, the one given to the local stack or the Kubernetes generator, and is left
out where none is known rather than pointing at a Grafana that is not there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from inferwatch.alerts import alerting
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.deploy import kubernetes
from inferwatch.stack import configs
from inferwatch.stack.settings import StackSettings

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "alerts" / "runbooks"
UIDS = {json.loads(p.read_text())["uid"] for p in (ROOT / "dashboards").glob("*.json")}
BASE = load_thresholds().settings.docs_base_url


def alerts_of(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def compose_alerts() -> list[dict[str, Any]]:
    # docker-compose mounts the committed rules as they are
    return alerts_of(yaml.safe_load((ROOT / "alerts" / "alert_rules.yaml").read_text())["groups"])


def stack_alerts(tmp_path: Path, **settings: Any) -> list[dict[str, Any]]:
    written = configs.write_rules(StackSettings(data_dir=tmp_path, **settings))
    (rules,) = [p for p in written if p.name == "alert_rules.yaml"]
    return alerts_of(yaml.safe_load(rules.read_text())["groups"])


def kubernetes_alerts(**settings: Any) -> list[dict[str, Any]]:
    rule = kubernetes.prometheus_rule(load_thresholds(), kubernetes.Settings(**settings))
    return alerts_of(rule["spec"]["groups"])


def assert_runbooks_exist(alerts: list[dict[str, Any]]) -> None:
    # every alert the thresholds define (28 with the defaults), none missing, none extra
    assert {a["alert"] for a in alerts} == set(alerting.alert_names(load_thresholds()))
    assert len({a["alert"] for a in alerts}) == 28
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url == f"{BASE}/alerts/runbooks/{alert['alert']}.md"
        assert (RUNBOOKS / f"{alert['alert']}.md").is_file(), url


def dashboards(alerts: list[dict[str, Any]]) -> set[str | None]:
    return {a["annotations"].get("dashboard_url") for a in alerts}


def test_runbook_links_are_the_repositorys_runbooks() -> None:
    assert BASE == "https://github.com/inferwatch/inferwatch/blob/main"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'Homepage = "{BASE.removesuffix("/blob/main")}"' in pyproject


def test_compose_links_to_its_own_grafana() -> None:
    alerts = compose_alerts()
    assert_runbooks_exist(alerts)
    grafana = "http://localhost:3000"
    assert dashboards(alerts) <= {f"{grafana}/d/{uid}" for uid in UIDS}
    # published on 127.0.0.1:3000 by docker-compose.yml
    assert "127.0.0.1:3000:3000" in (ROOT / "docker-compose.yml").read_text()


def test_the_local_stack_links_no_grafana_unless_given_one(tmp_path: Path) -> None:
    alerts = stack_alerts(tmp_path / "plain")
    assert_runbooks_exist(alerts)
    assert dashboards(alerts) == {None}
    given = stack_alerts(tmp_path / "given", grafana_url="http://grafana.internal:3000/")
    assert_runbooks_exist(given)
    assert dashboards(given) <= {f"http://grafana.internal:3000/d/{uid}" for uid in UIDS}
    assert len(dashboards(given)) == len(UIDS)


def test_kubernetes_links_the_grafana_it_is_given() -> None:
    alerts = kubernetes_alerts()
    assert_runbooks_exist(alerts)
    assert dashboards(alerts) == {None}
    given = kubernetes_alerts(grafana_url="https://grafana.example.org")
    assert dashboards(given) <= {f"https://grafana.example.org/d/{uid}" for uid in UIDS}
