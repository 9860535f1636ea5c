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


def test_every_mistake_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "signals:\n"
        "  cpu_usage: {warning: 70}\n"
        "  api_latency_p95:\n"
        "    treshold: 2s\n"
        "    critical: 5 minutes\n"
        "settings:\n"
        "  evaluation_interval: 0s\n"
        "cost:\n"
        "  gpu_hour: cheap\n",
        encoding="utf-8",
    )
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(path)
    assert str(info.value).splitlines() == [
        f"{path}:2: signals.cpu_usage.warning: 70 has no unit; did you mean `70%`?",
        f"{path}:4: signals.api_latency_p95.treshold: unknown key; expected one of: "
        "warning, critical, for",
        f"{path}:5: signals.api_latency_p95.critical: expected a duration like 500ms, 5m or "
        "1h30m, got '5 minutes'",
        f"{path}:7: settings.evaluation_interval: must be longer than 0s",
        f"{path}:9: cost.gpu_hour: expected a price like 0.04 or 2.5, got 'cheap'",
    ]
    # The first mistake stays the error's own, as for a file with one.
    assert (info.value.node.line, info.value.key) == (2, "signals.cpu_usage.warning")
    assert [e.node.line for e in info.value.errors] == [2, 4, 5, 7, 9]


def test_a_duplicate_key_does_not_hide_the_other_mistakes() -> None:
    overlay = (
        "signals:\n"
        "  cpu_usage: {warning: 70%}\n"
        "  cpu_usage: {warning: 80%}\n"
        "  gpu_temperature: {critical: 90}\n"
    )
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(overlay)
    assert str(info.value).splitlines() == [
        "<text>:3: cpu_usage: duplicate key",
        "<text>:4: signals.gpu_temperature.critical: 90 has no unit; did you mean `90C`?",
    ]


def test_what_depends_on_a_mistake_is_not_reported_with_it() -> None:
    # The override of a broken profile is not checked against it (it would blame correct
    # lines); an unknown profile and a bad override elsewhere still are.
    overlay = (
        "profiles:\n"
        "  batch:\n"
        "    api_latency_p95: {warning: 1}\n"
        "overrides:\n"
        "  - match: {model: x}\n"
        "    profile: batch\n"
        "  - match: {http_route: /a}\n"
        "    profile: nope\n"
        "  - match: {http_route: /b}\n"
        "    signals:\n"
        "      api_latency_p95: {warning: 10s}\n"
    )
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(overlay)
    assert str(info.value).splitlines() == [
        "<text>:3: profiles.batch.api_latency_p95.warning: 1 has no unit; did you mean `1s`?",
        "<text>:8: overrides[1].profile: unknown profile 'nope'; defined: batch, interactive",
        "<text>:11: overrides[2].signals.api_latency_p95.warning: warning (10s) must be strictly "
        "milder than critical (5s): api_latency_p95 alerts above its thresholds, so warning "
        "must lie below critical",
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("cpu_usage: {warning: 70}", "70 has no unit; did you mean `70%`?"),
        ("cpu_usage: {warning: '70'}", "70 has no unit; did you mean `70%`?"),
        ("cpu_usage: {warning: 0.7}",
         "0.7 has no unit; did you mean `0.7%`, or `70%` for a ratio of 0.7?"),
        ("cpu_usage: {warning: 250}", "250 has no unit; write a percentage like 5% or 99.5%"),
        ("api_latency_p95: {warning: 2}", "2 has no unit; did you mean `2s`?"),
        ("gpu_temperature: {warning: 80}", "80 has no unit; did you mean `80C`?"),
    ],
)  # fmt: skip
def test_a_bare_number_gets_the_unit_its_signal_takes(entry: str, message: str) -> None:
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(f"signals:\n  {entry}\n")
    assert info.value.message == message
    assert len(info.value.errors) == 1


def test_cli_reports_every_mistake(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from inferwatch.cli.main import main

    path = tmp_path / "bad.yaml"
    path.write_text("signals:\n  cpu_usage: {warning: 70}\n  gpu_fan: {}\n", encoding="utf-8")
    assert main(["generate", "--thresholds", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: signals.cpu_usage.warning: 70 has no unit; did you mean `70%`?" in err
    assert f"{path}:3: signals.gpu_fan: unknown key" in err
    assert not (tmp_path / "out").exists()
