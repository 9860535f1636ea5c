"""``inferwatch generate`` owns the deploy files: their producers are registered, their output
is reproducible, and a changed one makes ``--check`` fail until writing puts it back."""

from __future__ import annotations

import subprocess
from pathlib import Path

from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.deploy import compose
from inferwatch.generation import driver, registry
from tests.support.hashseed import other_seeds, rendered_in_other_processes
from tests.support.server import inferwatch_command

DEPLOY_PRODUCERS = {"compose", "alertmanager", "kubernetes", "kubernetes-dashboards"}


def deploy_producers() -> list[registry.Producer]:
    return [p for p in registry.PRODUCERS if p.name in DEPLOY_PRODUCERS]


def test_producers_are_registered() -> None:
    assert {p.name for p in deploy_producers()} == DEPLOY_PRODUCERS


def deploy_files() -> dict[str, str]:
    produced = driver.produce(load_thresholds(), deploy_producers())
    return {rel: text for rel, (text, _) in produced.items()}


def test_generation_is_deterministic() -> None:
    # In other processes too: under another hash seed every set iterates in another order.
    assert rendered_in_other_processes(deploy_files) == dict.fromkeys(other_seeds(), deploy_files())


def test_check_fails_on_a_stale_deploy_file(tmp_path: Path) -> None:
    command = [*inferwatch_command(), "generate", "--out", str(tmp_path)]
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    check = [*command, "--check"]
    assert subprocess.run(check, capture_output=True, timeout=120).returncode == 0

    edited = tmp_path / compose.PROMETHEUS_FILE
    edited.write_text(edited.read_text().replace("15s", "1s"))
    result = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"stale: {compose.PROMETHEUS_FILE}" in result.stderr

    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    assert subprocess.run(check, capture_output=True, timeout=120).returncode == 0
