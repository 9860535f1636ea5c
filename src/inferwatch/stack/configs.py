"""Every config file the stack's processes read, written into the data directory from the
project's own sources (thresholds, rule generator, Alertmanager renderer) on each start."""

from __future__ import annotations

import dataclasses
import os
import secrets
from fractions import Fraction
from pathlib import Path

from inferwatch import alertmanager
from inferwatch.alerts import units
from inferwatch.stack import prometheus_config
from inferwatch.stack.settings import StackSettings


def _write(path: Path, text: str) -> None:
    """Atomically, so a process reloading its config never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_private(path: Path, text: str) -> None:
    """Like :func:`_write`, readable by the owner only (0600): for anything with a secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)  # so O_CREAT applies the mode, never an older file's
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def secret(path: Path) -> str:
    """The secret kept in ``path``, generated (URL-safe, 192 bits) into a 0600 file the
    first time: the same one on every start, as a database initialised with it needs."""
    try:
        if found := path.read_text(encoding="utf-8").strip():
            return found
    except FileNotFoundError:
        pass
    generated = secrets.token_urlsafe(24)
    write_private(path, generated + "\n")
    return generated


# Backend URLs handed to the demo and the exporter as files (their --redis-url-file and
# --postgres-url-file): a password on a command line would show in every process listing.
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
        else:
            write_private(path, url + "\n")


# Shortest scaled Alertmanager intervals: notifications of a group at most once a second.
_MIN_INTERVAL = Fraction(1)


def _scaled(duration: str, scale: Fraction, floor: Fraction) -> str:
    millis = round(units.parse_duration(duration) * scale * 1000)
    return units.format_duration(max(floor, Fraction(millis, 1000)))


def alertmanager_timings(settings: StackSettings) -> dict[str, alertmanager.Timing]:
    """Each receiver's production timings, scaled like the rules: by the smaller of
    ``for_scale`` and ``window_scale``, so that a demonstration's notifications, resolved
    ones included, come as soon as its alerts change (a warning otherwise waits a minute
    for its group, and a resolution for the group's next interval). Explicit
    ``group_wait``/``group_interval``/``repeat_interval`` settings win."""
    scale = Fraction(min(settings.for_scale, settings.window_scale)).limit_denominator(10**6)
    overrides = {
        name: value
        for name in ("group_wait", "group_interval", "repeat_interval")
        if (value := getattr(settings, name)) is not None
    }
    timings = {}
    for receiver, timing in alertmanager.TIMINGS.items():
        if scale < 1:
            timing = alertmanager.Timing(
                group_wait=_scaled(timing.group_wait, scale, Fraction(0)),
                group_interval=_scaled(timing.group_interval, scale, _MIN_INTERVAL),
                repeat_interval=_scaled(timing.repeat_interval, scale, _MIN_INTERVAL),
            )
        timings[receiver] = dataclasses.replace(timing, **overrides)
    return timings


def write_rules(settings: StackSettings) -> list[Path]:
    from inferwatch.alerts.files import rule_files

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
    second = settings.config_dir / prometheus_config.REPLICA_FILES[1]
    if settings.ha:
        _write(second, prometheus_config.render(settings, replica=2))
    else:
        second.unlink(missing_ok=True)  # a config no process reads would only mislead
    _write(
        settings.config_dir / "alertmanager.yml",
        alertmanager.render_alertmanager_config(
            settings.url("alert_sink"), timings=alertmanager_timings(settings)
        ),
    )
    write_rules(settings)
    write_url_files(settings)
