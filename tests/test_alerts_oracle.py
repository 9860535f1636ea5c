"""The hand-written promtool cases under tests/rules/: an oracle independent of the thresholds.

The generated tests (alerts/tests/) take their inputs from the same thresholds as the rules, so
a wrong default would be reproduced on both sides. The cases here hold each alert at numbers
worked out by hand for its documented default; they run against the rules the current
thresholds make, so a default changed by mistake fails them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch.alerts import alerting, recording, signals, slo
from inferwatch.alerts.render import to_yaml
from inferwatch.alerts.thresholds import load_thresholds
from tests.support.promtool import needs_promtool

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "rules"
_ALERTS = re.compile(r'^ALERTS\{alertname="(\w+)"(?:, alertstate="(\w+)")?\}$')
_SEVERITY = re.compile(r'severity="(\w+)"')


def _files() -> list[Path]:
    return sorted(CASES.glob("*.yaml"))


def _checks() -> list[tuple[str, str | None, list[str]]]:
    """(alert, alertstate asked for, severities expected) of every ALERTS check."""
    found = []
    for path in _files():
        document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        for test in document["tests"]:
            for check in test.get("promql_expr_test", []):
                match = _ALERTS.match(check["expr"])
                if match is None:
                    continue
                severities = [
                    _SEVERITY.search(s["labels"]).group(1)  # type: ignore[union-attr]
                    for s in check["exp_samples"]
                ]
                found.append((match.group(1), match.group(2), severities))
    return found


def _run(
    tmp_path: Path, overlays: tuple[Path, ...] = (), files: list[Path] | None = None
) -> subprocess.CompletedProcess[str]:
    """promtool on copies of the cases (``files``, else all), beside the rules ``overlays``
    make from the defaults."""
    thresholds = load_thresholds(*overlays)
    rules = tmp_path / "alerts"
    rules.mkdir()
    (rules / "recording_rules.yaml").write_text(
        to_yaml({"groups": recording.groups(thresholds)}), encoding="utf-8"
    )
    (rules / "alert_rules.yaml").write_text(
        to_yaml({"groups": alerting.groups(thresholds)}), encoding="utf-8"
    )
    shutil.copytree(CASES, tmp_path / "tests" / "rules")
    names = [f"tests/rules/{p.name}" for p in (_files() if files is None else files)]
    return subprocess.run(
        ["promtool", "test", "rules", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_promtool
def test_hand_written_cases_pass_at_the_documented_defaults(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert result.stdout.count("SUCCESS") == len(_files()) == 7


def test_every_alert_has_hand_written_cases_for_each_severity() -> None:
    """Each alert at the defaults: a case where it is silent and firing cases covering every
    severity it has; the Watchdog, always firing, has only the latter."""
    thresholds = load_thresholds()
    checks = _checks()
    silent = {alert for alert, state, severities in checks if state is None and not severities}
    fired: dict[str, set[str]] = {}
    for alert, state, severities in checks:
        if state == "firing":
            fired.setdefault(alert, set()).update(severities)
    names = alerting.alert_names(thresholds)
    assert len(names) == 28
    for alert, expected in alerting.severities(thresholds).items():
        assert fired.get(alert) == set(expected), alert
        if alert != alerting.WATCHDOG:
            assert alert in silent, alert
    # A misspelt alert name would make a silent case pass whatever the rules do.
    known = {s.alert for s in signals.SIGNALS} | {s.alert for s in slo.SLIS} | {"Watchdog"}
    assert {alert for alert, _, _ in checks} == known


# A default set wrong by mistake, and the alerts whose hand-written cases must then fail.
OVERLAYS: dict[str, tuple[str, set[str]]] = {
    "p95_warning": ("signals:\n  api_latency_p95: {warning: 2200ms}\n", {"APIHighLatencyP95"}),
    "cache_critical": ("signals:\n  cache_hit_rate: {critical: 30%}\n", {"CacheLowHitRate"}),
    "leak_for": ("signals:\n  memory_leak: {for: 40m}\n", {"ProcessMemoryLeakSuspected"}),
    "timeouts_critical": (
        "signals:\n  db_pool_timeouts: {critical: 9}\n",
        {"DBPoolAcquireTimeouts"},
    ),
    "target_down_for": ("signals:\n  target_down: {severity: critical, for: 3m}\n", {"TargetDown"}),
    "burn_factor": (
        "slo:\n  burn_rates:\n"
        "    - {long: 1h, short: 5m, factor: 15, severity: critical, for: 2m}\n"
        "    - {long: 6h, short: 30m, factor: 6, severity: critical, for: 2m}\n"
        "    - {long: 1d, short: 2h, factor: 3, severity: warning, for: 15m}\n"
        "    - {long: 3d, short: 6h, factor: 1, severity: warning, for: 15m}\n",
        {"APIAvailabilityBudgetBurn", "APILatencyBudgetBurn"},
    ),
}
_FAILED_ALERT = re.compile(r'expr: "ALERTS\{alertname=\\"(\w+)\\"')


@needs_promtool
@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_a_wrong_default_fails_the_hand_written_cases(tmp_path: Path, name: str) -> None:
    text, expected = OVERLAYS[name]
    overlay = tmp_path / "wrong.yaml"
    overlay.write_text(text, encoding="utf-8")
    work = tmp_path / "run"
    work.mkdir()
    # only the files that exercise the broken alerts: promtool takes a while over them all
    files = [
        p for p in _files() if any(f'"{a}"' in p.read_text(encoding="utf-8") for a in expected)
    ]
    result = _run(work, (overlay,), files)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    # promtool names each failing expression; exactly the broken alert's cases fail
    assert set(_FAILED_ALERT.findall(output)) == expected, output[-3000:]
