"""``amtool`` on a configuration file: ``check-config`` and ``config routes test``."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("amtool")
    if exe is None:
        pytest.skip("amtool (Debian package prometheus-alertmanager) is not installed")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=30)


def route_test(
    config: Path, labels: Mapping[str, str], receivers: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    """``amtool config routes test``: exits 0 only if ``labels`` reach exactly ``receivers``
    (in order); its stdout names the receivers reached, comma-separated."""
    # Quoted values: routes like /v1/jobs/{job_id} hold characters amtool would misread.
    matchers = [f"{name}={json.dumps(value)}" for name, value in labels.items()]
    return amtool(
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        f"--verify.receivers={','.join(receivers)}",
        *matchers,
    )


def receivers_reached(config: Path, labels: Mapping[str, str]) -> list[str]:
    """The receivers ``labels`` reach, in amtool's order."""
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        *(f"{name}={json.dumps(value)}" for name, value in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")
