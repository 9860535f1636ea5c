"""The committed dashboards/ JSON is what the code generates, byte for byte, every time;
the Grafana provisioning files point at it and at the datasource the dashboards select."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.cli.main import main
from inferwatch.dashboards import OUT_DIR, files
from inferwatch.dashboards.model import DATASOURCE
from tests.support.hashseed import other_seeds, rendered_in_other_processes

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def dashboards() -> dict[str, str]:
    return files(load_thresholds())


def test_generation_is_deterministic() -> None:
    # In other processes too: under another hash seed every set iterates in another order.
    assert rendered_in_other_processes(dashboards) == dict.fromkeys(other_seeds(), dashboards())


def test_generate_writes_and_checks_dashboards(tmp_path: Path) -> None:
    assert main(["generate", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in (tmp_path / OUT_DIR).glob("*.json"))
    assert written == [
        "models.json",
        "overview.json",
        "pools.json",
        "resources.json",
        "streaming.json",
    ]
    assert main(["generate", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / OUT_DIR / "models.json").write_text("{}", encoding="utf-8")
    assert main(["generate", "--out", str(tmp_path), "--check"]) == 1


def test_provisioning_matches_the_dashboards() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "inferwatch.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == DATASOURCE["type"]
    assert source["url"] == "http://prometheus:9090"
    for path in (ROOT / OUT_DIR).glob("*.json"):
        variables = json.loads(path.read_text())["templating"]["list"]
        chosen = next(v for v in variables if v["name"] == "datasource")["current"]["value"]
        assert chosen == source["uid"], path.name
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "inferwatch.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
