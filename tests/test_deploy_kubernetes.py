"""The kube-prometheus-stack manifests: validated, and compared with their sources.

No cluster is involved. Every manifest passes the schema the API server would apply
(``kubernetes-validate`` for core kinds, the operator's CRD schemas for its own, see
``tests/support/k8s.py``); the PrometheusRule is compared group for group with
alerts/*.yaml, the dashboards' ConfigMaps byte for byte with dashboards/*.json, and the
AlertmanagerConfig, turned back into Alertmanager's own format, with
``inferwatch.alertmanager`` (and checked by amtool). Routing through the operator's
assembly is ``tests/test_k8s_routing.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch import dashboards
from inferwatch.alertmanager import alertmanager_config
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.cli.main import main
from inferwatch.deploy import kubernetes, workloads
from inferwatch.deploy.alertmanager_crd import matcher
from inferwatch.generation import driver
from tests.support.k8s import problems

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / kubernetes.OUT_DIR
MANIFESTS = sorted(set(OUT.rglob("*.yaml")) - {ROOT / kubernetes.CHART_VALUES})


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


def rendered(settings: kubernetes.Settings) -> list[dict[str, Any]]:
    files = {**kubernetes.files(load_thresholds(), settings)}
    files.update(kubernetes.dashboard_files(dashboards.files(load_thresholds()), settings))
    del files[kubernetes.CHART_VALUES]
    return [yaml.safe_load(text) for text in files.values()]


VARIANTS = {
    "committed": kubernetes.Settings(),
    "bearer": kubernetes.Settings(api_auth="bearer", grafana_url="https://grafana.example"),
    "basic": kubernetes.Settings(namespace="ml", api_auth="basic", api_secret="scrape"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_passes_its_schema(variant: str) -> None:
    docs = [d for d in rendered(VARIANTS[variant]) if d["kind"] != "Kustomization"]
    kinds = {d["kind"] for d in docs}
    assert kinds == {
        "ServiceMonitor", "PrometheusRule", "AlertmanagerConfig", "ConfigMap",
        "DaemonSet", "Deployment", "Service",
    }  # fmt: skip
    for doc in docs:
        assert problems(doc) == [], f"{doc['kind']} {doc['metadata']['name']}"


def test_the_schemas_reject_what_the_cluster_would() -> None:
    # Each validator catches an unknown field and a bad value, nested routes included.
    amc = by_kind("AlertmanagerConfig")[0]
    amc["spec"]["route"]["routes"][1]["matchers"][0]["matchType"] = "=="
    amc["spec"]["route"]["routes"][2]["groupby"] = ["alertname"]
    assert len(problems(amc)) == 2
    (monitor, _) = by_kind("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["authorisation"] = {"type": "Bearer"}
    assert len(problems(monitor)) == 1
    (sink,) = by_kind("Deployment")
    sink["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnly"] = True
    sink["spec"]["replicas"] = "one"
    assert len(problems(sink)) == 1  # kubernetes-validate reports the first problem


def test_kustomizations_list_every_manifest() -> None:
    for kustomization in OUT.rglob("kustomization.yaml"):
        folder = kustomization.parent
        resources = load(kustomization)["resources"]
        for resource in resources:
            assert (folder / resource).exists(), f"{kustomization}: {resource} is missing"
        listed = {(folder / r).resolve() for r in resources}
        for path in folder.iterdir():
            # chart-values.yaml is for helm; GENERATED.md says what wrote the folder
            manifest = path.name not in ("kustomization.yaml", driver.NOTE)
            if manifest and path != ROOT / kubernetes.CHART_VALUES:
                assert path.resolve() in listed, f"{path} is not in {kustomization}"


def test_prometheus_rule_groups_are_the_generated_ones_with_their_namespace() -> None:
    (rule,) = by_kind("PrometheusRule")
    alert_groups = load(ROOT / "alerts/alert_rules.yaml")["groups"]
    for group in alert_groups:
        for alert in group["rules"]:
            alert["labels"]["namespace"] = "inferwatch"
            # No Grafana address is known for a cluster until --grafana-url gives one.
            del alert["annotations"]["dashboard_url"]
    expected = [*load(ROOT / "alerts/recording_rules.yaml")["groups"], *alert_groups]
    assert rule["spec"]["groups"] == expected
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboard_links_follow_the_grafana_setting() -> None:
    settings = kubernetes.Settings(grafana_url="https://grafana.example/")
    (rule,) = [d for d in rendered(settings) if d["kind"] == "PrometheusRule"]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    links = {r["alert"]: r["annotations"]["dashboard_url"] for r in alerts}
    assert links["HostHighCPUUsage"] == "https://grafana.example/d/inferwatch-resources"
    assert links["APIHighErrorRate"] == "https://grafana.example/d/inferwatch-overview"
    with pytest.raises(ValueError, match="grafana_url"):
        kubernetes.Settings(grafana_url="grafana.example")


def test_release_namespace_and_sink_are_settings() -> None:
    settings = kubernetes.Settings(namespace="ml", release="prom", sink_url="https://sink.example")
    files = kubernetes.files(load_thresholds(), settings)
    del files[kubernetes.CHART_VALUES]
    docs = [yaml.safe_load(text) for text in files.values()]
    selected = [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert len(selected) == 3
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert {r["labels"]["namespace"] for r in alerts} == {"ml"}
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
        relabel = endpoint["relabelings"][0]
        assert relabel["targetLabel"] == "job"
        jobs.add(relabel["replacement"])
        # The committed default scrapes without credentials; see the auth test below.
        assert "authorization" not in endpoint and "basicAuth" not in endpoint
    assert jobs == set(load_thresholds().settings.targets)


def _api_endpoint(settings: kubernetes.Settings) -> dict[str, Any]:
    monitors = [d for d in rendered(settings) if d["kind"] == "ServiceMonitor"]
    (api,) = [m for m in monitors if m["metadata"]["name"] == "inferwatch-api"]
    (endpoint,) = api["spec"]["endpoints"]
    return endpoint


def test_a_protected_api_is_scraped_with_credentials_from_a_secret() -> None:
    bearer = _api_endpoint(kubernetes.Settings(api_auth="bearer"))
    assert bearer["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "inferwatch-api-metrics", "key": "token"},
    }
    basic = _api_endpoint(kubernetes.Settings(api_auth="basic", api_secret="scrape"))
    assert basic["basicAuth"] == {
        "username": {"name": "scrape", "key": "username"},
        "password": {"name": "scrape", "key": "password"},
    }
    assert "authorization" not in basic
    with pytest.raises(ValueError, match="api_auth"):
        kubernetes.Settings(api_auth="token")  # type: ignore[arg-type]


def test_exporter_and_alert_sink_run_locked_down_behind_their_services() -> None:
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    monitors = {m["metadata"]["name"]: m for m in by_kind("ServiceMonitor")}
    pods = {w["metadata"]["name"]: w for w in [*by_kind("DaemonSet"), *by_kind("Deployment")]}
    assert set(pods) == set(services) == {"inferwatch-exporter", "inferwatch-alert-sink"}
    assert pods["inferwatch-exporter"]["kind"] == "DaemonSet"
    for name, pod in pods.items():
        template = pod["spec"]["template"]
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == workloads.UID
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert set(container["resources"]) == {"requests", "limits"}
        port = container["ports"][0]["name"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == port, (name, probe)
        # The Service selects these pods and names the port its ServiceMonitor scrapes.
        service = services[name]
        selector = service["spec"]["selector"]
        assert selector.items() <= template["metadata"]["labels"].items()
        assert service["spec"]["ports"][0]["targetPort"] == port
        if name in monitors:
            monitor = monitors[name]
            assert monitor["spec"]["selector"]["matchLabels"].items() <= (
                service["metadata"]["labels"].items()
            )
            assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # The receivers post to the alert sink's Service, on its port.
    sink = services["inferwatch-alert-sink"]
    webhook = f"http://inferwatch-alert-sink.inferwatch.svc:{sink['spec']['ports'][0]['port']}"
    assert kubernetes.Settings().webhook_base == webhook
    (amc,) = by_kind("AlertmanagerConfig")
    urls = {h["url"] for r in amc["spec"]["receivers"] for h in r["webhookConfigs"]}
    assert all(url.startswith(webhook + "/alerts/") for url in urls)


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
    command = ["generate", "kubernetes", "--namespace", "ml", "--release", "prom"]
    assert main([*command, "-o", str(tmp_path)]) == 0
    rule = load(tmp_path / "prometheusrule.yaml")
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert (tmp_path / "dashboards" / "kustomization.yaml").is_file()
