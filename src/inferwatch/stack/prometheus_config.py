"""prometheus.yml for the local stack, rendered from :class:`StackSettings`."""

from __future__ import annotations

from typing import Any

import yaml

from inferwatch.stack.settings import StackSettings

RULES_GLOB = "rules/*.yaml"

# Scrape job names double as the ``service`` of alerts; keep them stable.
JOB_DEMO = "demo"
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


def render(settings: StackSettings) -> str:
    alertmanager = f"{settings.host}:{settings.ports.alertmanager}"
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": settings.scrape_interval,
            "evaluation_interval": settings.evaluation_interval,
            # A scrape must never outlive its interval: a hung target is a failed scrape.
            "scrape_timeout": settings.scrape_interval,
            "external_labels": {"stack": "inferwatch-local"},
        },
        "rule_files": [RULES_GLOB],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in scrape_jobs(settings).items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
