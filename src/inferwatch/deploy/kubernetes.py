"""Manifests for a cluster running kube-prometheus-stack (the Prometheus Operator).

Every resource is generated from the sources the other deployments use: the PrometheusRule
holds the recording and alerting groups of ``alerts/*.yaml``, the AlertmanagerConfig is
converted from ``inferwatch.alertmanager``, each dashboard ConfigMap carries the JSON of
``dashboards/``, and the exporter and the alert sink run as in ``docker-compose.yml``
(``workloads``). Render for another namespace, release, sink or Grafana without touching
the committed defaults::

    inferwatch generate kubernetes --namespace ml --release prom -o manifests/

The Prometheus Operator nests an AlertmanagerConfig's routes under a ``namespace="<its
namespace>"`` matcher (its default ``alertmanagerConfigMatcherStrategy``, OnNamespace), and
most of our alerts aggregate ``namespace`` away; so every alerting rule here carries that
namespace as a static label, or its alerts would fall through to the chart's root receiver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from inferwatch import __version__
from inferwatch.alerts import alerting, recording
from inferwatch.alerts.adjust import with_grafana
from inferwatch.alerts.render import to_yaml
from inferwatch.alerts.thresholds import Thresholds
from inferwatch.config import check_http_url
from inferwatch.deploy import alertmanager_crd, workloads
from inferwatch.stack.prometheus_config import (
    JOB_API,
    JOB_EXPORTER,
)
from inferwatch.stack.prometheus_config import (
    PRODUCTION_SCRAPE_INTERVAL as SCRAPE_INTERVAL,
)

OUT_DIR = "deploy/kubernetes"
DASHBOARDS_DIR = f"{OUT_DIR}/dashboards"
MONITORING = "monitoring.coreos.com/v1"
KUSTOMIZE = "kustomize.config.k8s.io/v1beta1"
PART_OF = {"app.kubernetes.io/part-of": "inferwatch"}
# The label (and value) kube-prometheus-stack's Grafana sidecar loads dashboards by.
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
CHART_VALUES = f"{OUT_DIR}/chart-values.yaml"  # for `helm install -f`, not for kustomize

# kube-prometheus-stack's default `alertmanager.config.inhibit_rules` (chart 67.8.0; a test
# compares them with the chart's values). Helm replaces lists, so overriding one rule
# means restating them all.
CHART_INHIBIT_RULES: tuple[dict[str, list[str]], ...] = (
    {
        "source_matchers": ["severity = critical"],
        "target_matchers": ["severity =~ warning|info"],
        "equal": ["namespace", "alertname"],
    },
    {
        "source_matchers": ["severity = warning"],
        "target_matchers": ["severity = info"],
        "equal": ["namespace", "alertname"],
    },
    {
        "source_matchers": ["alertname = InfoInhibitor"],
        "target_matchers": ["severity = info"],
        "equal": ["namespace"],
    },
    {"target_matchers": ["alertname = InfoInhibitor"]},
)


ScrapeAuth = Literal["none", "bearer", "basic"]
# Keys of the Secret a protected API's ServiceMonitor reads its credentials from.
TOKEN_KEY = "token"
USERNAME_KEY, PASSWORD_KEY = "username", "password"


@dataclass(frozen=True)
class Settings:
    # Where every resource lives, and the `namespace` label of every alert: the operator
    # routes only alerts of the AlertmanagerConfig's own namespace to its receivers.
    namespace: str = "inferwatch"
    # kube-prometheus-stack's Prometheus selects ServiceMonitors and PrometheusRules carrying
    # `release: <its Helm release name>`; anything else is silently ignored.
    release: str = "kube-prometheus-stack"
    sink_url: str | None = None  # None: the alert sink's Service in `namespace`
    image: str = f"inferwatch:{__version__}"  # of the exporter and the alert sink
    # How Prometheus authenticates to the API's /metrics: with the Secret `api_secret`'s
    # `token` (bearer) or `username` and `password` (basic); the secret stays in the Secret.
    api_auth: ScrapeAuth = "none"
    api_secret: str = "inferwatch-api-metrics"
    # dashboard_url = <this>/d/<uid>; None: the annotation is left out, since the chart's
    # Grafana has no address that works outside the cluster until you give it one.
    grafana_url: str | None = None
    # A long-term store's remote_write endpoint (VictoriaMetrics' /api/v1/write, Mimir's
    # /api/v1/push, Thanos Receive's /api/v1/receive): the chart values then run Prometheus
    # and Alertmanager as HA pairs and have both Prometheus replicas write there.
    remote_write_url: str | None = None

    def __post_init__(self) -> None:
        if self.api_auth not in ("none", "bearer", "basic"):
            raise ValueError(f"api_auth must be none, bearer or basic, got {self.api_auth!r}")
        if self.grafana_url is not None:
            check_http_url(self.grafana_url, "grafana_url")
        if self.remote_write_url is not None:
            check_http_url(self.remote_write_url, "remote_write_url")

    @property
    def webhook_base(self) -> str:
        return self.sink_url or (
            f"http://{workloads.ALERT_SINK.name}.{self.namespace}.svc:{workloads.ALERT_SINK.port}"
        )


@dataclass(frozen=True)
class Scraped:
    """A Service the operator scrapes, and the job name the rules know it by."""

    job: str
    port: str  # the Service's port *name*
    what: str
    protected: bool = False  # scraped with Settings.api_auth
    # Relabelings after the job's: the exporter's `instance` is its node, not a pod address.
    relabelings: tuple[dict[str, Any], ...] = ()


# Job names must stay those of alerts/*.yaml (TargetDown, TargetAbsent, service labels).
SCRAPED = (
    Scraped(JOB_API, "http", "the instrumented FastAPI service", protected=True),
    Scraped(
        JOB_EXPORTER,
        workloads.EXPORTER.port_name,
        "the standalone exporter",
        relabelings=(
            {
                "action": "replace",
                "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                "targetLabel": "instance",
            },
        ),
    ),
)


def _metadata(name: str, settings: Settings, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": settings.namespace, "labels": {**PART_OF, **labels}}


def _secret_key(settings: Settings, key: str) -> dict[str, str]:
    return {"name": settings.api_secret, "key": key}


def scrape_auth(settings: Settings) -> dict[str, Any]:
    """The endpoint fields that make Prometheus authenticate (none without ``api_auth``)."""
    if settings.api_auth == "bearer":
        return {
            "authorization": {"type": "Bearer", "credentials": _secret_key(settings, TOKEN_KEY)}
        }
    if settings.api_auth == "basic":
        return {
            "basicAuth": {
                "username": _secret_key(settings, USERNAME_KEY),
                "password": _secret_key(settings, PASSWORD_KEY),
            }
        }
    return {}


def service_monitor(scraped: Scraped, settings: Settings) -> dict[str, Any]:
    endpoint = {
        "port": scraped.port,
        "path": "/metrics",
        "interval": SCRAPE_INTERVAL,
        **(scrape_auth(settings) if scraped.protected else {}),
        # The operator names the job after the Service; the rules need ours.
        "relabelings": [
            {"action": "replace", "targetLabel": "job", "replacement": scraped.job},
            *scraped.relabelings,
        ],
    }
    return {
        "apiVersion": MONITORING,
        "kind": "ServiceMonitor",
        "metadata": _metadata(scraped.job, settings, {"release": settings.release}),
        "spec": {
            "selector": {"matchLabels": {workloads.NAME_LABEL: scraped.job}},
            "endpoints": [endpoint],
        },
    }


def _with_namespace(group: dict[str, Any], namespace: str) -> dict[str, Any]:
    """``group`` with ``namespace`` as a static label of every alerting rule. A static label
    wins over the series' own, so an alert that kept its pods' namespace gets the same."""
    rules = [
        {**rule, "labels": {**rule.get("labels", {}), "namespace": namespace}}
        if "alert" in rule
        else rule
        for rule in group["rules"]
    ]
    return {**group, "rules": rules}


def prometheus_rule(thresholds: Thresholds, settings: Settings) -> dict[str, Any]:
    alerts = alerting.groups(with_grafana(thresholds, settings.grafana_url or ""))
    return {
        "apiVersion": MONITORING,
        "kind": "PrometheusRule",
        "metadata": _metadata("inferwatch", settings, {"release": settings.release}),
        # The groups `inferwatch generate` writes to alerts/*.yaml, in the same order; the
        # alerts labelled with their namespace and linked to this cluster's Grafana.
        "spec": {
            "groups": [
                *recording.groups(thresholds),
                *(_with_namespace(group, settings.namespace) for group in alerts),
            ]
        },
    }


def alertmanager_config(settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": alertmanager_crd.API_VERSION,
        "kind": "AlertmanagerConfig",
        "metadata": _metadata("inferwatch", settings, {"release": settings.release}),
        "spec": alertmanager_crd.spec(settings.webhook_base),
    }


def chart_inhibit_rules(settings: Settings) -> list[dict[str, list[str]]]:
    """The chart's inhibit rules, leaving the alerts of ``settings.namespace`` alone.

    The chart's first two rules compare only ``namespace`` and ``alertname``: with every
    inferwatch alert in one namespace, a critical HostHighCPUUsage on one host would hide
    the warning on every other. Our AlertmanagerConfig brings its own rule, which compares
    the labels that identify the alerted object, so the chart's must skip our namespace.
    """
    ours = f'namespace!="{settings.namespace}"'
    rules = []
    for rule in CHART_INHIBIT_RULES:
        rule = {key: list(value) for key, value in rule.items()}
        if rule.get("equal") == ["namespace", "alertname"]:
            rule["target_matchers"].append(ours)
        rules.append(rule)
    return rules


# The external label the operator gives each replica of a Prometheus with `replicas: 2`
# (its replicaExternalLabelName). The operator drops it from the alerts itself; the samples
# written to a long-term store lose it here, so both replicas write the same series.
OPERATOR_REPLICA_LABEL = "prometheus_replica"
HA_REPLICAS = 2


def remote_write(settings: Settings) -> dict[str, Any]:
    """The HA half of the chart values: two Prometheus replicas writing to
    ``settings.remote_write_url`` without their replica label, two Alertmanagers (the
    operator clusters the replicas of one Alertmanager resource)."""
    return {
        "prometheusSpec": {
            "replicas": HA_REPLICAS,
            "remoteWrite": [
                {
                    "url": settings.remote_write_url,
                    "writeRelabelConfigs": [
                        {"action": "labeldrop", "regex": OPERATOR_REPLICA_LABEL}
                    ],
                }
            ],
        },
        "alertmanagerSpec": {"replicas": HA_REPLICAS},
    }


def chart_values(settings: Settings) -> dict[str, Any]:
    """Values for kube-prometheus-stack under which these manifests work as tested; with
    ``remote_write_url``, also the HA pairs writing to a long-term store."""
    ha = remote_write(settings) if settings.remote_write_url else {}
    return {
        "prometheus": {
            "prometheusSpec": {
                # The defaults, spelled out: ServiceMonitors and PrometheusRules are picked up
                # by their `release` label.
                "serviceMonitorSelectorNilUsesHelmValues": True,
                "ruleSelectorNilUsesHelmValues": True,
                **ha.get("prometheusSpec", {}),
            }
        },
        # alertmanagerConfigMatcherStrategy stays the default (OnNamespace): our alerts carry
        # their namespace, and other namespaces' alerts never reach our receivers.
        "alertmanager": {
            "config": {"inhibit_rules": chart_inhibit_rules(settings)},
            **({"alertmanagerSpec": ha["alertmanagerSpec"]} if ha else {}),
        },
        "grafana": {
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": next(iter(DASHBOARD_LABEL)),
                    "labelValue": DASHBOARD_LABEL["grafana_dashboard"],
                    # The ConfigMaps live in our namespace, not in Grafana's.
                    "searchNamespace": "ALL",
                }
            }
        },
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


def _auth_note(scraped: Scraped, settings: Settings) -> str:
    if not scraped.protected:
        return ""
    if settings.api_auth == "bearer":
        keys = f"key {TOKEN_KEY!r}"
    elif settings.api_auth == "basic":
        keys = f"keys {USERNAME_KEY!r} and {PASSWORD_KEY!r}"
    else:
        return "\nUnprotected /metrics; render with --api-auth bearer|basic for a protected one."
    return f"\nCredentials: Secret {settings.api_secret!r}, {keys}, in this namespace."


def files(thresholds: Thresholds, settings: Settings | None = None) -> dict[str, str]:
    """Relative path -> text of every manifest but the dashboards'."""
    settings = settings or Settings()
    docs: dict[str, tuple[dict[str, Any], str]] = {
        f"servicemonitor-{s.job}.yaml": (
            service_monitor(s, settings),
            f"Scrapes {s.what}: a Service labelled {workloads.NAME_LABEL}={s.job} "
            f"with a port named {s.port!r}.{_auth_note(s, settings)}",
        )
        for s in SCRAPED
    }
    for w in workloads.WORKLOADS:
        kind = w.kind.lower()
        docs[f"{kind}-{w.name}.yaml"] = (
            workloads.workload(w, _metadata(w.name, settings, {}), settings.image),
            f"`inferwatch {' '.join(w.args)}` ({settings.image}).",
        )
        docs[f"service-{w.name}.yaml"] = (
            workloads.service(w, _metadata(w.name, settings, {})),
            f"The {kind}'s port {w.port_name!r}.",
        )
    docs["prometheusrule.yaml"] = (
        prometheus_rule(thresholds, settings),
        "The recording and alerting rules of alerts/*.yaml, group for group; every alert\n"
        f"labelled namespace={settings.namespace}, the AlertmanagerConfig's namespace.",
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
    out = {f"{OUT_DIR}/{name}": to_yaml(doc, header) for name, (doc, header) in docs.items()}
    out[CHART_VALUES] = to_yaml(
        chart_values(settings),
        "helm install ... prometheus-community/kube-prometheus-stack -f chart-values.yaml\n"
        "(merge into your own values). Not a manifest: kustomize leaves it out.",
    )
    return out


def dashboard_files(dashboards: dict[str, str], settings: Settings | None = None) -> dict[str, str]:
    """One ConfigMap per dashboard JSON (``{path: json}``, the dashboards' own output), and
    their kustomization."""
    settings = settings or Settings()
    out: dict[str, str] = {}
    for path, text in sorted(dashboards.items()):
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
