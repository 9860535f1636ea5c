"""The Prometheus and Alertmanager configuration of ``docker-compose.yml``.

Rendered through the same functions as the local stack (``prometheus_config``) and the
committed Alertmanager file (``render_alertmanager_config``), with compose service names in
place of 127.0.0.1, so the three deployments cannot drift apart.
"""

from __future__ import annotations

from inferwatch.alertmanager import render_alertmanager_config
from inferwatch.alerts.render import GENERATED, to_yaml
from inferwatch.alerts.thresholds import Thresholds
from inferwatch.stack.prometheus_config import (
    JOB_ALERT_SINK,
    JOB_API,
    JOB_EXPORTER,
    JOB_LONG_TERM,
    PRODUCTION_SCRAPE_INTERVAL,
    REPLICA_LABEL,
    ScrapeAuth,
    prometheus_config,
    remote_write_to,
)

OUT_DIR = "deploy/compose"
PROMETHEUS_FILE = f"{OUT_DIR}/prometheus.yml"
ALERTMANAGER_FILE = f"{OUT_DIR}/alertmanager.yml"

# Compose service name -> port; docker-compose.yml uses the same names and ports.
SERVICES = {
    "prometheus": 9090,
    "alertmanager": 9093,
    "exporter": 9841,
    "alert-sink": 9095,
    "demo": 8000,
}
# The services of the `ha` profile: the second Prometheus and Alertmanager, and the
# long-term store both Prometheus replicas remote_write to.
HA_SERVICES = {
    "prometheus-2": 9090,
    "alertmanager-2": 9093,
    "victoria-metrics": 8428,
}
# One config per replica of the HA pair: the profile's prometheus-2 reads the second, and
# the first is what `prometheus` mounts when PROMETHEUS_CONFIG names it (docs/deploy.md).
HA_PROMETHEUS_FILES = (f"{OUT_DIR}/prometheus-ha-1.yml", f"{OUT_DIR}/prometheus-ha-2.yml")
SINK_URL = f"http://alert-sink:{SERVICES['alert-sink']}"
SCRAPE_INTERVAL = PRODUCTION_SCRAPE_INTERVAL
# The exporter's /metrics wants the bearer token of this compose secret (its
# INFERWATCH_METRICS_TOKEN_FILE); Prometheus, which mounts the same secret, presents it.
# A basic-auth service would be ScrapeAuth(username=..., password_file=...) the same way.
METRICS_TOKEN_SECRET = "/run/secrets/metrics_token"
SCRAPE_AUTH = {JOB_EXPORTER: ScrapeAuth(credentials_file=METRICS_TOKEN_SECRET)}


def _target(service: str) -> str:
    return f"{service}:{SERVICES.get(service) or HA_SERVICES[service]}"


def scrape_jobs() -> dict[str, list[str]]:
    """Job name -> targets inside the compose network."""
    return {
        "prometheus": [_target("prometheus")],
        "alertmanager": [_target("alertmanager")],
        JOB_EXPORTER: [_target("exporter")],
        JOB_ALERT_SINK: [_target("alert-sink")],
        JOB_API: [_target("demo")],
    }


def prometheus_yaml() -> str:
    config = prometheus_config(
        scrape_jobs(),
        [_target("alertmanager")],
        scrape_interval=SCRAPE_INTERVAL,
        evaluation_interval=SCRAPE_INTERVAL,
        external_labels={"stack": "inferwatch-compose"},
        auth=SCRAPE_AUTH,
    )
    return to_yaml(
        config,
        "Prometheus for docker-compose.yml; alerts/*.yaml are mounted as rules/*.yaml.",
    )


def ha_scrape_jobs() -> dict[str, list[str]]:
    """The jobs of :func:`scrape_jobs` with both replicas of each pair, and the store."""
    jobs = scrape_jobs()
    jobs["prometheus"].append(_target("prometheus-2"))
    jobs["alertmanager"].append(_target("alertmanager-2"))
    jobs[JOB_LONG_TERM] = [_target("victoria-metrics")]
    return jobs


def prometheus_ha_yaml(replica: int) -> str:
    """Replica ``replica`` (1 or 2) of the HA pair: the same jobs and rules as the other,
    its own ``replica`` external label (dropped from alerts and remote_write), alerts to
    both Alertmanagers, samples to VictoriaMetrics."""
    config = prometheus_config(
        ha_scrape_jobs(),
        [_target("alertmanager"), _target("alertmanager-2")],
        scrape_interval=SCRAPE_INTERVAL,
        evaluation_interval=SCRAPE_INTERVAL,
        external_labels={"stack": "inferwatch-compose", REPLICA_LABEL: str(replica)},
        auth=SCRAPE_AUTH,
        remote_write=[remote_write_to(f"http://{_target('victoria-metrics')}/api/v1/write")],
    )
    return to_yaml(
        config,
        f"Prometheus replica {replica} of the `ha` profile of docker-compose.yml "
        "(docs/deploy.md);\nalerts/*.yaml are mounted as rules/*.yaml.",
    )


def alertmanager_yaml() -> str:
    text = render_alertmanager_config(SINK_URL)
    # Its leading comment names another generator; this copy is ours, so say so instead.
    comment, sep, rest = text.partition("\n\n")
    body = rest if sep and comment.startswith("#") else text
    return (
        f"# {GENERATED}\n"
        f"# Alertmanager for docker-compose.yml: src/inferwatch/alertmanager.py rendered with\n"
        f"# every receiver posting to {SINK_URL}; routes as in deploy/alertmanager/README.md.\n"
        f"{body}"
    )


def files(thresholds: Thresholds) -> dict[str, str]:
    """Relative path -> text. Independent of the thresholds: the rules are separate files."""
    del thresholds
    return {
        PROMETHEUS_FILE: prometheus_yaml(),
        ALERTMANAGER_FILE: alertmanager_yaml(),
        **{path: prometheus_ha_yaml(n) for n, path in enumerate(HA_PROMETHEUS_FILES, 1)},
    }
