"""The README's fault-scenario table, from the results ``tests/test_e2e_faults.py`` records.

The results are measurements, committed as ``docs/e2e-results.json``; the table is generated
from them like any other artefact, so ``inferwatch generate --check`` tells when the README
and the recorded run disagree. Re-record and regenerate with :data:`COMMAND`.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

RESULTS = "docs/e2e-results.json"
REGION = "README.md#fault-scenarios"
COMMAND = (
    f"INFERWATCH_E2E_RESULTS={RESULTS} .venv/bin/pytest tests/test_e2e_faults.py && "
    ".venv/bin/inferwatch generate"
)
INTRO = (
    "`tests/test_e2e_faults.py` runs the local stack with the demo under steady traffic, "
    "switches each fault on, waits for the alert's notification at the alert sink, switches "
    "the fault off and waits for the resolved notification. Times are measured from the "
    "fault switch to the notification's arrival at the receiver, on a machine with {cpus} "
    "CPU cores, with every interval shortened as listed below the table."
)
WIDTH = 95  # the README's prose width
# The checkout this module sits in (src/inferwatch/generation/ -> the project root).
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _wrap(text: str) -> str:
    return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def intervals(settings: dict[str, Any]) -> str:
    s = settings
    return (
        f"Intervals: scrape and rule evaluation {s['scrape_interval']}, every `for:` scaled "
        f"by {s['for_scale']:g} and every range window by {s['window_scale']:g} (at least two "
        f"scrape intervals; `--for-scale`/`--window-scale` of `inferwatch stack up`), "
        f"Alertmanager group_wait {s['group_wait']}, group_interval {s['group_interval']}, "
        f"repeat_interval {s['repeat_interval']}, Prometheus alert resend delay "
        f"{s['alert_resend_delay']}, memory-growth window {s['memory_growth_window']:g} s, "
        f"demo time scale {s['demo_time_scale']:g}."
    )


def table(results: dict[str, Any]) -> str:
    """The Markdown table: one row per scenario, then the clean run.

    >>> print(table({"scenarios": [{"scenario": "Exporter down", "alert": "TargetDown",
    ...     "severity": "critical", "receiver": "pager", "to_notification": 4.25}]}))
    | Scenario | Alert | Severity | Receiver | Time to notification | Time to resolution |
    | --- | --- | --- | --- | ---: | ---: |
    | Exporter down | `TargetDown` | critical | pager | 4.2 s | - |
    """
    header = ["Scenario", "Alert", "Severity", "Receiver"]
    header += ["Time to notification", "Time to resolution"]
    lines = [_row(header), _row(["---"] * 4 + ["---:"] * 2)]
    for r in results["scenarios"]:
        scenario = f"{r['scenario']} ({r['fault']})" if r.get("fault") else r["scenario"]
        note = f" ({r['note']})" if r.get("note") else ""
        cells = [scenario, f"`{r['alert']}`", r["severity"], r["receiver"]]
        cells += [_seconds(r["to_notification"]) + note, _seconds(r.get("to_resolution"))]
        lines.append(_row(cells))
    clean = results.get("clean_run")
    if clean:
        fired = ", ".join(f"`{name}`" for name in clean["notified"]) or "nothing"
        run = f"Clean run, {clean['seconds']:g} s without a fault"
        lines.append(_row([run, f"{fired} only", "none", "heartbeat", "-", "-"]))
    return "\n".join(lines)


def section(results: dict[str, Any]) -> str:
    """The section's body: introduction, table, intervals and the command."""
    intro = INTRO.format(cpus=results.get("cpus") or "?")
    closing = f"{intervals(results['settings'])} Reproduce with `{COMMAND}`."
    return f"{_wrap(intro)}\n\n{table(results)}\n\n{_wrap(closing)}\n"


def files(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The README region, when the recorded results are there (in a checkout, not a wheel)."""
    path = root / RESULTS
    if not path.is_file():
        return {}
    return {REGION: section(json.loads(path.read_text(encoding="utf-8")))}
