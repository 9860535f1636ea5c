"""The HA topology's own view of itself: each Prometheus replica, each clustered
Alertmanager and the long-term store asked directly, since a dead replica cannot say so
through its own API, and the status line read from the other replica must still name it."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from inferwatch.stack.prometheus_api import Prometheus
from inferwatch.stack.settings import StackSettings
from inferwatch.stack.status import StackStatus

# The port names (of HAPorts and Ports) of each replicated part, in start order.
PROMETHEUS_REPLICAS = ("prometheus", "prometheus_2")
ALERTMANAGER_PEERS = ("alertmanager", "alertmanager_2")


@dataclass(frozen=True)
class HAStatus(StackStatus):
    """:class:`StackStatus` with the HA parts named at the end of its line."""

    parts: tuple[str, ...] = ()

    def line(self) -> str:
        return " · ".join((super().line(), *self.parts))

    @classmethod
    def of(cls, status: StackStatus, parts: tuple[str, ...]) -> HAStatus:
        fields = {f.name: getattr(status, f.name) for f in dataclasses.fields(StackStatus)}
        return cls(**fields, parts=parts)


def _get(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def _answers(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors
        return False


def cluster_peers(alertmanager_url: str, timeout: float = 2.0) -> int | None:
    """How many members (itself included) an Alertmanager's cluster has as it sees it; None
    when it does not answer. Its /api/v2/status lists the members it hears from: a peer
    killed drops out once the gossip's probes have failed, a restarted one is back once it
    has joined again."""
    try:
        cluster = _get(f"{alertmanager_url}/api/v2/status", timeout)["cluster"]
        return len(cluster.get("peers") or [])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def read_ha_parts(settings: StackSettings, timeout: float = 2.0) -> tuple[str, ...]:
    """One phrase per replicated part: how many Prometheus replicas are ready, how many
    Alertmanagers answer and how large each sees its cluster, whether the store is up."""
    ready = sum(Prometheus(settings.url(name), timeout).ready() for name in PROMETHEUS_REPLICAS)
    peers = [cluster_peers(settings.url(name), timeout) for name in ALERTMANAGER_PEERS]
    up = [found for found in peers if found is not None]
    cluster = f", cluster peers {'/'.join(map(str, up))}" if up else ""
    store = "up" if _answers(f"{settings.url('victoria_metrics')}/health", timeout) else "down"
    return (
        f"prometheus {ready}/{len(PROMETHEUS_REPLICAS)} ready",
        f"alertmanager {len(up)}/{len(ALERTMANAGER_PEERS)} up{cluster}",
        f"victoria-metrics {store}",
    )
