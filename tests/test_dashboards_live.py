"""Every panel's query against a real Prometheus that scrapes the demo service (under HTTP
and WebSocket traffic, with clients that give up now and then) and the exporter, with the
generated recording and alert rules. Every panel must parse and return data.

The demo and the exporter run on real, password-protected Redis and PostgreSQL servers (the
demo's cache and database; the exporter's server views). Panels declared as
data-only-on-fault are made to fire by switching that fault on in the demo. There is no GPU
here: the GPU panels get their data from a second, in-process exporter whose gpu collector
runs on a simulated NVML (``tests/fakes/fake_nvml.py``, two GPUs), so they are verified
against the simulation only; a check on real hardware is still pending.
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
from inferwatch.dashboards.model import Panel
from inferwatch.dashboards.prometheus import substitute
from inferwatch.dashboards.render import render_dashboard
from inferwatch.exporters import Exporter, ExporterConfig, start_exporter
from inferwatch.stack import Stack
from inferwatch.stack.prometheus_api import Prometheus
from tests.fakes.fake_nvml import GIB, FakeGpu, FakeNvml
from tests.support import wait_until
from tests.support.live import live_stack
from tests.support.traffic import Traffic

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
GPU_JOB = "inferwatch-gpu-exporter"


@dataclass
class Live:
    prometheus: Prometheus
    traffic: Traffic
    started: float
    stack: Stack


@pytest.fixture(scope="module")
def gpu_exporter() -> Iterator[Exporter]:
    """An exporter with only the gpu collector, on a simulated NVML with two GPUs (the
    monkeypatch is undone when the module's tests end)."""
    gpus = [
        FakeGpu("GPU-00000000-1111-2222-3333-444444444444"),
        FakeGpu(
            "GPU-55555555-6666-7777-8888-999999999999",
            name="NVIDIA L4",
            utilization=80,
            memory_used=8 * GIB,
        ),
    ]
    with pytest.MonkeyPatch.context() as monkeypatch:
        FakeNvml(gpus).install(monkeypatch)
        exporter = start_exporter(ExporterConfig(host="127.0.0.1", port=0, collectors=("gpu",)))
        try:
            yield exporter
        finally:
            exporter.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, gpu_exporter: Exporter) -> Iterator[Live]:
    # The default stack, as `inferwatch stack up` runs it: with a Redis and a PostgreSQL of
    # its own for the demo and the exporter (only the GPU is simulated, by a second exporter).
    with live_stack(
        tmp_path_factory.mktemp("stack"),
        extra_targets=(f"127.0.0.1:{gpu_exporter.port}",),
        extra_job=GPU_JOB,
    ) as stack:
        prometheus = Prometheus(stack.settings.url("prometheus"))
        with Traffic(stack.settings.url("demo")) as traffic:
            yield Live(prometheus, traffic, time.monotonic(), stack)


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
    """Healthy-system panels, GPU panels (simulated NVML) included: all but the fault ones."""
    chosen = [(n, p) for n, p in PANELS if p.needs is None or p.needs.kind == "gpu"]
    assert any(p.needs for _, p in chosen), "the GPU panels are among them"
    remaining = SLOW_START - (time.monotonic() - live.started)
    wait_for_data(live, chosen, timeout=max(remaining, 20))


def test_every_panel_is_checked_for_data() -> None:
    """A new kind of `needs` must come with a way to make its panels show data here."""
    assert {p.needs.kind for _, p in PANELS if p.needs} <= {"fault", "gpu"}


def test_backend_passwords_stay_out_of_process_listings(live: Live) -> None:
    """The stack hands the URLs over by environment and 0600 files, never by argv."""
    from tests.support.backends import POSTGRES_PASSWORD, REDIS_PASSWORD

    for name in ("redis-url", "postgres-url"):
        assert (live.stack.settings.config_dir / name).stat().st_mode & 0o777 == 0o600
    for component in ("demo", "exporter"):
        pid = live.stack.supervisor.pid(component)
        assert pid is not None
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert REDIS_PASSWORD not in argv and POSTGRES_PASSWORD not in argv


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
