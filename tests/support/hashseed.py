"""Run a render again in fresh interpreters with other ``PYTHONHASHSEED`` values.

Rendering twice in one process proves little: both renders iterate every set (and every
dict built from one) in the same order, because string hashes are salted once per process.
A render whose output follows a set's order only shows it under another seed, so the
determinism tests compare the render of this process with the renders of other processes,
each under a seed of its own. A two-element set keeps its order under another seed about
half the time, so several seeds are tried: with three, such a dependence slips through
once in eight runs at worst, a larger set practically never.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent

SEEDS = 3  # how many other seeds each render is tried under

_RUN = """
import importlib, json, sys
module, name = sys.argv[1:3]
sys.stdout.write(json.dumps(getattr(importlib.import_module(module), name)()))
"""


def other_seeds(count: int = SEEDS) -> list[int]:
    """``count`` hash seeds, none of them this process's (when it was started with one)."""
    own = os.environ.get("PYTHONHASHSEED", "")
    candidates = [s for s in range(1, count + 2) if str(s) != own]
    return candidates[:count]


def rendered_in_other_processes(render: Callable[[], Any]) -> dict[int, Any]:
    """Hash seed -> ``render()`` as a fresh interpreter under that seed returns it, for
    each of :func:`other_seeds`; decoded from JSON (so it should return text, or lists and
    dicts of text). A test asserts it equals ``dict.fromkeys(other_seeds(), render())``.

    ``render`` must be a module-level function, so that the other interpreter can import it
    by name from its module (a test module, or any module of the project)."""
    module = sys.modules[render.__module__]
    if module.__file__ is None or "<" in render.__qualname__ or "." in render.__qualname__:
        raise ValueError(f"{render.__qualname__} is not a module-level function of a file")
    # The repository (for tests.support) and the folder the module is imported from by its
    # name: pytest imports test modules by their bare name, from the tests folder.
    base = Path(module.__file__).parent
    for _ in range(render.__module__.count(".")):
        base = base.parent
    path = [str(ROOT), str(base), os.environ.get("PYTHONPATH", "")]
    seeds = other_seeds()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN, render.__module__, render.__name__],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONHASHSEED": str(seed),
                "PYTHONPATH": os.pathsep.join(p for p in path if p),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in seeds
    ]
    results: dict[int, Any] = {}
    for seed, proc in zip(seeds, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{render.__qualname__} under PYTHONHASHSEED={seed}:\n{err}"
        results[seed] = json.loads(out)
    return results
