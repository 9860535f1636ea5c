"""prometheus.yml for the local stack, rendered from :class:`StackSettings`.

:func:`prometheus_config` is the one place the configuration's shape lives: the local stack
and the docker-compose deployment (``inferwatch.deploy.compose``) both render through it,
each with its own job -> targets mapping, Alertmanager address and scrape credentials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inferwatch.stack.settings import StackSettings

RULES_GLOB = "rules/*.yaml"

# Scrape job names double as the ``service`` of alerts; keep them stable. The demo is
# scraped as the monitored API, under the same job name as in docker-compose and Kubernetes.
JOB_API = "inferwatch-api"
JOB_DEMO = JOB_API
JOB_EXPORTER = "inferwatch-exporter"
JOB_ALERT_SINK = "inferwatch-alert-sink"
JOB_LONG_TERM = "victoria-metrics"
# The external label that tells the replicas of a Prometheus HA pair apart. Dropped from the
# alerts they send (Alertmanager deduplicates only identical label sets) and from the samples
# they remote_write (the long-term store deduplicates samples of one series only).
REPLICA_LABEL = "replica"
DROP_REPLICA = [{"action": "labeldrop", "regex": REPLICA_LABEL}]
# Production deployments (compose, Kubernetes) scrape at Prometheus's usual interval; Grafana's
# provisioned datasource declares the same (timeInterval).
PRODUCTION_SCRAPE_INTERVAL = "15s"


@dataclass(frozen=True)
class ScrapeAuth:
    """Credentials Prometheus presents when it scrapes a job: a bearer token, or basic auth.

    Only file *paths* go into the configuration; Prometheus reads the secret itself on each
    scrape (so a rotated file needs no reload), and the secret is in no generated file and on
    no command line. A relative path is relative to the configuration file's directory.
    """

    credentials_file: str | None = None  # the bearer token
    username: str | None = None
    password_file: str | None = None

    def __post_init__(self) -> None:
        basic = self.username is not None or self.password_file is not None
        if basic and (self.username is None or self.password_file is None):
            raise ValueError("basic auth needs both a username and a password file")
        if basic == (self.credentials_file is not None):
            raise ValueError("give either a bearer-token file or a username and password file")

    def config(self) -> dict[str, Any]:
        """The fields of a ``scrape_config`` that make Prometheus authenticate."""
        if self.credentials_file is not None:
            return {"authorization": {"type": "Bearer", "credentials_file": self.credentials_file}}
        return {"basic_auth": {"username": self.username, "password_file": self.password_file}}


def _absolute(path: Path | None) -> str | None:
    return None if path is None else str(path.resolve())


def service_auth(settings: StackSettings) -> ScrapeAuth | None:
    """How the stack's Prometheus authenticates to ``--service`` targets, if at all."""
    if settings.service_token_file is None and settings.service_username is None:
        return None
    # Absolute: the config lives in the data directory, the user's files elsewhere.
    return ScrapeAuth(
        credentials_file=_absolute(settings.service_token_file),
        username=settings.service_username,
        password_file=_absolute(settings.service_password_file),
    )


def scrape_jobs(settings: StackSettings) -> dict[str, list[str]]:
    """Job name -> targets; the single list the config and the status display share."""
    host = settings.host
    ports = settings.ports
    jobs: dict[str, list[str]] = {
        "prometheus": [f"{host}:{ports.prometheus}"],
        "alertmanager": alertmanagers(settings),
        JOB_EXPORTER: [f"{host}:{port}" for port in settings.replica_ports("exporter")],
        JOB_ALERT_SINK: [f"{host}:{ports.alert_sink}"],
    }
    if settings.ha:
        # Each replica scrapes the other too: a dead replica is a TargetDown of the live one.
        jobs["prometheus"].append(f"{host}:{settings.ha_ports.prometheus_2}")
        jobs[JOB_LONG_TERM] = [f"{host}:{settings.ha_ports.victoria_metrics}"]
    if settings.run_demo:
        jobs[JOB_DEMO] = [f"{host}:{port}" for port in settings.replica_ports("demo")]
    if settings.service_targets:
        jobs[settings.service_job] = list(settings.service_targets)
    return jobs


def alertmanagers(settings: StackSettings) -> list[str]:
    """host:port of every Alertmanager: each Prometheus replica sends to all of them."""
    found = [f"{settings.host}:{settings.ports.alertmanager}"]
    if settings.ha:
        found.append(f"{settings.host}:{settings.ha_ports.alertmanager_2}")
    return found


def remote_write_to(url: str, *, batch_send_deadline: str | None = None) -> dict[str, Any]:
    """A ``remote_write`` entry for one replica of an HA pair: without its ``replica``
    label, so both replicas write the same series and the store keeps one sample stream."""
    entry: dict[str, Any] = {"url": url, "write_relabel_configs": list(DROP_REPLICA)}
    if batch_send_deadline is not None:
        # How long a partial batch waits (5s by default): with short scrape intervals the
        # store is otherwise several intervals behind the replicas.
        entry["queue_config"] = {"batch_send_deadline": batch_send_deadline}
    return entry


def prometheus_config(
    jobs: Mapping[str, Sequence[str]],
    alertmanagers: Sequence[str],
    *,
    scrape_interval: str,
    evaluation_interval: str,
    external_labels: Mapping[str, str],
    rule_files: Sequence[str] = (RULES_GLOB,),
    auth: Mapping[str, ScrapeAuth] | None = None,
    remote_write: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The configuration as data: one static scrape job per entry of ``jobs``, those in
    ``auth`` scraped with its credentials. With a ``replica`` external label (one replica of
    an HA pair) the alerts go out without it, so Alertmanager sees one alert from the pair;
    ``remote_write`` entries are written as given (see :func:`remote_write_to`)."""
    auth = auth or {}
    unknown = sorted(set(auth) - set(jobs))
    if unknown:
        raise ValueError(f"credentials for jobs that are not scraped: {unknown}")
    alerting: dict[str, Any] = {
        "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
    }
    if REPLICA_LABEL in external_labels:
        alerting = {"alert_relabel_configs": list(DROP_REPLICA), **alerting}
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            # A scrape must never outlive its interval: a hung target is a failed scrape.
            "scrape_timeout": scrape_interval,
            "external_labels": dict(external_labels),
        },
        "rule_files": list(rule_files),
        "alerting": alerting,
        "scrape_configs": [
            {
                "job_name": job,
                **(auth[job].config() if job in auth else {}),
                "static_configs": [{"targets": list(targets)}],
            }
            for job, targets in jobs.items()
        ],
        **({"remote_write": [dict(entry) for entry in remote_write]} if remote_write else {}),
    }


# The config file of each Prometheus replica of the HA topology, in the config directory
# (so that the relative rules glob finds the same rules for both).
REPLICA_FILES = ("prometheus.yml", "prometheus-2.yml")


def render(settings: StackSettings, replica: int = 1) -> str:
    """prometheus.yml of the stack; in HA, of replica 1 or 2 (``replica`` label "1", "2")."""
    credentials = service_auth(settings)
    labels = {"stack": "inferwatch-local"}
    remote_write: list[dict[str, Any]] = []
    if settings.ha:
        labels[REPLICA_LABEL] = str(replica)
        remote_write.append(
            remote_write_to(
                f"{settings.url('victoria_metrics')}/api/v1/write",
                batch_send_deadline=settings.scrape_interval,
            )
        )
    config = prometheus_config(
        scrape_jobs(settings),
        alertmanagers(settings),
        scrape_interval=settings.scrape_interval,
        evaluation_interval=settings.evaluation_interval,
        external_labels=labels,
        auth={settings.service_job: credentials} if credentials else None,
        remote_write=remote_write,
    )
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
