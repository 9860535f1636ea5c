"""Deployment adjustments of the generated rules: scaled range windows and ``for:``."""

from __future__ import annotations

import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from inferwatch.alerts.adjust import scale_for, scale_rule_windows, scale_windows
from inferwatch.alerts.files import rule_files
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.alerts.units import parse_duration
from inferwatch.stack import StackSettings
from inferwatch.stack.configs import write_rules

RANGE = re.compile(r"\[([^\]]+)\]")


@pytest.mark.parametrize(
    ("expr", "factor", "minimum", "expected"),
    [
        (
            'sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))',
            0.1,
            2,
            'sum by (job) (rate(http_requests_total{code=~"5.."}[30s]))',
        ),
        # Every range in the expression; names ending in a window are not ranges.
        (
            "job:errors:ratio_rate5m > 0.1 and rate(a[1h]) / rate(b[30m]) > 0",
            0.1,
            2,
            "job:errors:ratio_rate5m > 0.1 and rate(a[6m]) / rate(b[3m]) > 0",
        ),
        # Rounded to whole seconds; compound durations are read whole.
        ("increase(x[15m])", 0.013, 0, "increase(x[12s])"),
        ("rate(x[1h30m])", 0.1, 0, "rate(x[9m])"),
        # Never below the minimum (two scrape intervals) ...
        ("rate(x[5m])", 0.001, 2, "rate(x[2s])"),
        ("rate(x[5m])", 0.001, 30, "rate(x[30s])"),
        # ... nor longer than the window was.
        ("rate(x[10s])", 0.5, 30, "rate(x[10s])"),
        ("rate(x[500ms])", 0.1, 0, "rate(x[500ms])"),
        # A subquery keeps its step; an offset is not a range.
        ("max_over_time(rate(x[5m])[30m:1m])", 0.1, 2, "max_over_time(rate(x[30s])[3m:1m])"),
        ("rate(x[5m] offset 1h)", 0.1, 2, "rate(x[30s] offset 1h)"),
        # Text inside label values is left alone, whatever it looks like.
        (
            "rate(x{note=\"[5m]\", other='[1h]'}[5m])",
            0.1,
            2,
            "rate(x{note=\"[5m]\", other='[1h]'}[30s])",
        ),
        ("vector(1)", 0.1, 2, "vector(1)"),
        ("rate(x[5m])", 1, 2, "rate(x[5m])"),
    ],
)
def test_scale_windows(expr: str, factor: float, minimum: int, expected: str) -> None:
    assert scale_windows(expr, factor, minimum) == expected


def test_scale_windows_rejects_non_positive_factors() -> None:
    with pytest.raises(ValueError, match="positive"):
        scale_windows("rate(x[5m])", 0)


def test_scale_rule_windows_changes_expressions_only() -> None:
    groups = [
        {
            "name": "g",
            "interval": "1m",
            "rules": [
                {"record": "job:x:rate5m", "expr": "sum(rate(x[5m]))"},
                {"alert": "A", "expr": "job:x:rate5m > 1", "for": "5m", "labels": {"w": "[5m]"}},
            ],
        }
    ]
    scaled = scale_rule_windows(groups, Fraction(1, 10), 2)
    assert scaled == [
        {
            "name": "g",
            "interval": "1m",
            "rules": [
                {"record": "job:x:rate5m", "expr": "sum(rate(x[30s]))"},
                {"alert": "A", "expr": "job:x:rate5m > 1", "for": "5m", "labels": {"w": "[5m]"}},
            ],
        }
    ]
    assert groups[0]["rules"][0]["expr"] == "sum(rate(x[5m]))"  # the input is not modified


def _exprs(text: str) -> list[str]:
    return [r["expr"] for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


def test_rule_files_scale_every_range_and_keep_names() -> None:
    plain = rule_files(scrape_interval="1s")
    scaled = rule_files(window_scale=0.1, scrape_interval="1s")
    assert plain.keys() == scaled.keys()
    plain_rec, scaled_rec = (yaml.safe_load(f["recording_rules.yaml"]) for f in (plain, scaled))
    names = [r["record"] for g in plain_rec["groups"] for r in g["rules"]]
    assert names == [r["record"] for g in scaled_rec["groups"] for r in g["rules"]]
    assert "job_route:http_server_request_errors:ratio_rate5m" in names
    windows = {w for e in _exprs(scaled["recording_rules.yaml"]) for w in RANGE.findall(e)}
    assert {"30s", "1m30s", "3m", "6m"} <= windows
    assert not windows & {"5m", "15m", "30m", "1h"}
    # The alerting rules read recorded series only, so they come out unchanged.
    assert plain["alert_rules.yaml"] == scaled["alert_rules.yaml"]


def test_rule_files_floor_is_two_scrape_intervals() -> None:
    scaled = rule_files(window_scale=0.001, scrape_interval="15s")
    windows = {w for e in _exprs(scaled["recording_rules.yaml"]) for w in RANGE.findall(e)}
    assert min(parse_duration(w) for w in windows) == 30


def test_scale_for_still_scales_every_for() -> None:
    thresholds = scale_for(load_thresholds(), 0.1)
    assert thresholds.signals["api_error_rate"].for_ == 30
    assert {b.for_ for b in thresholds.slo.burn_rates} == {12, 90}


def test_stack_settings_validate_the_window_scale(tmp_path: Path) -> None:
    for bad in (0.0, -0.1, 2.0):
        with pytest.raises(ValueError, match="window_scale"):
            StackSettings(window_scale=bad)
    written = write_rules(StackSettings(data_dir=tmp_path, window_scale=0.1, scrape_interval="5s"))
    recording = next(p for p in written if p.name == "recording_rules.yaml").read_text()
    assert "[30s]" in recording and "[5m]" not in recording


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_scaled_rules(tmp_path: Path) -> None:
    files = rule_files(
        window_scale=0.02,
        for_scale=0.02,
        scrape_interval="1s",
        evaluation_interval="1s",
        targets=["inferwatch-api", "inferwatch-exporter"],
    )
    paths = []
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        paths.append(str(tmp_path / name))
    check = subprocess.run(
        ["promtool", "check", "rules", *paths], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout


def test_stack_up_flag_reaches_the_settings() -> None:
    from inferwatch.cli.main import build_parser
    from inferwatch.cli.stack import _settings

    args = build_parser().parse_args(["stack", "up", "--window-scale", "0.1"])
    assert _settings(args).window_scale == 0.1
    assert _settings(build_parser().parse_args(["stack", "up"])).window_scale == 1.0
    with pytest.raises(ValueError, match="window_scale"):
        _settings(build_parser().parse_args(["stack", "up", "--window-scale", "0"]))
