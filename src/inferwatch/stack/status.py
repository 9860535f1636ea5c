"""What the stack looks like from Prometheus: targets up, backends reachable, alerts firing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inferwatch.stack.prometheus_api import Prometheus, QueryError
from inferwatch.stack.prometheus_config import JOB_EXPORTER

HEARTBEAT = "Watchdog"  # always firing while rules, Prometheus and Alertmanager work


@dataclass(frozen=True)
class StackStatus:
    targets_up: int
    targets_total: int
    down: tuple[str, ...]  # job names of targets whose last scrape failed
    waiting: tuple[str, ...]  # job names of targets not scraped yet (health "unknown")
    firing: tuple[str, ...]  # "AlertName (severity)", the heartbeat excepted
    heartbeat: bool = False  # the Watchdog fires
    # Backends the demo uses, as the exporter (connecting with the same URLs) reports them.
    unreachable: tuple[str, ...] = ()
    unreported: tuple[str, ...] = ()  # no figure from the exporter yet

    @property
    def all_up(self) -> bool:
        """Every target scraped and up, every backend reachable."""
        return (
            bool(self.targets_total)
            and self.targets_up == self.targets_total
            and not (self.unreachable or self.unreported)
        )

    def line(self) -> str:
        # Prometheus answers a moment before it has loaded its scrape configuration.
        state = (
            f"targets up {self.targets_up}/{self.targets_total}"
            if self.targets_total
            else ("no targets loaded yet")
        )
        problems = [f"down: {', '.join(self.down)}"] if self.down else []
        if self.waiting:
            problems.append(f"waiting for first scrape: {', '.join(self.waiting)}")
        if problems:
            state += f" ({'; '.join(problems)})"
        backends = [f"{name} unreachable" for name in self.unreachable]
        backends += [f"{name} not reported yet" for name in self.unreported]
        if backends:
            state += f" · backends: {', '.join(backends)}"
        # The Watchdog fires for as long as everything works: named apart, so that "none"
        # means no alert, and its absence reads as the problem it is.
        firing = ", ".join(self.firing)
        if self.heartbeat:
            firing = (
                f"{firing}, besides the Watchdog heartbeat"
                if firing
                else "none besides the Watchdog heartbeat"
            )
        else:
            firing = f"{firing or 'none'} (no Watchdog heartbeat yet)"
        return f"{state} · firing: {firing}"


def _backend_figures(prometheus: Prometheus) -> dict[str, float]:
    """backend -> the exporter's last ``inferwatch_<backend>_up``."""
    promql = f'{{__name__=~"inferwatch_(redis|postgres)_up",job="{JOB_EXPORTER}"}}'
    found = {}
    for sample in prometheus.query(promql):
        name = sample["metric"]["__name__"].removeprefix("inferwatch_").removesuffix("_up")
        found[name] = float(sample["value"][1])
    return found


def read_status(
    prometheus_url: str, backends: Sequence[str] = (), timeout: float = 2.0
) -> StackStatus | None:
    """None when Prometheus does not answer (it may be restarting). ``backends``: those whose
    reachability the exporter reports (``redis``, ``postgres``)."""
    prometheus = Prometheus(prometheus_url, timeout=timeout)
    try:
        active = prometheus.targets("active")
        alerts = prometheus.alerts()
        figures = _backend_figures(prometheus) if backends else {}
    except (QueryError, ValueError, KeyError, TypeError):
        return None

    def jobs(health: str) -> tuple[str, ...]:
        return tuple(
            sorted({t["labels"].get("job", "?") for t in active if t.get("health") == health})
        )

    firing = [a["labels"] for a in alerts if a.get("state") == "firing"]
    return StackStatus(
        targets_up=len([t for t in active if t.get("health") == "up"]),
        targets_total=len(active),
        down=jobs("down"),
        waiting=jobs("unknown"),
        firing=tuple(
            sorted(
                f"{labels.get('alertname', '?')} ({labels.get('severity', '-')})"
                for labels in firing
                if labels.get("alertname") != HEARTBEAT
            )
        ),
        heartbeat=any(labels.get("alertname") == HEARTBEAT for labels in firing),
        unreachable=tuple(b for b in backends if figures.get(b) == 0),
        unreported=tuple(b for b in backends if b not in figures),
    )
