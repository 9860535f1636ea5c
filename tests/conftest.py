"""Fixtures shared by the test modules; the helpers behind them live in tests/support."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# `tests.support` must import the same way under `pytest` and `python -m pytest`.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import Server, StartDemo, demo_command, free_port, serve  # noqa: E402
from tests.support.load import cpu_hog, cpu_hog_requested  # noqa: E402

_HOG: contextlib.ExitStack | None = None


def pytest_configure(config: pytest.Config) -> None:
    """With INFERWATCH_TEST_CPU_HOG=1, a busy loop on every core for the whole run: the suite
    must pass on a busy machine, since each test asserts only what it controls. One for the
    run, started by the process that runs or distributes the tests, not by each worker."""
    global _HOG
    if cpu_hog_requested() and "PYTEST_XDIST_WORKER" not in os.environ:
        _HOG = contextlib.ExitStack()
        _HOG.enter_context(cpu_hog())


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HOG is not None:
        _HOG.close()


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    """A data directory for a stack that runs its own PostgreSQL, which as root runs as the
    ``postgres`` user and must reach its files: outside pytest's temporary tree, whose root
    every new pytest session of the same user makes 0700 again (locking that user out of a
    server already running)."""
    path = Path(tempfile.mkdtemp(prefix="inferwatch-stack-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[StartDemo]:
    """Start ``inferwatch demo`` on a free loopback port: ``start_demo("--seed", "7")``.

    Every server started is stopped (SIGTERM, then SIGKILL) when the test ends.
    """
    with contextlib.ExitStack() as stack:

        def start(*options: str, time_scale: float = 0.01, timeout: float = 30.0) -> Server:
            port = free_port()
            return stack.enter_context(
                serve(
                    demo_command(port, *options, time_scale=time_scale),
                    port=port,
                    log_path=tmp_path / f"demo-{port}.log",
                    timeout=timeout,
                )
            )

        yield start


@pytest.fixture
def demo_server(start_demo: StartDemo) -> Server:
    """A fresh demo service at 1/100 speed with a fixed seed: every count starts at zero."""
    return start_demo("--seed", "1234", "--no-access-log")


@pytest.fixture
def client(demo_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo_server.url, timeout=10.0) as http:
        yield http


# Real Redis and PostgreSQL servers (session-scoped; see tests/support/backends.py).
from tests.support.backends import postgres_server, redis_server  # noqa: E402, F401
