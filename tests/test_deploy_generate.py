"""``inferwatch generate`` owns the deploy files: the committed ones are current, a changed
or stray one makes ``--check`` fail, and writing puts them back."""

from __future__ import annotations

import subprocess
from pathlib import Path

from inferwatch.alerts import generate
from inferwatch.alerts.render import to_yaml
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.deploy import compose, kubernetes
from tests.support.server import inferwatch_command

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_PRODUCERS = {"deploy", "alertmanager", "kubernetes", "kubernetes-dashboards"}


def deploy_producers() -> list[generate.Producer]:
    return [p for p in generate.PRODUCERS if p.name in DEPLOY_PRODUCERS]


def test_producers_are_registered() -> None:
    assert {p.name for p in deploy_producers()} == DEPLOY_PRODUCERS


def test_committed_deploy_files_are_current() -> None:
    result = generate.plan(ROOT, load_thresholds(), deploy_producers())
    assert result.stale == [], "regenerate with: inferwatch generate"


def test_generation_is_deterministic() -> None:
    thresholds = load_thresholds()
    assert generate.produce(thresholds, deploy_producers()) == generate.produce(
        thresholds, deploy_producers()
    )


def test_check_fails_on_a_stale_or_stray_deploy_file(tmp_path: Path) -> None:
    command = [*inferwatch_command(), "generate", "--out", str(tmp_path)]
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    check = [*command, "--check"]
    assert subprocess.run(check, capture_output=True, timeout=120).returncode == 0

    edited = tmp_path / compose.PROMETHEUS_FILE
    edited.write_text(edited.read_text().replace("15s", "1s"))
    stray = tmp_path / kubernetes.OUT_DIR / "old.yaml"
    stray.write_text(to_yaml({"kind": "ConfigMap"}))
    result = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"stale: {compose.PROMETHEUS_FILE}" in result.stderr
    assert f"no longer generated: {kubernetes.OUT_DIR}/old.yaml" in result.stderr

    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    assert not stray.exists()
    assert subprocess.run(check, capture_output=True, timeout=120).returncode == 0
