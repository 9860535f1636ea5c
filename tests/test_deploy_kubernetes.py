"""The kube-prometheus-stack manifests: parsed and compared with their sources.

No cluster is involved: every manifest is read as YAML, the PrometheusRule is compared group
for group with alerts/*.yaml, the dashboards' ConfigMaps byte for byte with dashboards/*.json,
and the AlertmanagerConfig, turned back into Alertmanager's own format, with
``inferwatch.alertmanager`` (and checked by amtool).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch.alertmanager import alertmanager_config
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.deploy import kubernetes
from inferwatch.deploy.alertmanager_crd import matcher

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / kubernetes.OUT_DIR
MANIFESTS = sorted(OUT.rglob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in map(load, MANIFESTS) if doc["kind"] == kind]


def test_every_manifest_has_api_version_kind_and_name() -> None:
    assert len(MANIFESTS) >= 6
    for path in MANIFESTS:
        doc = load(path)
        assert isinstance(doc, dict), path
        assert doc.get("apiVersion") and doc.get("kind"), path
        assert doc.get("metadata", {}).get("name"), path


def test_kustomizations_list_every_manifest() -> None:
    for kustomization in OUT.rglob("kustomization.yaml"):
        folder = kustomization.parent
        resources = load(kustomization)["resources"]
        for resource in resources:
            assert (folder / resource).exists(), f"{kustomization}: {resource} is missing"
        listed = {(folder / r).resolve() for r in resources}
        for path in folder.iterdir():
            if path.name != "kustomization.yaml":
                assert path.resolve() in listed, f"{path} is not in {kustomization}"


def test_prometheus_rule_groups_are_exactly_the_generated_ones() -> None:
    (rule,) = by_kind("PrometheusRule")
    expected = [
        *load(ROOT / "alerts/recording_rules.yaml")["groups"],
        *load(ROOT / "alerts/alert_rules.yaml")["groups"],
    ]
    assert rule["spec"]["groups"] == expected
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_release_namespace_and_sink_are_settings() -> None:
    settings = kubernetes.Settings(namespace="ml", release="prom", sink_url="https://sink.example")
    docs = [yaml.safe_load(text) for text in kubernetes.files(load_thresholds(), settings).values()]
    selected = [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert len(selected) == 3
    assert all(d["metadata"]["labels"]["release"] == "prom" for d in selected)
    assert all(d["metadata"]["namespace"] == "ml" for d in docs if d["kind"] != "Kustomization")
    (amc,) = [d for d in docs if d["kind"] == "AlertmanagerConfig"]
    urls = [h["url"] for r in amc["spec"]["receivers"] for h in r["webhookConfigs"]]
    assert urls and all(url.startswith("https://sink.example/alerts/") for url in urls)
    # the committed files are the defaults
    default = kubernetes.files(load_thresholds())
    assert all((ROOT / rel).read_text() == text for rel, text in default.items())


def test_one_config_map_per_dashboard_with_the_same_json() -> None:
    dashboards = sorted((ROOT / "dashboards").glob("*.json"))
    assert dashboards, "no dashboards generated yet"
    maps = by_kind("ConfigMap")
    for dashboard in dashboards:
        holding = [m for m in maps if dashboard.name in m["data"]]
        assert len(holding) == 1, f"{dashboard.name}: {len(holding)} ConfigMaps"
        (config_map,) = holding
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["data"] == {dashboard.name: dashboard.read_text(encoding="utf-8")}
    assert len(maps) == len(dashboards)


def test_service_monitors_scrape_the_jobs_the_rules_require() -> None:
    jobs = set()
    for monitor in by_kind("ServiceMonitor"):
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        (endpoint,) = monitor["spec"]["endpoints"]
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "job"
        jobs.add(relabel["replacement"])
    assert jobs == set(load_thresholds().settings.targets)


def _native_route(route: dict[str, Any]) -> dict[str, Any]:
    """An AlertmanagerConfig route back in alertmanager.yml's words (an independent inverse)."""
    keys = {
        "groupBy": "group_by",
        "groupWait": "group_wait",
        "groupInterval": "group_interval",
        "repeatInterval": "repeat_interval",
        "receiver": "receiver",
        "continue": "continue",
    }
    out = {keys[k]: v for k, v in route.items() if k in keys}
    if "matchers" in route:
        out["matchers"] = [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in route["matchers"]]
    if "routes" in route:
        out["routes"] = [_native_route(r) for r in route["routes"]]
    return out


def _native(spec: dict[str, Any]) -> dict[str, Any]:
    def matchers(items: list[dict[str, str]]) -> list[str]:
        return [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in items]

    return {
        "route": _native_route(spec["route"]),
        "inhibit_rules": [
            {
                "source_matchers": matchers(r["sourceMatch"]),
                "target_matchers": matchers(r["targetMatch"]),
                "equal": r["equal"],
            }
            for r in spec["inhibitRules"]
        ],
        "receivers": [
            {
                "name": r["name"],
                "webhook_configs": [
                    {"url": h["url"], "send_resolved": h["sendResolved"]}
                    for h in r["webhookConfigs"]
                ],
            }
            for r in spec["receivers"]
        ],
    }


def test_alertmanager_config_routes_like_the_alertmanager_file(tmp_path: Path) -> None:
    (amc,) = by_kind("AlertmanagerConfig")
    assert amc["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    sink = kubernetes.Settings().webhook_base
    expected = alertmanager_config(sink)
    native = _native(amc["spec"])
    assert native == {k: v for k, v in expected.items() if k != "global"}
    exe = shutil.which("amtool")
    if exe is None:
        pytest.skip("amtool (Debian package prometheus-alertmanager) is not installed")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump({"global": expected["global"], **native}))
    result = subprocess.run([exe, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_matchers_convert_every_operator_and_reject_the_rest() -> None:
    assert matcher('a="x"') == {"name": "a", "value": "x", "matchType": "="}
    assert matcher('a!~"x|y"')["matchType"] == "!~"
    assert matcher(r'a=~"say \"hi\""')["value"] == 'say "hi"'
    with pytest.raises(ValueError, match="cannot convert"):
        matcher("a=x")
    with pytest.raises(ValueError, match="no AlertmanagerConfig equivalent"):
        from inferwatch.deploy.alertmanager_crd import route

        route({"receiver": "r", "mute_time_intervals": ["night"]})


def test_render_for_another_deployment(tmp_path: Path) -> None:
    assert kubernetes.main(["--namespace", "ml", "--release", "prom", "-o", str(tmp_path)]) == 0
    rule = load(tmp_path / "prometheusrule.yaml")
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert (tmp_path / "dashboards" / "kustomization.yaml").is_file()
