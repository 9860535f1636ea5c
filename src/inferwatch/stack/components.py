"""The processes of the local stack: what runs, how it is started and how it is seen healthy."""

from __future__ import annotations

import ctypes.util
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from inferwatch.stack.configs import url_file
from inferwatch.stack.settings import StackSettings

APT_HINT = "install it with: sudo apt-get install -y {package} (or run ./scripts/bootstrap.sh)"


@dataclass(frozen=True)
class Component:
    name: str
    command: list[str]
    health_url: str
    ui_url: str
    description: str
    # Another component whose process this one watches: its pid is appended as `--pid N`
    # once it runs (the exporter reports the demo's memory, where a leak would show).
    watch: str | None = None
    # Extra environment variables for its process: how secrets reach the demo, since
    # command lines are visible to every user in process listings.
    env: dict[str, str] = field(default_factory=dict)


def find_binary(*names: str, package: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        f"{' or '.join(names)} not found on PATH; " + APT_HINT.format(package=package)
    )


def inferwatch_command() -> list[str]:
    """This environment's own ``inferwatch``, so children run the same code as the runner."""
    script = Path(sys.executable).parent / "inferwatch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "inferwatch.cli.main"]


def demo_env(settings: StackSettings) -> dict[str, str]:
    """The demo's backend URLs, through the variables its CLI reads as defaults."""
    env = {}
    if settings.redis_url is not None:
        env["INFERWATCH_DEMO_REDIS_URL"] = settings.redis_url
    if settings.postgres_url is not None:
        env["INFERWATCH_DEMO_POSTGRES_URL"] = settings.postgres_url
    return env


def nvml_available() -> bool:
    """Whether this host has NVIDIA's management library (i.e. a driver and GPUs)."""
    return ctypes.util.find_library("nvidia-ml") is not None


def exporter_collectors(s: StackSettings) -> list[str]:
    """The stack's own choice unless given: the GPU collector only where a driver exists,
    so a laptop without an NVIDIA GPU does not page ExporterCollectorFailing forever."""
    if s.exporter_collectors is not None:
        return list(s.exporter_collectors)
    chosen = ["host", *(["gpu"] if nvml_available() else [])]
    chosen += [name for name in ("redis", "postgres") if getattr(s, f"{name}_url")]
    return chosen


def components(settings: StackSettings) -> list[Component]:
    """In start order: receivers before senders, targets before the scraper."""
    s, data = settings, settings.data_dir.resolve()
    config = s.config_dir.resolve()
    listen = {name: f"{s.host}:{port}" for name, port in s.ports.items()}
    own = inferwatch_command()
    parts = [
        Component(
            "alert-sink",
            [
                *own,
                "alert-sink",
                "--host",
                s.host,
                "--port",
                str(s.ports.alert_sink),
                "--store",
                str(data / "alert-sink" / "notifications.jsonl"),
            ],
            f"{s.url('alert_sink')}/healthz",
            f"{s.url('alert_sink')}/notifications",
            "notification receiver",
        ),
        Component(
            "alertmanager",
            [
                find_binary(
                    "alertmanager", "prometheus-alertmanager", package="prometheus-alertmanager"
                ),
                f"--config.file={config / 'alertmanager.yml'}",
                f"--storage.path={data / 'alertmanager'}",
                f"--web.listen-address={listen['alertmanager']}",
                "--cluster.listen-address=",
            ],  # a single instance: no gossip port to collide on
            f"{s.url('alertmanager')}/-/ready",
            s.url("alertmanager"),
            "Alertmanager",
        ),
    ]
    if s.run_demo:
        parts.append(
            Component(
                "demo",
                [
                    *own,
                    "demo",
                    "--host",
                    s.host,
                    "--port",
                    str(s.ports.demo),
                    "--time-scale",
                    repr(s.demo_time_scale),
                ],
                f"{s.url('demo')}/healthz",
                f"{s.url('demo')}/docs",
                "demo AI service",
                env=demo_env(s),
            )
        )
    parts.append(
        Component(
            "exporter",
            [
                *own,
                "exporter",
                "--host",
                s.host,
                "--port",
                str(s.ports.exporter),
                "--memory-growth-window",
                repr(s.memory_growth_window),
                "--collectors",
                ",".join(exporter_collectors(s)),
                # Files, not URLs: the exporter reads them, the process list shows paths only.
                *(
                    arg
                    for name in ("redis_url", "postgres_url")
                    if getattr(s, name) is not None
                    for arg in (
                        f"--{name.replace('_', '-')}-file",
                        str(url_file(s, name).resolve()),
                    )
                ),
            ],
            f"{s.url('exporter')}/metrics",
            f"{s.url('exporter')}/metrics",
            "standalone exporter (host, GPU)",
            watch="demo" if s.run_demo else None,
        )
    )
    resend = [f"--rules.alert.resend-delay={s.alert_resend_delay}"] if s.alert_resend_delay else []
    parts.append(
        Component(
            "prometheus",
            [find_binary("prometheus", package="prometheus"),
             f"--config.file={config / 'prometheus.yml'}",
             f"--storage.tsdb.path={data / 'prometheus'}",
             f"--web.listen-address={listen['prometheus']}",
             "--web.enable-lifecycle", *resend],
            f"{s.url('prometheus')}/-/ready",
            s.url("prometheus"),
            "Prometheus",
        )
    )  # fmt: skip
    return parts
