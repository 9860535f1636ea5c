"""``inferwatch report`` without ``--job`` reports the monitored services only.

The local stack scrapes inferwatch's own alert sink beside the demo; its routes must stay
out of the route table and the readiness criteria unless ``--job`` asks for them.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from inferwatch.cli.main import main
from inferwatch.stack import Stack
from inferwatch.stack.prometheus_api import Prometheus
from inferwatch.stack.prometheus_config import JOB_ALERT_SINK, JOB_DEMO
from tests.support import wait_until
from tests.support.live import settings as fast_settings

pytestmark = pytest.mark.skipif(
    not (
        shutil.which("prometheus")
        and (shutil.which("alertmanager") or shutil.which("prometheus-alertmanager"))
    ),
    reason="needs the prometheus and prometheus-alertmanager Debian packages",
)

SINK_REQUESTS = 7
DEMO_REQUESTS = 5
SINK_ROUTE = ("GET", "/notifications")
DEMO_ROUTE = ("POST", "/v1/audio/generate")


@dataclass
class Window:
    prometheus: Prometheus
    start: float
    end: float


def _scraped_after(prometheus: Prometheus, job: str, t: float) -> bool:
    found = prometheus.query(f'timestamp(up{{job="{job}"}})')
    return bool(found) and float(found[0]["value"][1]) > t


def _every_job_scraped_after(prometheus: Prometheus, t: float) -> None:
    for job in (JOB_DEMO, JOB_ALERT_SINK):
        wait_until(lambda job=job: _scraped_after(prometheus, job, t), 20, interval=0.2)


@pytest.fixture(scope="module")
def window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Window]:
    with Stack(fast_settings(tmp_path_factory.mktemp("stack"))) as stack:
        prometheus = Prometheus(stack.settings.url("prometheus"))
        # Counter values at both ends of the window bracket exactly the requests sent here.
        _every_job_scraped_after(prometheus, time.time())
        start = time.time()
        with httpx.Client(base_url=stack.settings.url("alert_sink"), timeout=10) as sink:
            for _ in range(SINK_REQUESTS):
                sink.get("/notifications")  # its status does not matter: the route counts
        with httpx.Client(base_url=stack.settings.url("demo"), timeout=30) as demo:
            for n in range(DEMO_REQUESTS):
                body = {"prompt": f"rain {n}", "duration_seconds": 1}
                assert demo.post("/v1/audio/generate", json=body).status_code == 200
        stopped = time.time()
        _every_job_scraped_after(prometheus, stopped)
        yield Window(prometheus, start, time.time())


def report(window: Window, out: Path, *extra: str) -> dict:
    main(
        ["report", "--prometheus", window.prometheus.url, "--start", str(window.start),
         "--end", str(window.end), "--out", str(out), "--quiet", "--format", "json,md",
         "--no-charts", "--check", *extra]
    )  # fmt: skip
    return json.loads((out / "report.json").read_text())


def routes(data: dict) -> dict[tuple[str, str], int]:
    return {(r["method"], r["route"]): r["requests"] for r in data["figures"]["routes"]}


def test_the_default_report_is_of_the_monitored_services(window: Window, tmp_path: Path) -> None:
    data = report(window, tmp_path / "default")
    assert data["figures"]["window"]["job"] == JOB_DEMO
    found = routes(data)
    assert found[DEMO_ROUTE] == DEMO_REQUESTS
    assert SINK_ROUTE not in found and ("POST", "/alerts") not in found, sorted(found)
    lines = [r["line"] for r in data["check"]]
    assert lines and not [line for line in lines if "/notifications" in line], lines
    assert "/notifications" not in (tmp_path / "default" / "report.md").read_text()


def test_every_job_when_asked(window: Window, tmp_path: Path) -> None:
    found = routes(report(window, tmp_path / "all", "--job", ".*"))
    assert found[SINK_ROUTE] == SINK_REQUESTS and found[DEMO_ROUTE] == DEMO_REQUESTS
    sink_only = routes(report(window, tmp_path / "sink", "--job", JOB_ALERT_SINK))
    assert sink_only[SINK_ROUTE] == SINK_REQUESTS and DEMO_ROUTE not in sink_only


GPU_NOTE = (
    "Data only on a host with an NVIDIA GPU (the exporter's gpu collector); checked against a "
    "simulated GPU, not yet on real hardware."
)


def _narrow_axes() -> tuple[object, object]:
    """An axes the size of a dashboard's third-width panel, on a dashboard-wide figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15.36, 4), dpi=100)
    return fig, fig.add_axes((0.34, 0.1, 0.32, 0.8))


def test_a_no_data_note_stays_inside_its_panel() -> None:
    from inferwatch.dashboards.render import _no_data

    fig, ax = _narrow_axes()
    _no_data(ax, {"description": f"GPU utilization per device. {GPU_NOTE}"})
    renderer = fig.canvas.get_renderer()
    panel = ax.get_window_extent(renderer)
    texts = {t.get_text().replace("\n", " "): t.get_window_extent(renderer) for t in ax.texts}
    assert set(texts) == {"No data", GPU_NOTE}
    for text, box in texts.items():
        assert panel.x0 <= box.x0 and box.x1 <= panel.x1, (text, box, panel)
        assert panel.y0 <= box.y0 and box.y1 <= panel.y1, (text, box, panel)
