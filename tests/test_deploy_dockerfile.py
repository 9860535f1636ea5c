"""The Dockerfile, read as text (no Docker engine here to build it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_base_image_is_pinned() -> None:
    bases = [args for word, args in instructions() if word == "FROM"]
    assert bases
    for base in bases:
        image = base.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image


def test_runs_as_a_non_root_user() -> None:
    users = [args for word, args in instructions() if word == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_installs_the_project_and_runs_inferwatch() -> None:
    steps = instructions()
    assert any(word == "RUN" and 'pip install ".[all]"' in args for word, args in steps)
    (entrypoint,) = [args for word, args in steps if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["inferwatch"]


def test_no_secret_is_baked_in() -> None:
    for word, args in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(?i)password|secret|token|api_?key", args), args
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    # everything is excluded, then only what the build needs is let back in
    assert "*" in ignored
    allowed = {line[1:] for line in ignored if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src"}
