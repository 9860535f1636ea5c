"""The library type-checks under ``mypy --strict``, as pyproject.toml configures it.

The library rooms (what a monitored service imports and what the exporter runs) are checked
strictly: every function annotated, no implicit Any returned, no untyped calls but to
prometheus_client's few unannotated helpers. Running it here puts it in the README's test
command, so a change that breaks the types fails the suite like any other regression.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.test_architecture import LIBRARY

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "inferwatch"
MYPY = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]


def _room_path(room: str) -> str:
    """The file or folder mypy is given for a room of tests/test_architecture.py."""
    if room == "<package>":
        return "src/inferwatch/__init__.py"
    return f"src/inferwatch/{room}" if (PACKAGE / room).is_dir() else f"src/inferwatch/{room}.py"


def test_the_configuration_checks_every_library_room_strictly() -> None:
    assert sorted(MYPY["files"]) == sorted(_room_path(room) for room in LIBRARY)
    assert MYPY["strict"] is True


def test_the_library_type_checks_strictly(tmp_path: Path) -> None:
    # The configuration's own file list; a cache of this run's own, so nothing stale from
    # another checkout (or another version of mypy) can hide an error.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Success: no issues found in "), done.stdout
