"""Every config file the stack's processes read, written into the data directory from the
project's own sources (thresholds, rule generator, Alertmanager renderer) on each start."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from inferwatch import alertmanager
from inferwatch.stack import prometheus_config
from inferwatch.stack.settings import StackSettings


def _write(path: Path, text: str) -> None:
    """Atomically, so a process reloading its config never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# Backend URLs handed to the exporter as files (its --redis-url-file, --postgres-url-file):
# a password on its command line would show in every process listing.
URL_FILES = {"redis_url": "redis-url", "postgres_url": "postgres-url"}


def url_file(settings: StackSettings, name: str) -> Path:
    return settings.config_dir / URL_FILES[name]


def write_url_files(settings: StackSettings) -> None:
    """Each configured backend URL into its own owner-only (0600) file; stale ones removed."""
    for name in URL_FILES:
        path = url_file(settings, name)
        url = getattr(settings, name)
        if url is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)  # so O_CREAT applies the mode, never an older file's
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(url + "\n")
        os.replace(tmp, path)


def alertmanager_timings(settings: StackSettings) -> dict[str, alertmanager.Timing]:
    overrides = {
        name: value
        for name in ("group_wait", "group_interval", "repeat_interval")
        if (value := getattr(settings, name)) is not None
    }
    return {
        receiver: dataclasses.replace(timing, **overrides)
        for receiver, timing in alertmanager.TIMINGS.items()
    }


def write_rules(settings: StackSettings) -> list[Path]:
    from inferwatch.alerts.generate import rule_files

    rules_dir = settings.config_dir / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    files = rule_files(
        settings.thresholds,
        for_scale=settings.for_scale,
        targets=sorted(prometheus_config.scrape_jobs(settings)),
        evaluation_interval=settings.evaluation_interval,
        window_scale=settings.window_scale,
        scrape_interval=settings.scrape_interval,
        # The stack runs no Grafana: dashboard links only to one the user names.
        grafana_base_url=settings.grafana_url or "",
    )
    for stale in rules_dir.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in sorted(files.items()):
        _write(rules_dir / name, text)
        written.append(rules_dir / name)
    return written


def write_all(settings: StackSettings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _write(settings.config_dir / "prometheus.yml", prometheus_config.render(settings))
    _write(
        settings.config_dir / "alertmanager.yml",
        alertmanager.render_alertmanager_config(
            settings.url("alert_sink"), timings=alertmanager_timings(settings)
        ),
    )
    write_rules(settings)
    write_url_files(settings)
