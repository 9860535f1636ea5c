"""The dependency alerts on the committed rules, with promtool: a breaker that stays open
pages even while it flaps between open and half-open, one that closes in time does not, and
the retry recovery rate counts only calls whose first attempt failed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch.alerts.render import to_yaml
from inferwatch.alerts.unit_tests import expand

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
WORKER = 'job="inferwatch-api", instance="api-1:8000", peer="tts"'


def state(name: str, values: str) -> dict[str, str]:
    return {
        "series": f'inferwatch_upstream_circuit_state{{{WORKER}, state="{name}"}}',
        "values": values,
    }


def run(tmp_path: Path, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    rules = [str(ROOT / "alerts" / f) for f in ("recording_rules.yaml", "alert_rules.yaml")]
    doc = {"rule_files": rules, "evaluation_interval": "1m", "tests": tests}
    path = tmp_path / "upstream.yaml"
    path.write_text(to_yaml(doc, "dependency alerts"), encoding="utf-8")
    return subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )


def committed_rule(alert: str) -> dict[str, Any]:
    rules = yaml.safe_load((ROOT / "alerts" / "alert_rules.yaml").read_text(encoding="utf-8"))
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert]
    return dict(rule)


def test_a_breaker_flapping_between_open_and_half_open_pages_one_that_closes_does_not(
    tmp_path: Path,
) -> None:
    rule = committed_rule("UpstreamCircuitOpen")
    assert (rule["for"], rule["labels"]["severity"]) == ("5m", "warning")
    # Open for 3m, half-open for a probe, open again: never closed for 8m, then closed.
    flapping = [
        state("closed", "1 0 0 0 0 0 0 0 0 0 1 1 1 1 1"),
        state("open", "0 1 1 1 0 1 1 1 1 1 0 0 0 0 0"),
        state("half_open", "0 0 0 0 1 0 0 0 0 0 0 0 0 0 0"),
    ]
    # Open for 4m, then closed again: shorter than the alert's 5m.
    brief = [
        state("closed", "1 0 0 0 0 1 1 1 1 1 1 1"),
        state("open", "0 1 1 1 1 0 0 0 0 0 0 0"),
        state("half_open", "0 0 0 0 0 0 0 0 0 0 0 0"),
    ]
    labels = {"job": "inferwatch-api", "peer": "tts"}
    fired = {
        "exp_labels": {**labels, "severity": "warning", "service": "inferwatch-api"},
        "exp_annotations": {k: expand(v, labels, 1.0) for k, v in rule["annotations"].items()},
    }

    def expect(at: str, firing: bool) -> dict[str, Any]:
        return {
            "eval_time": at,
            "alertname": rule["alert"],
            "exp_alerts": [fired] if firing else [],
        }

    result = run(
        tmp_path,
        [
            {"name": "flapping", "interval": "1m", "input_series": flapping,
             "alert_rule_test": [expect("5m", False), expect("7m", True), expect("12m", False)]},
            {"name": "closed in time", "interval": "1m", "input_series": brief,
             "alert_rule_test": [expect("4m", False), expect("8m", False)]},
        ],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_the_recovery_rate_leaves_out_refused_and_first_time_successes(tmp_path: Path) -> None:
    """Per minute: 50 successes, 20 refused by the open breaker, 6 recovered, 4 failed:
    recovery is 6 / (6 + 4) = 60 %, not 56 / 80."""
    calls = {"success": 50, "rejected": 20, "recovered": 6, "failed": 4}
    series = [
        {"series": f'inferwatch_upstream_calls_total{{{WORKER}, outcome="{o}"}}',
         "values": f"0+{n}x30"}
        for o, n in calls.items()
    ]  # fmt: skip
    ratio = "job_peer:inferwatch_upstream_retry_recovery:ratio_rate5m"
    result = run(
        tmp_path,
        [{"name": "recovery", "interval": "1m", "input_series": series,
          "promql_expr_test": [{"expr": f"round({ratio} * 1000)", "eval_time": "20m",
                                "exp_samples": [{"labels": '{job="inferwatch-api", peer="tts"}',
                                                 "value": 600}]}]}],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
