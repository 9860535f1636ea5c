"""Project hygiene: lint and formatting, the documented set-up commands, the shell scripts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAIN_COMMAND = "./scripts/bootstrap.sh && .venv/bin/inferwatch stack up"
TEST_COMMAND = "./scripts/bootstrap.sh && .venv/bin/python -m pytest"
LINTED = [p for p in ("src", "tests", "benchmarks", "scripts", "loadtests") if (ROOT / p).is_dir()]


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    # The ruff of the interpreter running the tests: the version pinned by the dev extra,
    # whatever else is on PATH.
    exe = Path(sys.executable).parent / "ruff"
    if not exe.exists():
        pytest.fail(f"ruff is not installed next to {sys.executable}; run ./scripts/bootstrap.sh")
    return subprocess.run(
        [str(exe), *args, *LINTED], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_check() -> None:
    result = ruff("check", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = ruff("format", "--check", "--no-cache")
    assert result.returncode == 0, (
        f"{result.stdout}{result.stderr}run: .venv/bin/ruff format {' '.join(LINTED)}"
    )


def test_readme_gives_exactly_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    commands = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if "./scripts/bootstrap.sh" in line
    ]
    assert commands == [MAIN_COMMAND, TEST_COMMAND]


def test_ci_runs_exactly_the_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    steps = [
        line.strip()
        for line in script.splitlines()
        if line.strip()
        and not line.lstrip().startswith("#")
        and not re.match(r"(set|cd)\s", line.strip())
    ]
    assert steps == [TEST_COMMAND]


@pytest.mark.parametrize("script", ["scripts/bootstrap.sh", ".ci/run"])
def test_shell_scripts_parse_and_are_executable(script: str) -> None:
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} must be executable (chmod +x)"
    bash = shutil.which("bash")
    assert bash is not None, "bash is needed to run the set-up commands"
    result = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
