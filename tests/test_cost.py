"""The cost model: prices in the thresholds file, turned into cost per resource, per job and
per 1000 jobs by the recording rules (checked by promtool on raw series) and by the report
(exact arithmetic on the queried quantities)."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from inferwatch.alerts.source import ThresholdsError
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.cli.main import main
from inferwatch.reports import cost

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
ALL_PRICED = """\
cost:
  currency: EUR
  cpu_hour: 0.06
  memory_gib_hour: 0.01
  gpu_hour: 2.5
  instance_hour: 0.1
"""


def test_prices_load_exactly_and_zero_leaves_a_resource_out() -> None:
    shipped = load_thresholds().cost
    assert (shipped.currency, shipped.priced()) == (
        "USD",
        {"cpu": Fraction(4, 100), "memory_gib": Fraction(5, 1000)},
    )
    site = load_thresholds(ALL_PRICED).cost
    assert site.priced() == {
        "cpu": Fraction(6, 100),
        "memory_gib": Fraction(1, 100),
        "gpu": Fraction(5, 2),
        "instance": Fraction(1, 10),
    }


@pytest.mark.parametrize(
    ("overlay", "key", "message"),
    [
        ("cost:\n  gpu_hour: -2\n", "cost.gpu_hour", "expected a price like 0.04"),
        ("cost:\n  gpu_hour: 2.5/h\n", "cost.gpu_hour", "expected a price like 0.04"),
        ("cost:\n  tpu_hour: 4\n", "cost.tpu_hour", "unknown key"),
        ("cost:\n  currency: US dollars\n", "cost.currency", "expected a code like USD"),
    ],
)
def test_a_bad_price_names_its_line_and_key(overlay: str, key: str, message: str) -> None:
    with pytest.raises(ThresholdsError) as raised:
        load_thresholds(overlay)
    assert f"<text>:2: {key}: " in str(raised.value) and message in str(raised.value)


def test_the_report_prices_the_queried_quantities_exactly() -> None:
    """0.5 core-hours, 3 GiB-hours, 0.25 GPU-hours and 1 instance-hour for 40 jobs."""
    t = load_thresholds(ALL_PRICED)
    hours = {"cpu": 0.5, "memory_gib": 3.0, "gpu": 0.25, "instance": 1.0}
    priced = cost.price(hours, 40, t.cost)
    # 0.03 + 0.03 + 0.625 + 0.1 = 0.785 EUR; per job 0.019625; per 1000 jobs 19.625
    total = Fraction(785, 1000)
    assert priced["by_resource"]["gpu"] == {"hours": 0.25, "price_per_hour": 2.5, "cost": 0.625}
    assert (priced["currency"], priced["total"]) == ("EUR", float(total))
    assert priced["per_job"] == float(total / 40)
    assert priced["per_1000_jobs"] == float(total * 1000 / 40) == 19.625
    # A resource not measured in the window is left out, not priced as zero hours.
    partial = cost.price({**hours, "gpu": None}, 40, t.cost)
    assert set(partial["by_resource"]) == {"cpu", "memory_gib", "instance"}
    assert partial["total"] == float(total - Fraction(625, 1000))
    assert cost.price(hours, 0, t.cost)["per_1000_jobs"] is None


@needs_promtool
def test_the_cost_rules_compute_the_same_figures(tmp_path: Path) -> None:
    """Half a core in 2 GiB, two GPUs, one instance and 12 jobs a minute, at every price."""
    overlay = tmp_path / "prices.yaml"
    overlay.write_text(ALL_PRICED, encoding="utf-8")
    assert main(["generate", "--thresholds", str(overlay), "--out", str(tmp_path)]) == 0
    document = yaml.safe_load((tmp_path / "alerts/tests/cost.yaml").read_text(encoding="utf-8"))
    (group,) = document["tests"]
    expected = {c["expr"]: c["exp_samples"][0]["value"] for c in group["promql_expr_test"]}
    # per second: (0.5 * 0.06 + 2 * 0.01 + 2 * 2.5 + 1 * 0.1) / 3600 = 5.15 / 3600
    per_second = Fraction(515, 100) / 3600
    scale = 10**9
    assert expected["round(job:inferwatch_cost:rate1h * 1000000000)"] == round(per_second * scale)
    per_1000 = "round(job:inferwatch_cost_per_1000_jobs:ratio_rate1h * 1000000000)"
    assert expected[per_1000] == round(per_second / Fraction(1, 5) * 1000 * scale)
    gpu = 'round(job_resource:inferwatch_cost:rate1h{resource="gpu"} * 1000000000)'
    assert expected[gpu] == round(Fraction(5) / 3600 * scale)
    result = subprocess.run(
        ["promtool", "test", "rules", "alerts/tests/cost.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
