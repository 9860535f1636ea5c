"""Everything the local stack is configured by, in one validated place."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from inferwatch.alerts import units
from inferwatch.config import check_backend_url, check_http_url, check_port

# Duration settings, each with whether zero is allowed (an Alertmanager group may notify at
# once; nothing else may happen every 0 s: Prometheus would read a 0s interval as its 1m
# default).
_DURATIONS = {
    "scrape_interval": False,
    "evaluation_interval": False,
    "group_wait": True,
    "group_interval": False,
    "repeat_interval": False,
    "alert_resend_delay": False,
}
# Backends the demo uses and the exporter reports on (each with a `<backend>_url` setting).
BACKENDS = ("redis", "postgres")
# What the stack can run several replicas of (a `<kind>s` setting each: demos, exporters).
FLEET = ("demo", "exporter")
# VictoriaMetrics's -retentionPeriod: months without a suffix.
_RETENTION = re.compile(r"[1-9][0-9]*[hdwy]?")


@dataclass(frozen=True)
class Ports:
    prometheus: int = 9090
    alertmanager: int = 9093
    alert_sink: int = 9095
    demo: int = 8000
    exporter: int = 9841

    def items(self) -> list[tuple[str, int]]:
        return [(name, getattr(self, name)) for name in self.__dataclass_fields__]


@dataclass(frozen=True)
class HAPorts:
    """The ports only the HA topology (``StackSettings.ha``) listens on: the second
    Prometheus and Alertmanager, both Alertmanagers' gossip (TCP and UDP, the same number)
    and the long-term store both Prometheus replicas write to."""

    prometheus_2: int = 9092
    alertmanager_2: int = 9096
    alertmanager_cluster: int = 9094
    alertmanager_2_cluster: int = 9097
    victoria_metrics: int = 8428

    def items(self) -> list[tuple[str, int]]:
        return [(name, getattr(self, name)) for name in self.__dataclass_fields__]


@dataclass(frozen=True)
class StackSettings:
    data_dir: Path = Path(".inferwatch")
    host: str = "127.0.0.1"
    ports: Ports = field(default_factory=Ports)
    # Monitor the user's own service instead of (or besides) the demo: host:port targets.
    service_targets: tuple[str, ...] = ()
    service_job: str = "ai-service"
    # A protected service's /metrics: Prometheus reads the bearer token, or the basic-auth
    # password, from these files on each scrape; only their paths reach its configuration.
    service_token_file: Path | None = None
    service_username: str | None = None
    service_password_file: Path | None = None
    # A Grafana with inferwatch's dashboards, for the alerts' dashboard_url; the stack runs
    # none, so without it the alerts carry no dashboard link (their runbook_url stays).
    grafana_url: str | None = None
    run_demo: bool = True
    demo_time_scale: float = 1.0
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    # Thresholds overlays (YAML) merged over the packaged defaults when rules are generated.
    thresholds: tuple[Path, ...] = ()
    # Multiplies every alert's `for:` — e.g. 0.05 in end-to-end tests — without editing files.
    for_scale: float = 1.0
    # Multiplies every range selector of the rules ([5m] -> [30s] at 0.1), never below two
    # scrape intervals, so that a fast deployment also resolves fast; rule names keep theirs.
    window_scale: float = 1.0
    # Alertmanager timings; the defaults are production values.
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None
    # How often Prometheus re-sends a firing alert (its --rules.alert.resend-delay, 1m when
    # None): also how soon an Alertmanager that was down hears of alerts already firing.
    alert_resend_delay: str | None = None
    startup_timeout: float = 60.0
    # Window of the exporter's memory-growth slope (what the leak alert reads).
    memory_growth_window: float = 600.0
    # The exporter's collectors (its --collectors); None: host, GPU where NVIDIA's driver is
    # installed, and Redis/PostgreSQL when their URLs are given.
    exporter_collectors: tuple[str, ...] | None = None
    # Real Redis and PostgreSQL for the demo (its cache and database) and the exporter's
    # server views. They may carry passwords: kept out of repr, command lines and messages.
    redis_url: str | None = field(default=None, repr=False)
    postgres_url: str | None = field(default=None, repr=False)
    # The backends the stack runs itself for the demo where no URL above names the user's
    # (a real Redis and PostgreSQL of its own: see inferwatch.stack.backends); () runs
    # neither, and the demo then keeps its cache in memory and its database in SQLite.
    embedded_backends: tuple[str, ...] = BACKENDS
    # The HA topology: two Prometheus replicas (external label `replica`, dropped from the
    # alerts they send and the samples they remote_write), two Alertmanagers gossiping over
    # `ha_ports`, and one VictoriaMetrics that both write to and that keeps one sample per
    # scrape interval of each series.
    ha: bool = False
    ha_ports: HAPorts = field(default_factory=HAPorts)
    # Alertmanager's --cluster.peer-timeout (15s when None): how long the second of two
    # clustered Alertmanagers waits for the first to notify before it notifies itself, so
    # also how late a notification is when the first one is dead.
    peer_timeout: str | None = None
    # How long VictoriaMetrics keeps samples (its -retentionPeriod: a number of months, or
    # with a suffix h, d, w or y; its shortest is a day).
    long_term_retention: str = "1d"
    # Where the alert sink also posts every notification it receives (its --forward).
    alert_sink_forward: tuple[str, ...] = ()
    # A fleet: this many demo replicas and exporters, each its own `instance` of its job
    # (the demo's replicas share its job, as replicas behind one service do), on
    # consecutive ports from ports.demo and ports.exporter.
    demos: int = 1
    exporters: int = 1

    def __post_init__(self) -> None:
        for name, zero_allowed in _DURATIONS.items():
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, _duration(name, value, zero_allowed))
        unknown = sorted(set(self.embedded_backends) - set(BACKENDS))
        if unknown:
            raise ValueError(f"no such backend {unknown}; the stack can run {BACKENDS}")
        for name, port in self.ports.items():
            # Every component is told the others' ports before it starts: none can be 0.
            check_port(port, f"--{name.replace('_', '-')}-port", zero_allowed=False)
        for kind in FLEET:
            count = getattr(self, f"{kind}s")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"--{kind}s must be a whole number of at least 1, got {count!r}")
            for port in self.replica_ports(kind)[1:]:
                check_port(
                    port, f"--{kind}-port (+{count - 1} for the {kind}s)", zero_allowed=False
                )
        for name, port in self.ha_ports.items() if self.ha else ():
            check_port(port, f"--{name.replace('_', '-')}-port", zero_allowed=False)
        owners: dict[int, list[str]] = {}
        for name, port in self.all_ports():
            owners.setdefault(port, []).append(name)
        shared = {port: names for port, names in owners.items() if len(names) > 1}
        if shared:
            clashes = "; ".join(f"{port} for {' and '.join(n)}" for port, n in shared.items())
            raise ValueError(f"every component needs its own port, got {clashes}")
        if self.peer_timeout is not None:
            object.__setattr__(
                self, "peer_timeout", _duration("peer_timeout", self.peer_timeout, False)
            )
        if not _RETENTION.fullmatch(self.long_term_retention):
            raise ValueError(
                "--long-term-retention must be a number of months or end in h, d, w or y, "
                f"got {self.long_term_retention!r}"
            )
        for url in self.alert_sink_forward:
            check_http_url(url, "each URL the alert sink forwards to")
        for target in self.service_targets:
            parsed = urlsplit(f"//{target}")
            if not parsed.hostname or parsed.port is None or parsed.username or parsed.path:
                raise ValueError(f"--service must be host:port, got {target!r}")
        _check_service_auth(self)
        if self.grafana_url is not None:
            check_http_url(self.grafana_url, "--grafana-url")
        if not self.run_demo and not self.service_targets:
            raise ValueError("nothing to monitor: give --service host:port or keep the demo")
        if self.for_scale <= 0:
            raise ValueError(f"for_scale must be positive, got {self.for_scale}")
        if not 0 < self.window_scale <= 1:
            # Longer windows than production would only delay every alert.
            raise ValueError(f"window_scale must be in (0, 1], got {self.window_scale}")
        if self.memory_growth_window <= 0:
            raise ValueError(
                f"memory growth window must be positive, got {self.memory_growth_window}"
            )
        if self.exporter_collectors is not None and not all(
            c and c.isidentifier() for c in self.exporter_collectors
        ):
            raise ValueError(f"collector names must be words, got {self.exporter_collectors}")
        if self.demo_time_scale <= 0:
            raise ValueError(f"demo time scale must be positive, got {self.demo_time_scale}")
        for backend in BACKENDS:
            if (url := self.url_of(backend)) is not None:
                # Encoded once for every child: with an unencoded `@` in a password the demo
                # (SQLAlchemy) and libpq would connect to the rest of it as a host.
                checked = check_backend_url(backend, url, f"--{backend}-url")
                object.__setattr__(self, f"{backend}_url", checked)

    @property
    def backends_to_run(self) -> tuple[str, ...]:
        """The embedded backends without a URL of the user's: those the stack starts (for
        the demo: without it nothing would use them)."""
        if not self.run_demo:
            return ()
        return tuple(b for b in BACKENDS if b in self.embedded_backends and not self.url_of(b))

    def all_ports(self) -> list[tuple[str, int]]:
        """Every port this topology listens on: :attr:`ports`, the fleet's further replicas
        (named as the first one, whose port moves them all), and :attr:`ha_ports` in HA."""
        fleet = [(kind, port) for kind in FLEET for port in self.replica_ports(kind)[1:]]
        return [*self.ports.items(), *fleet, *(self.ha_ports.items() if self.ha else ())]

    def replica_ports(self, kind: str) -> list[int]:
        """The ports of every replica of ``kind`` (``demo``, ``exporter``), the first one's
        port first."""
        first: int = getattr(self.ports, kind)
        return [first + index for index in range(getattr(self, f"{kind}s"))]

    def url_of(self, backend: str) -> str | None:
        url: str | None = getattr(self, f"{backend}_url")
        return url

    def url(self, component: str) -> str:
        """The base URL of a component, by its port's name (``prometheus``, and in HA also
        ``prometheus_2``, ``alertmanager_2``, ``victoria_metrics``)."""
        ports = self.ha_ports if component in HAPorts.__dataclass_fields__ else self.ports
        return f"http://{self.host}:{getattr(ports, component)}"

    @property
    def config_dir(self) -> Path:
        return self.data_dir / "config"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


def _duration(name: str, value: str, zero_allowed: bool) -> str:
    """``value`` in Prometheus's own spelling (``1.5s`` -> ``1500ms``), checked with the
    project's one duration grammar (:mod:`inferwatch.alerts.units`)."""
    flag = f"--{name.replace('_', '-')}"
    least = "a non-negative" if zero_allowed else "a positive"
    try:
        seconds = units.parse_duration(value)
        text = units.format_duration(seconds)
    except ValueError:
        raise ValueError(
            f"{flag} must be {least} duration like 15s or 1m30s, got {value!r}"
        ) from None
    if seconds < 0 or (seconds == 0 and not zero_allowed):
        raise ValueError(f"{flag} must be {least} duration like 15s or 1m30s, got {value!r}")
    return text


def _check_service_auth(settings: StackSettings) -> None:
    """Credentials only with a --service to use them on, of one kind, in readable files."""
    from inferwatch.exposition.auth import read_secret_file

    files = {
        "--service-token-file": settings.service_token_file,
        "--service-password-file": settings.service_password_file,
    }
    given = [flag for flag, path in files.items() if path is not None]
    if settings.service_username is not None:
        given.append("--service-username")
    if not given:
        return
    if not settings.service_targets:
        raise ValueError(f"{given[0]} needs --service HOST:PORT to scrape with it")
    if settings.service_token_file is not None and len(given) > 1:
        raise ValueError("--service-token-file and basic auth exclude each other")
    if (settings.service_username is None) != (settings.service_password_file is None):
        raise ValueError("basic auth needs both --service-username and --service-password-file")
    for flag, path in files.items():
        if path is not None:
            read_secret_file(path, flag.removeprefix("--"))  # fail now, not as a down target
