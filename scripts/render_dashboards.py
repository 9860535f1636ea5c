"""Render every dashboard to docs/images/dashboard-<name>.png from real data.

Starts the local stack (demo service, exporter, Prometheus with the generated rules,
Alertmanager) with 1 s scrapes, drives HTTP and WebSocket traffic at the demo for a few
minutes while switching faults on and off, then draws each dashboard over that window:

    .venv/bin/python scripts/render_dashboards.py --report docs/report-example

(``--minutes 4`` and ``--out docs/images`` by default). The stack is the default one, with a
Redis and a PostgreSQL of its own, so every panel has data; the GPU panels stay empty
without a GPU. ``--report DIR`` also writes the example report over the same window.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.cli.main import main as inferwatch
from inferwatch.dashboards import build_all
from inferwatch.dashboards.render import render_dashboard

# The live stack and the traffic driver are the test suite's harness, not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.live import live_stack
from tests.support.traffic import Traffic

# (share of the run, faults) in order: healthy, a bad model release (errors above the warning
# level, slower responses), flaky streaming, hung generations and failing model loads, then
# recovery.
SCHEDULE: tuple[tuple[float, dict[str, float]], ...] = (
    (0.25, {}),
    (0.35, {"error_rate": 0.08, "added_latency_seconds": 0.25}),
    (
        0.25,
        {
            "websocket_failure_rate": 0.15,
            "timeout_rate": 0.05,
            "timeout_seconds": 0.5,
            "model_load_failure_rate": 0.3,
        },
    ),
    (0.15, {}),
)
VARIABLES = {
    "overview": {"job": "demo"},
    "streaming": {"job": "demo"},
    "models": {},
    "pools": {},
    "resources": {"job": "inferwatch-exporter"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the run")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="PNG folder")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="also write `inferwatch report` over the same window here (docs/report-example)",
    )
    args = parser.parse_args(argv)
    # A plain `kill` must still stop the stack's processes: exit through the `with` blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    specs = build_all(load_thresholds())
    with (
        tempfile.TemporaryDirectory(prefix="inferwatch-render-") as data_dir,
        live_stack(Path(data_dir)) as stack,
    ):
        url = stack.settings.url("prometheus")
        start = time.time()
        with Traffic(stack.settings.url("demo")) as traffic:
            for share, faults in SCHEDULE:
                traffic.reset_faults()
                if faults:
                    traffic.set_faults(**faults)
                print(
                    f"faults {faults or 'off'} for {share * args.minutes:.1f} min", file=sys.stderr
                )
                time.sleep(share * args.minutes * 60)  # the run is the point: wall time
            traffic.reset_faults()
            print(f"requests: {dict(traffic.sent)}", file=sys.stderr)
        end = time.time()
        for name, spec in specs.items():
            out = args.out / f"dashboard-{name}.png"
            render_dashboard(spec, url, start, end, out, variables=VARIABLES[name])
            print(f"wrote {out}", file=sys.stderr)
        if args.report is not None:
            window = ["--start", f"{start:.0f}", "--end", f"{end:.0f}"]
            report = ["report", "--prometheus", url, *window, "--out", str(args.report)]
            status = inferwatch([*report, "--format", "json,md,html", "--check"])
            print(f"wrote {args.report} (--check exit status {status})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
