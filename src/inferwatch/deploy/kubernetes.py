"""Manifests for a cluster running kube-prometheus-stack (the Prometheus Operator).

Every resource is generated from the sources the other deployments use: the PrometheusRule
holds exactly the recording and alerting groups of ``alerts/*.yaml``, the AlertmanagerConfig
is converted from ``inferwatch.alertmanager``, each dashboard ConfigMap carries the JSON of
``dashboards/``. Render for another namespace, release or sink without touching the committed
defaults::

    python -m inferwatch.deploy.kubernetes --namespace ml --release prom -o manifests/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferwatch.alerts import alerting, recording
from inferwatch.alerts.render import to_yaml
from inferwatch.alerts.thresholds import Thresholds, load_thresholds
from inferwatch.deploy import alertmanager_crd
from inferwatch.deploy.compose import JOB_API, SCRAPE_INTERVAL
from inferwatch.stack.prometheus_config import JOB_EXPORTER

OUT_DIR = "deploy/kubernetes"
DASHBOARDS_DIR = f"{OUT_DIR}/dashboards"
MONITORING = "monitoring.coreos.com/v1"
KUSTOMIZE = "kustomize.config.k8s.io/v1beta1"
PART_OF = {"app.kubernetes.io/part-of": "inferwatch"}
# The label (and value) kube-prometheus-stack's Grafana sidecar loads dashboards by.
DASHBOARD_LABEL = {"grafana_dashboard": "1"}


@dataclass(frozen=True)
class Settings:
    namespace: str = "inferwatch"
    # kube-prometheus-stack's Prometheus selects ServiceMonitors and PrometheusRules carrying
    # `release: <its Helm release name>`; anything else is silently ignored.
    release: str = "kube-prometheus-stack"
    sink_url: str | None = None  # None: the alert sink's Service in `namespace`

    @property
    def webhook_base(self) -> str:
        return self.sink_url or f"http://inferwatch-alert-sink.{self.namespace}.svc:9095"


@dataclass(frozen=True)
class Scraped:
    """A Service the operator scrapes, and the job name the rules know it by."""

    job: str
    port: str  # the Service's port *name*
    what: str


# Job names must stay those of alerts/*.yaml (TargetDown, TargetAbsent, service labels).
SCRAPED = (
    Scraped(JOB_API, "http", "the instrumented FastAPI service"),
    Scraped(JOB_EXPORTER, "metrics", "the standalone exporter"),
)


def _metadata(name: str, settings: Settings, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": settings.namespace, "labels": {**PART_OF, **labels}}


def service_monitor(scraped: Scraped, settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING,
        "kind": "ServiceMonitor",
        "metadata": _metadata(scraped.job, settings, {"release": settings.release}),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": scraped.job}},
            "endpoints": [
                {
                    "port": scraped.port,
                    "path": "/metrics",
                    "interval": SCRAPE_INTERVAL,
                    # The operator names the job after the Service; the rules need ours.
                    "relabelings": [
                        {"action": "replace", "targetLabel": "job", "replacement": scraped.job}
                    ],
                }
            ],
        },
    }


def prometheus_rule(thresholds: Thresholds, settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING,
        "kind": "PrometheusRule",
        "metadata": _metadata("inferwatch", settings, {"release": settings.release}),
        # The very groups `inferwatch generate` writes to alerts/*.yaml, in the same order.
        "spec": {"groups": [*recording.groups(thresholds), *alerting.groups(thresholds)]},
    }


def alertmanager_config(settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": alertmanager_crd.API_VERSION,
        "kind": "AlertmanagerConfig",
        "metadata": _metadata("inferwatch", settings, {"release": settings.release}),
        "spec": alertmanager_crd.spec(settings.webhook_base),
    }


def kustomization(resources: Sequence[str], name: str, settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": KUSTOMIZE,
        "kind": "Kustomization",
        "metadata": {"name": name},
        "namespace": settings.namespace,
        "resources": list(resources),
    }


def _dashboard_name(path: str) -> str:
    return Path(path).stem


def dashboard_config_map(path: str, text: str, settings: Settings) -> dict[str, Any]:
    name = _dashboard_name(path)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(f"inferwatch-dashboard-{name}", settings, DASHBOARD_LABEL),
        "data": {f"{name}.json": text},
    }


def files(thresholds: Thresholds, settings: Settings | None = None) -> dict[str, str]:
    """Relative path -> text of every manifest but the dashboards'."""
    settings = settings or Settings()
    docs: dict[str, tuple[dict[str, Any], str]] = {
        f"servicemonitor-{s.job}.yaml": (
            service_monitor(s, settings),
            f"Scrapes {s.what}: a Service labelled app.kubernetes.io/name={s.job} "
            f"with a port named {s.port!r}.",
        )
        for s in SCRAPED
    }
    docs["prometheusrule.yaml"] = (
        prometheus_rule(thresholds, settings),
        "The recording and alerting rules of alerts/*.yaml, group for group.",
    )
    docs["alertmanagerconfig.yaml"] = (
        alertmanager_config(settings),
        "Routes, receivers and inhibition of deploy/alertmanager/alertmanager.yml.\n"
        "global.resolve_timeout has no AlertmanagerConfig field: set it in the chart values.",
    )
    resources = [*docs, "dashboards"]
    docs["kustomization.yaml"] = (
        kustomization(resources, "inferwatch", settings),
        "kubectl apply -k deploy/kubernetes",
    )
    return {f"{OUT_DIR}/{name}": to_yaml(doc, header) for name, (doc, header) in docs.items()}


def dashboard_files(thresholds: Thresholds, settings: Settings | None = None) -> dict[str, str]:
    """One ConfigMap per dashboard JSON, and their kustomization. Needs grafanalib."""
    from inferwatch.dashboards import files as dashboard_json

    settings = settings or Settings()
    out: dict[str, str] = {}
    for path, text in sorted(dashboard_json(thresholds).items()):
        name = f"{_dashboard_name(path)}.yaml"
        out[f"{DASHBOARDS_DIR}/{name}"] = to_yaml(
            dashboard_config_map(path, text, settings),
            f"{path}, for the Grafana sidecar of kube-prometheus-stack.",
        )
    resources = [Path(rel).name for rel in out]
    out[f"{DASHBOARDS_DIR}/kustomization.yaml"] = to_yaml(
        kustomization(resources, "inferwatch-dashboards", settings)
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inferwatch.deploy.kubernetes",
        description="Render the kube-prometheus-stack manifests for another deployment.",
    )
    defaults = Settings()
    parser.add_argument("--namespace", default=defaults.namespace)
    parser.add_argument("--release", default=defaults.release, help="Helm release name")
    parser.add_argument("--sink-url", help="alert-sink base URL (default: its Service)")
    parser.add_argument("--thresholds", type=Path, action="append", default=[])
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    args = parser.parse_args(argv)
    settings = Settings(args.namespace, args.release, args.sink_url)
    thresholds = load_thresholds(*args.thresholds)
    rendered = {**files(thresholds, settings), **dashboard_files(thresholds, settings)}
    for rel, text in rendered.items():
        path = args.output / Path(rel).relative_to(OUT_DIR)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"wrote {len(rendered)} files under {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
