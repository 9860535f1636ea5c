"""``promtool check metrics`` on a scrape: every lint finding and parse error, reported."""

from __future__ import annotations

import shutil
import subprocess

import pytest

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) not installed"
)


def promtool_problems(text: str) -> list[str]:
    """What promtool objects to in ``text``; [] when it is clean."""
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    lines = (check.stdout + check.stderr).splitlines()
    problems = [line for line in lines if line.strip()]
    if check.returncode not in (0, 3):  # 3: lint findings only; anything else failed to parse
        problems.append(f"promtool exited {check.returncode}")
    elif check.returncode == 3 and not lines:
        problems.append("promtool exited 3 without saying why")
    return problems
