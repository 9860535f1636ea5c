"""Run a real server in a subprocess on a free loopback port, through mirakuru."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mirakuru import HTTPExecutor
from mirakuru.exceptions import ProcessExitedWithError, TimeoutExpired

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the OS picks it; the race window is tiny)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def inferwatch_command() -> list[str]:
    """The ``inferwatch`` console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "inferwatch"
    if script.exists():
        return [str(script)]
    found = shutil.which("inferwatch")
    return [found] if found else [sys.executable, "-m", "inferwatch.cli.main"]


def demo_command(port: int, *options: str, time_scale: float = 0.01) -> list[str]:
    return [
        *inferwatch_command(),
        "demo",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--time-scale",
        repr(time_scale),
        *options,
    ]


@dataclass
class Server:
    host: str
    port: int
    log_path: Path
    executor: HTTPExecutor

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# The `start_demo` fixture: start_demo(*cli_options, time_scale=0.01) -> Server
StartDemo = Callable[..., Server]


def _tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@contextlib.contextmanager
def serve(
    command: Sequence[str],
    *,
    port: int,
    log_path: Path,
    host: str = LOOPBACK,
    ready_path: str = "/healthz",
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[Server]:
    """Start ``command``, wait until ``GET ready_path`` answers 2xx, stop it on exit.

    Output goes to ``log_path`` rather than a pipe: a pipe nobody reads fills up and blocks a
    server that logs every request. The log is shown when the server fails to start.
    """
    environment = {
        # A multiprocess directory inherited from the test run must not leak into the server.
        "PROMETHEUS_MULTIPROC_DIR": "",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    with open(log_path, "w") as log:
        executor = HTTPExecutor(
            list(command),
            url=f"http://{host}:{port}{ready_path}",
            method="GET",
            status=r"^2\d\d$",
            timeout=timeout,
            sleep=0.05,
            envvars=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            executor.start()
        except (ProcessExitedWithError, TimeoutExpired) as exc:
            raise RuntimeError(
                f"server did not start: {exc}\n--- {log_path} ---\n{_tail(log_path)}"
            ) from None
        try:
            yield Server(host, port, log_path, executor)
        finally:
            executor.stop()
