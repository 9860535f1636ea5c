"""The committed alerts/ output: up to date, reproducible, and passing promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from inferwatch.alerts import files
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "alerts"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_generate_writes_the_alerts_files(tmp_path: Path) -> None:
    thresholds = load_thresholds()
    expected = {
        **files.rule_files_for(thresholds),
        **files.runbook_files(thresholds),
        **files.promtool_test_files(thresholds),
    }
    assert main(["generate", "--out", str(tmp_path)]) == 0
    for rel, text in expected.items():
        assert (tmp_path / rel).read_bytes() == text.encode("utf-8")


@needs_promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", "alerts/recording_rules.yaml", "alerts/alert_rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (ALERTS / "tests").glob("*.yaml"))
    assert any("burn_rate" in f for f in files)
    result = promtool("test", "rules", *files)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]


@needs_promtool
def test_promtool_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness can fail: a test expecting 5% instead of the real value must not pass."""
    shutil.copytree(ALERTS, tmp_path / "alerts")
    test_file = tmp_path / "alerts/tests/api_error_rate.yaml"
    text = test_file.read_text(encoding="utf-8")
    assert "Error rate is 14%" in text
    test_file.write_text(text.replace("Error rate is 14%", "Error rate is 13%"))
    result = promtool("test", "rules", "alerts/tests/api_error_rate.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


OVERLAY = """
overrides:
  - match: {http_route: /v1/chat}
    profile: interactive
  - match: {service: music-api}
    signals:
      api_latency_p95: {warning: 30s, critical: 1m}
      api_error_rate: {warning: 10%}
"""


@needs_promtool
def test_overrides_pass_promtool(tmp_path: Path) -> None:
    """Override rules get their own generated tests, and the defaults leave their series alone."""
    overlay = tmp_path / "site.yaml"
    overlay.write_text(OVERLAY, encoding="utf-8")
    assert main(["generate", "--thresholds", str(overlay), "--out", str(tmp_path)]) == 0
    rules = ["alerts/recording_rules.yaml", "alerts/alert_rules.yaml"]
    result = promtool("check", "rules", *rules, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = [
        f"alerts/tests/{n}.yaml" for n in ("api_latency_p95", "api_latency_p99", "api_error_rate")
    ]
    text = (tmp_path / tests[0]).read_text(encoding="utf-8")
    assert "override-1" in text and "override-2" in text
    result = promtool("test", "rules", *tests, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
