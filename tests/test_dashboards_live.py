"""Every panel's query against a real Prometheus that scrapes the demo service (under HTTP
and WebSocket traffic) and the exporter, with the generated recording and alert rules.

Panels declared as data-only-on-fault are made to fire by switching that fault on in the
demo; GPU panels are only parsed (no GPU here); panels over metrics the local stack does not
produce yet are parsed and must still be empty, so a stale declaration fails loudly.
"""

from __future__ import annotations

import shutil
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.dashboards import build_all
from inferwatch.dashboards.live import live_stack
from inferwatch.dashboards.model import Panel
from inferwatch.dashboards.prometheus import Prometheus, substitute
from inferwatch.dashboards.render import render_dashboard
from inferwatch.dashboards.traffic import Traffic
from tests.support import wait_until

pytestmark = pytest.mark.skipif(
    not (
        shutil.which("prometheus")
        and (shutil.which("alertmanager") or shutil.which("prometheus-alertmanager"))
    ),
    reason="needs the prometheus and prometheus-alertmanager Debian packages",
)

SPECS = build_all(load_thresholds())
PANELS = [(name, panel) for name, spec in SPECS.items() for panel in spec.panels()]
# Extra settings a fault needs to show within seconds (the default deadline is 30 s).
FAULT_EXTRAS = {"timeout_rate": {"timeout_seconds": 0.3}}
# Recording rules with 30m windows and the exporter's growth slope need its first minute.
SLOW_START = 90.0


@dataclass
class Live:
    prometheus: Prometheus
    traffic: Traffic
    started: float


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_stack(tmp_path_factory.mktemp("stack")) as stack:
        prometheus = Prometheus(stack.settings.url("prometheus"))
        with Traffic(stack.settings.url("demo")) as traffic:
            yield Live(prometheus, traffic, time.monotonic())


def empty_queries(prometheus: Prometheus, panel: Panel) -> list[str]:
    return [q.expr for q in panel.queries if not prometheus.query(substitute(q.expr))]


def wait_for_data(live: Live, chosen: list[tuple[str, Panel]], timeout: float) -> None:
    def missing() -> list[str]:
        return [
            f"{name}/{panel.title}: {expr}"
            for name, panel in chosen
            for expr in empty_queries(live.prometheus, panel)
        ]

    last: list[list[str]] = [[]]

    def done() -> bool:
        last[0] = missing()
        return not last[0]

    wait_until(done, timeout, interval=1.0, message=lambda: "data in:\n" + "\n".join(last[0]))


def test_every_query_parses(live: Live) -> None:
    for _, panel in PANELS:
        for query in panel.queries:
            live.prometheus.query(substitute(query.expr))  # raises QueryError with the reason
            live.prometheus.query(substitute(query.expr, {"job": "demo", "instance": "x"}))


FAULTS = sorted({p.needs.what for _, p in PANELS if p.needs and p.needs.kind == "fault"})


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_panels_show_their_fault(live: Live, fault: str) -> None:
    chosen = [
        (n, p) for n, p in PANELS if p.needs and p.needs.kind == "fault" and p.needs.what == fault
    ]
    setting = chosen[0][1].needs.setting  # type: ignore[union-attr]
    live.traffic.set_faults(**{fault: setting}, **FAULT_EXTRAS.get(fault, {}))
    try:
        wait_for_data(live, chosen, timeout=30)
    finally:
        live.traffic.reset_faults()


def test_every_other_panel_has_data(live: Live) -> None:
    chosen = [(n, p) for n, p in PANELS if p.needs is None]
    remaining = SLOW_START - (time.monotonic() - live.started)
    wait_for_data(live, chosen, timeout=max(remaining, 20))


def test_unwired_panels_are_still_empty(live: Live) -> None:
    """If this fails, the stack now produces these metrics: drop the panel's `needs`."""
    wired = [
        f"{name}/{panel.title}"
        for name, panel in PANELS
        if panel.needs
        and panel.needs.kind == "unwired"
        and len(empty_queries(live.prometheus, panel)) < len(panel.queries)
    ]
    assert not wired


def test_render_overview_png(live: Live, tmp_path: Path) -> None:
    end = time.time()
    out = render_dashboard(
        SPECS["overview"],
        live.prometheus.url,
        end - 120,
        end,
        tmp_path / "overview.png",
        variables={"job": "demo"},
    )
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 24 * 64 and height > 1000
