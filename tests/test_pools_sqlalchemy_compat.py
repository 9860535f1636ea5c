"""The SQLAlchemy adapter tests again under SQLAlchemy 2.0 (the venv has 2.1).

scripts/bootstrap.sh installs SQLAlchemy 2.0 into .venv/sqlalchemy-2.0 with
``pip install --target``; putting that first on PYTHONPATH makes a child pytest import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".venv" / "sqlalchemy-2.0"


@pytest.mark.skipif(
    not (TARGET / "sqlalchemy").is_dir(),
    reason="SQLAlchemy 2.0 not installed in .venv/sqlalchemy-2.0; run scripts/bootstrap.sh",
)
def test_sqlalchemy_adapter_under_2_0() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TARGET), str(ROOT)]),
        "INFERWATCH_EXPECT_SQLALCHEMY": "2.0.",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_pools_sqlalchemy.py")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
