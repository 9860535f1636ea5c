"""``promtool check metrics`` on a scrape, minus the lint findings the project accepts.

inferwatch keeps OpenTelemetry's ``db_client_connection_count`` verbatim (see
``tests/test_catalogue.py``), a gauge whose ``_count`` suffix promtool's linter flags. Every
other finding, and any parse error, is reported.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

ACCEPTED = (
    "db_client_connection_count non-histogram and non-summary metrics should not have "
    '"_count" suffix',
)

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) not installed"
)


def promtool_problems(text: str) -> list[str]:
    """What promtool objects to in ``text``; [] when it is clean."""
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    lines = (check.stdout + check.stderr).splitlines()
    problems = [line for line in lines if line.strip() and line.strip() not in ACCEPTED]
    if check.returncode not in (0, 3):  # 3: lint findings only; anything else failed to parse
        problems.append(f"promtool exited {check.returncode}")
    elif check.returncode == 3 and not lines:
        problems.append("promtool exited 3 without saying why")
    return problems
