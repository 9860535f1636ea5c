"""What the stack looks like from Prometheus: targets up, alerts firing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class StackStatus:
    targets_up: int
    targets_total: int
    down: tuple[str, ...]  # job names of targets that are not up
    firing: tuple[str, ...]  # "AlertName (severity)"

    def line(self) -> str:
        state = f"targets up {self.targets_up}/{self.targets_total}"
        if self.down:
            state += f" (down: {', '.join(self.down)})"
        return state + " · firing: " + (", ".join(self.firing) if self.firing else "none")


def _get(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def read_status(prometheus_url: str, timeout: float = 2.0) -> StackStatus | None:
    """None when Prometheus does not answer (it may be restarting)."""
    try:
        targets = _get(f"{prometheus_url}/api/v1/targets?state=active", timeout)["data"]
        alerts = _get(f"{prometheus_url}/api/v1/alerts", timeout)["data"]["alerts"]
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return None
    active = targets.get("activeTargets", [])
    down = sorted({t["labels"].get("job", "?") for t in active if t.get("health") != "up"})
    firing = sorted(
        f"{a['labels'].get('alertname', '?')} ({a['labels'].get('severity', '-')})"
        for a in alerts
        if a.get("state") == "firing"
    )
    return StackStatus(
        targets_up=sum(1 for t in active if t.get("health") == "up"),
        targets_total=len(active),
        down=tuple(down),
        firing=tuple(firing),
    )
