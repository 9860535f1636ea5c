"""The thresholds file: defaults load, bad input is rejected naming file, line and key."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from inferwatch.alerts.source import ThresholdsError
from inferwatch.alerts.thresholds import Levels, load_thresholds


def test_defaults_carry_the_production_thresholds() -> None:
    t = load_thresholds()
    assert t.signals["api_latency_p95"] == Levels(Fraction(2), Fraction(5), Fraction(300))
    assert t.signals["api_error_rate"].warning == Fraction(5, 100)  # type: ignore[union-attr]
    assert t.signals["cache_hit_rate"].critical == Fraction(40, 100)  # type: ignore[union-attr]
    assert t.signals["gpu_temperature"].critical == 90  # type: ignore[union-attr]
    assert t.slo.availability == Fraction(995, 1000)
    assert [float(w) for w in t.slo.windows] == [300, 1800, 3600, 7200, 21600, 86400, 259200]
    assert t.production_readiness == {}


@pytest.mark.parametrize(
    ("overlay", "line", "key", "message"),
    [
        (
            "signals:\n  api_error_rate:\n    warning: 20%\n",
            3, "signals.api_error_rate.warning", "strictly milder than critical",
        ),
        (
            "signals:\n  cache_hit_rate: {warning: 30%}\n",
            2, "signals.cache_hit_rate.warning", "warning must lie above critical",
        ),
        ("signals:\n  api_latency_p95:\n    for: 5 minutes\n", 3, "signals.api_latency_p95.for",
         "expected a duration"),
        ("signals:\n  cpu_usage:\n    critical: 120%\n", 3, "signals.cpu_usage.critical",
         "cannot exceed 100%"),
        ("signals:\n  cpu_usage:\n    critical: 900ms\n", 3, "signals.cpu_usage.critical",
         "expected a percentage"),
        ("signals:\n  api_latency_p95:\n    warning: 2\n", 3, "signals.api_latency_p95.warning",
         "has no unit"),
        ("signals:\n  api_latency_p95:\n    treshold: 2s\n", 3,
         "signals.api_latency_p95.treshold", "unknown key"),
        ("signals:\n  gpu_fan: {warning: 50%}\n", 2, "signals.gpu_fan", "unknown key"),
        ("slo:\n  latency:\n    threshold: 1.7s\n", 3, "slo.latency.threshold",
         "bucket bound"),
        ("overrides:\n  - match: {model: x}\n    signals:\n      api_latency_p95: {warning: 1s}\n",
         4, "overrides[0].signals.api_latency_p95", "cannot match on 'model'"),
        ("overrides:\n  - match: {http_route: /a}\n    profile: batch\n", 3,
         "overrides[0].profile", "unknown profile"),
    ],
)  # fmt: skip
def test_bad_input_names_line_and_key(
    tmp_path: Path, overlay: str, line: int, key: str, message: str
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(overlay, encoding="utf-8")
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(path)
    text = str(info.value)
    assert text.startswith(f"{path}:{line}: {key}: "), text
    assert message in text


def test_overlay_merges_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("signals:\n  api_latency_p95: {warning: 1s}\n", encoding="utf-8")
    levels = load_thresholds(path).signals["api_latency_p95"]
    assert levels == Levels(Fraction(1), Fraction(5), Fraction(300))


def test_cli_reports_invalid_thresholds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from inferwatch.cli.main import main

    path = tmp_path / "bad.yaml"
    path.write_text("signals:\n  memory_usage: {warning: 95%, critical: 80%}\n", encoding="utf-8")
    assert main(["generate", "--thresholds", str(path), "--out", str(tmp_path)]) == 2
    assert f"{path}:2: signals.memory_usage.warning:" in capsys.readouterr().err
