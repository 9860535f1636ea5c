"""Load the tests make themselves: a busy loop on every core.

``INFERWATCH_TEST_CPU_HOG=1`` runs one for the whole test run (tests/conftest.py), to
show that every test asserts only what it controls, and the host-CPU alert's own test
starts one to see HostHighCPUUsage fire.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

from inferwatch.stack.children import spawn, with_lifeline

CPU_HOG_ENV = "INFERWATCH_TEST_CPU_HOG"
_SPIN = "while True:\n    pass"


def cpu_hog_requested() -> bool:
    return os.environ.get(CPU_HOG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def cpu_hog(processes: int | None = None) -> Iterator[list[int]]:
    """``processes`` (default: one per core) Python processes spinning until the ``with``
    block ends; yields their pids. Each dies with the test process even when that is
    killed (the stack's lifeline: SIGTERM from the kernel when its parent dies)."""
    count = processes or os.cpu_count() or 1
    hogs = [
        spawn(with_lifeline([sys.executable, "-c", _SPIN]), stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield [hog.pid for hog in hogs]
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
