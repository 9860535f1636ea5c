"""The processes of the local stack: what runs, how it is started and how it is seen healthy."""

from __future__ import annotations

import ctypes.util
import http.client
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from inferwatch.alerts import units
from inferwatch.stack.configs import url_file
from inferwatch.stack.settings import StackSettings

APT_HINT = "install it with: sudo apt-get install -y {package} (or run ./scripts/bootstrap.sh)"
# True once a component serves: an HTTP 2xx, a Redis PONG, a PostgreSQL login.
Probe = Callable[[], bool]


@dataclass(frozen=True)
class Component:
    name: str
    command: list[str]
    address: str  # host:port it serves on, for messages
    ready: Probe
    ui_url: str  # what the banner shows for it (never a password)
    description: str
    # Another component whose process this one watches: its pid is appended as `--pid N`
    # once it runs (the exporter reports the demo's memory, where a leak would show).
    watch: str | None = None
    # The account it runs as when the runner is root (PostgreSQL refuses root).
    user: str | None = None
    # What stops it cleanly (PostgreSQL: SIGINT, its fast shutdown; SIGTERM would wait for
    # every client to leave).
    stop_signal: signal.Signals = signal.SIGTERM


def http_ready(url: str, timeout: float = 2.0) -> Probe:
    """A probe that ``GET url`` answers 2xx (straight to the address: no proxy settings)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "") or "/"

    def ready() -> bool:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        try:
            conn.request("GET", path)
            return 200 <= conn.getresponse().status < 300
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    return ready


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


def _url_files(s: StackSettings) -> list[str]:
    """``--redis-url-file F --postgres-url-file F`` for the backends configured: files, not
    URLs, so the process list shows paths, never a password."""
    return [
        arg
        for name in ("redis_url", "postgres_url")
        if getattr(s, name) is not None
        for arg in (f"--{name.replace('_', '-')}-file", str(url_file(s, name).resolve()))
    ]


def _served(s: StackSettings, name: str, path: str) -> tuple[str, Probe]:
    """(address, probe of ``path``) of the component listening on the port of ``name``."""
    return s.url(name).removeprefix("http://"), http_ready(f"{s.url(name)}{path}")


def components(settings: StackSettings, backends: Sequence[Component] = ()) -> list[Component]:
    """In start order: receivers before senders, backends before their clients, targets
    before the scraper. ``backends``: the stack's own Redis and PostgreSQL, if any."""
    s, data = settings, settings.data_dir.resolve()
    config = s.config_dir.resolve()
    listen = {name: f"{s.host}:{port}" for name, port in s.ports.items()}
    own = inferwatch_command()
    parts = [
        Component(
            "alert-sink",
            [*own, "alert-sink", "--host", s.host, "--port", str(s.ports.alert_sink),
             "--store", str(data / "alert-sink" / "notifications.jsonl"),
             *(arg for url in s.alert_sink_forward for arg in ("--forward", url))],
            *_served(s, "alert_sink", "/healthz"),
            f"{s.url('alert_sink')}/notifications",
            "notification receiver",
        ),
        *(_alertmanagers(s) if s.ha else [Component(
            "alertmanager",
            [find_binary(
                "alertmanager", "prometheus-alertmanager", package="prometheus-alertmanager"
             ),
             f"--config.file={config / 'alertmanager.yml'}",
             f"--storage.path={data / 'alertmanager'}",
             f"--web.listen-address={listen['alertmanager']}",
             "--cluster.listen-address="],  # a single instance: no gossip port to collide on
            *_served(s, "alertmanager", "/-/ready"),
            s.url("alertmanager"),
            "Alertmanager",
        )]),
        *backends,
    ]  # fmt: skip
    demos = s.replica_ports("demo") if s.run_demo else []
    for index, port in enumerate(demos):
        url = f"http://{s.host}:{port}"
        parts.append(
            Component(
                replica_name("demo", index),
                [*own, "demo", "--host", s.host, "--port", str(port),
                 "--time-scale", repr(s.demo_time_scale), *_url_files(s)],
                f"{s.host}:{port}",
                http_ready(f"{url}/healthz"),
                f"{url}/docs",
                "demo AI service" + (f" (replica {index + 1} of {len(demos)})" if index else ""),
            )
        )  # fmt: skip
    collectors = exporter_collectors(s)
    exporters = s.replica_ports("exporter")
    for index, port in enumerate(exporters):
        url = f"http://{s.host}:{port}"
        # Each exporter watches the demo replica of its rank, where there is one.
        watch = replica_name("demo", index) if index < len(demos) else None
        parts.append(
            Component(
                replica_name("exporter", index),
                [*own, "exporter", "--host", s.host, "--port", str(port),
                 "--memory-growth-window", repr(s.memory_growth_window),
                 "--collectors", ",".join(collectors), *_url_files(s)],
                f"{s.host}:{port}",
                http_ready(f"{url}/metrics"),
                f"{url}/metrics",
                f"standalone exporter ({', '.join(collectors)})"
                + (f" (replica {index + 1} of {len(exporters)})" if index else ""),
                watch=watch,
            )
        )  # fmt: skip
    if s.ha:
        parts.append(_victoria_metrics(s))  # the receiver of both replicas' remote_write
    parts.append(_prometheus(s, "prometheus", "prometheus", "Prometheus"))
    if s.ha:
        parts.append(_prometheus(s, "prometheus-2", "prometheus_2", "Prometheus (replica 2)"))
    return parts


def replica_name(kind: str, index: int) -> str:
    """The component name of replica ``index`` (0-based): ``demo``, ``demo-2``, ..."""
    return kind if index == 0 else f"{kind}-{index + 1}"


def _prometheus(s: StackSettings, name: str, port: str, description: str) -> Component:
    """One Prometheus: ``name`` is also its config file's and its data directory's name."""
    resend = [f"--rules.alert.resend-delay={s.alert_resend_delay}"] if s.alert_resend_delay else []
    return Component(
        name,
        [find_binary("prometheus", package="prometheus"),
         f"--config.file={s.config_dir.resolve() / f'{name}.yml'}",
         f"--storage.tsdb.path={s.data_dir.resolve() / name}",
         f"--web.listen-address={s.url(port).removeprefix('http://')}",
         "--web.enable-lifecycle", *resend],
        *_served(s, port, "/-/ready"),
        s.url(port),
        description,
    )  # fmt: skip


def _alertmanagers(s: StackSettings) -> list[Component]:
    """Two Alertmanagers gossiping over loopback: both receive every alert from both
    Prometheus replicas, and the notification log they share makes one of them notify."""
    binary = find_binary(
        "alertmanager", "prometheus-alertmanager", package="prometheus-alertmanager"
    )
    gossip = [
        f"{s.host}:{s.ha_ports.alertmanager_cluster}",
        f"{s.host}:{s.ha_ports.alertmanager_2_cluster}",
    ]
    peer_timeout = [f"--cluster.peer-timeout={s.peer_timeout}"] if s.peer_timeout else []
    found = []
    for index, (name, port) in enumerate(
        (("alertmanager", "alertmanager"), ("alertmanager-2", "alertmanager_2"))
    ):
        found.append(
            Component(
                name,
                [binary,
                 f"--config.file={s.config_dir.resolve() / 'alertmanager.yml'}",
                 f"--storage.path={s.data_dir.resolve() / name}",
                 f"--web.listen-address={s.url(port).removeprefix('http://')}",
                 f"--cluster.listen-address={gossip[index]}",
                 # Without it Alertmanager looks for a private address to advertise and
                 # finds none on loopback.
                 f"--cluster.advertise-address={gossip[index]}",
                 f"--cluster.peer={gossip[1 - index]}", *peer_timeout],
                *_served(s, port, "/-/ready"),
                s.url(port),
                f"Alertmanager (cluster peer {index + 1} of 2)",
            )
        )  # fmt: skip
    return found


def go_duration(duration: str) -> str:
    """A Prometheus duration as a Go one (``1d`` is no Go duration): whole milliseconds."""
    return f"{round(units.parse_duration(duration) * 1000)}ms"


def _victoria_metrics(s: StackSettings) -> Component:
    """Single-node VictoriaMetrics: the long-term store both replicas remote_write to. Its
    ``-dedup.minScrapeInterval`` of one scrape interval keeps one sample of every interval
    of a series, so the pair's two sample streams are stored as one."""
    scrape = units.parse_duration(s.scrape_interval)
    return Component(
        "victoria-metrics",
        [find_binary("victoria-metrics", package="victoria-metrics"),
         f"-httpListenAddr={s.url('victoria_metrics').removeprefix('http://')}",
         f"-storageDataPath={s.data_dir.resolve() / 'victoria-metrics'}",
         f"-retentionPeriod={s.long_term_retention}",
         f"-dedup.minScrapeInterval={go_duration(s.scrape_interval)}",
         # How recent a sample may be and still be left out of query results (30s by
         # default): a scrape, plus the batch deadline of remote_write, plus as much again.
         f"-search.latencyOffset={round(scrape * 2 * 1000 + 1000)}ms"],
        *_served(s, "victoria_metrics", "/health"),
        f"{s.url('victoria_metrics')}/vmui",
        "VictoriaMetrics (long-term store)",
    )  # fmt: skip
