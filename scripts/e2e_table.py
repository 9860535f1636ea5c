"""The README's fault-scenario table, from the JSON that ``tests/test_e2e_faults.py`` writes.

    INFERWATCH_E2E_RESULTS=e2e.json .venv/bin/pytest tests/test_e2e_faults.py
    .venv/bin/python scripts/e2e_table.py e2e.json                    # print the table
    .venv/bin/python scripts/e2e_table.py e2e.json --readme README.md  # replace it there

``--readme`` rewrites only the body of the ``## Fault scenarios`` section (inserting the
section before ``## Extras`` when it is missing); every other section is left as it is.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

SECTION = "## Fault scenarios"
BEFORE = "## Extras"
COMMAND = (
    "INFERWATCH_E2E_RESULTS=e2e.json .venv/bin/pytest tests/test_e2e_faults.py && "
    ".venv/bin/python scripts/e2e_table.py e2e.json --readme README.md"
)
INTRO = (
    "`tests/test_e2e_faults.py` runs the local stack with the demo under steady traffic, "
    "switches each fault on, waits for the alert's notification at the alert sink, switches "
    "the fault off and waits for the resolved notification. Times are measured from the "
    "fault switch to the notification's arrival at the receiver, on a machine with {cpus} "
    "CPU cores, with every interval shortened as listed below the table."
)
WIDTH = 95  # the README's prose width


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
    lines = [
        _row(
            [
                "Scenario",
                "Alert",
                "Severity",
                "Receiver",
                "Time to notification",
                "Time to resolution",
            ]
        ),
        _row(["---"] * 4 + ["---:"] * 2),
    ]
    for r in results["scenarios"]:
        scenario = f"{r['scenario']} ({r['fault']})" if r.get("fault") else r["scenario"]
        lines.append(
            _row(
                [
                    scenario,
                    f"`{r['alert']}`",
                    r["severity"],
                    r["receiver"],
                    _seconds(r["to_notification"]) + (f" ({r['note']})" if r.get("note") else ""),
                    _seconds(r.get("to_resolution")),
                ]
            )
        )
    clean = results.get("clean_run")
    if clean:
        fired = ", ".join(f"`{name}`" for name in clean["notified"]) or "nothing"
        lines.append(
            _row(
                [
                    f"Clean run, {clean['seconds']:g} s without a fault",
                    f"{fired} only",
                    "none",
                    "heartbeat",
                    "-",
                    "-",
                ]
            )
        )
    return "\n".join(lines)


def section(results: dict[str, Any]) -> str:
    """The whole section body: introduction, table, intervals and the command."""
    intro = INTRO.format(cpus=results.get("cpus") or "?")
    closing = f"{intervals(results['settings'])} Reproduce with `{COMMAND}`."
    return f"{_wrap(intro)}\n\n{table(results)}\n\n{_wrap(closing)}\n"


def replace_section(readme: str, body: str) -> str:
    block = f"{SECTION}\n\n{body}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## )", re.S | re.M)
    if pattern.search(readme):
        return pattern.sub(lambda _: block, readme, count=1)
    index = readme.find(f"\n{BEFORE}\n")
    if index < 0:
        raise ValueError(f"no {BEFORE!r} section to insert {SECTION!r} before")
    return readme[: index + 1] + block + readme[index + 1 :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="JSON written by tests/test_e2e_faults.py")
    parser.add_argument("--readme", type=Path, help="replace the table in this README")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    if args.readme is None:
        sys.stdout.write(table(results) + "\n\n" + intervals(results["settings"]) + "\n")
        return 0
    text = args.readme.read_text(encoding="utf-8")
    args.readme.write_text(replace_section(text, section(results)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
