"""prometheus.yml for the local stack, rendered from :class:`StackSettings`.

:func:`prometheus_config` is the one place the configuration's shape lives: the local stack
and the docker-compose deployment (``inferwatch.deploy.compose``) both render through it,
each with its own job -> targets mapping and Alertmanager address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from inferwatch.stack.settings import StackSettings

RULES_GLOB = "rules/*.yaml"

# Scrape job names double as the ``service`` of alerts; keep them stable. The demo is
# scraped as the monitored API, under the same job name as in docker-compose and Kubernetes.
JOB_DEMO = "inferwatch-api"
JOB_EXPORTER = "inferwatch-exporter"
JOB_ALERT_SINK = "inferwatch-alert-sink"


def scrape_jobs(settings: StackSettings) -> dict[str, list[str]]:
    """Job name -> targets; the single list the config and the status display share."""
    host = settings.host
    ports = settings.ports
    jobs: dict[str, list[str]] = {
        "prometheus": [f"{host}:{ports.prometheus}"],
        "alertmanager": [f"{host}:{ports.alertmanager}"],
        JOB_EXPORTER: [f"{host}:{ports.exporter}"],
        JOB_ALERT_SINK: [f"{host}:{ports.alert_sink}"],
    }
    if settings.run_demo:
        jobs[JOB_DEMO] = [f"{host}:{ports.demo}"]
    if settings.service_targets:
        jobs[settings.service_job] = list(settings.service_targets)
    return jobs


def prometheus_config(
    jobs: Mapping[str, Sequence[str]],
    alertmanagers: Sequence[str],
    *,
    scrape_interval: str,
    evaluation_interval: str,
    external_labels: Mapping[str, str],
    rule_files: Sequence[str] = (RULES_GLOB,),
) -> dict[str, Any]:
    """The configuration as data: one static scrape job per entry of ``jobs``."""
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            # A scrape must never outlive its interval: a hung target is a failed scrape.
            "scrape_timeout": scrape_interval,
            "external_labels": dict(external_labels),
        },
        "rule_files": list(rule_files),
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets)}]}
            for job, targets in jobs.items()
        ],
    }


def render(settings: StackSettings) -> str:
    config = prometheus_config(
        scrape_jobs(settings),
        [f"{settings.host}:{settings.ports.alertmanager}"],
        scrape_interval=settings.scrape_interval,
        evaluation_interval=settings.evaluation_interval,
        external_labels={"stack": "inferwatch-local"},
    )
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
