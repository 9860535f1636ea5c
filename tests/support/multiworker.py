"""A real ``uvicorn --workers N`` server in multiprocess mode, for tests that kill its workers.

The server runs ``tests/apps/multiworker_app.py`` with a fresh ``PROMETHEUS_MULTIPROC_DIR``;
the test talks to it over real TCP connections, a new one per request so that the kernel
may hand each to any worker, and reads /metrics the way Prometheus would.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from .metrics import Exact, Metrics
from .polling import wait_until
from .server import LOOPBACK, Server, free_port, serve

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.multiworker_app:app"
# Same names as in tests/apps/multiworker_app.py (importing it would instrument this process).
CONTROL_DIR_ENV = "MULTIWORKER_CONTROL_DIR"
PID_HEADER = "X-Worker-Pid"
START_TIMEOUT = 60.0  # a worker imports FastAPI and inferwatch; slow on a busy machine


def exited(pid: int) -> bool:
    """The process runs no more code (a zombie waiting for its parent counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass
class Workers:
    server: Server
    count: int
    multiproc_dir: Path
    control_dir: Path

    def get(self, path: str) -> tuple[int, int, bytes]:
        """GET over a new connection: (status, serving worker's pid, body)."""
        conn = http.client.HTTPConnection(LOOPBACK, self.server.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            return response.status, int(response.getheader(PID_HEADER) or 0), body
        finally:
            conn.close()

    def send(self, paths: str | Sequence[str], n: int = 1, status: int = 200) -> Counter[int]:
        """GET ``paths`` (or one path ``n`` times), 8 at a time; how many each pid served.
        Every response must have ``status``."""
        todo = [paths] * n if isinstance(paths, str) else list(paths)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(self.get, todo))
        wrong = [(path, r[0]) for path, r in zip(todo, results, strict=True) if r[0] != status]
        assert not wrong, f"expected {status} for every request, got {wrong[:5]}"
        return Counter(pid for _, pid, _ in results)

    def text(self) -> str:
        status, _, body = self.get("/metrics")
        assert status == 200, body
        return body.decode()

    def scrape(self) -> Metrics:
        return Metrics(self.text())

    def samples(self) -> Exact:
        """Every sample of one scrape, keyed by (name, exact label set)."""
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(self.text())
            for s in family.samples
        }

    def workers(self) -> set[int]:
        """Pids of the live worker processes (not the resource tracker, not zombies)."""
        pids = set()
        for child in psutil.Process(self.server.executor.process.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "spawn_main" in " ".join(child.cmdline()) and (
                    child.status() != psutil.STATUS_ZOMBIE
                ):
                    pids.add(child.pid)
        return pids

    def wait_all_serving(self) -> set[int]:
        """Wait until every worker the supervisor runs has answered a request."""
        seen: set[int] = set()

        def all_answered() -> set[int]:
            seen.update(self.send("/healthz", 2 * self.count))
            live = self.workers()
            return live if len(live) == self.count and live <= seen else set()

        return wait_until(
            all_answered,
            START_TIMEOUT,
            interval=0.05,
            message=lambda: f"{self.count} serving workers (seen {seen})",
        )

    def kill_all(self) -> set[int]:
        """SIGKILL every worker and wait until each has exited; the supervisor restarts
        them (wait for that with :meth:`wait_all_serving`)."""
        victims = self.workers()
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: all(exited(p) for p in victims), 20.0, message="the workers to die")
        return victims

    def db_files(self) -> list[str]:
        return sorted(p.name for p in self.multiproc_dir.glob("*.db"))

    def release_all(self) -> None:
        for started in self.control_dir.glob("started-*"):
            token = started.name.removeprefix("started-")
            (self.control_dir / f"release-{token}").touch()


@contextlib.contextmanager
def multiworker(
    tmp_path: Path,
    workers: int = 2,
    *,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
    app: str = APP,
) -> Iterator[Workers]:
    """Start ``uvicorn --workers`` on ``app`` (the test app unless given: any app of
    tests/apps that names its worker in ``X-Worker-Pid``, /healthz included); yield once
    every worker serves.

    ``wrapper`` is a command line the uvicorn command is appended to (it must exec it);
    ``$PROMETHEUS_MULTIPROC_DIR`` names the directory in its environment.
    """
    multiproc_dir = tmp_path / "multiproc"
    control_dir = tmp_path / "control"
    multiproc_dir.mkdir()
    control_dir.mkdir()
    port = free_port()
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    command = [
        *wrapper, sys.executable, "-m", "uvicorn", app, "--host", LOOPBACK, "--port", str(port),
        "--workers", str(workers), "--no-access-log",
    ]  # fmt: skip
    environment = {
        # Set before the workers' interpreters start: prometheus_client picks its value
        # class at import time.
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        CONTROL_DIR_ENV: str(control_dir),
        "PYTHONPATH": pythonpath,
        **(env or {}),
    }
    log = tmp_path / "server.log"
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: print(log.read_text(errors="replace")[-4000:]))  # failed tests
        server = stack.enter_context(
            serve(command, port=port, log_path=log, env=environment, timeout=START_TIMEOUT)
        )
        srv = Workers(server, workers, multiproc_dir, control_dir)
        # uvicorn's graceful shutdown waits for in-flight requests: release them first.
        stack.callback(srv.release_all)
        srv.wait_all_serving()
        yield srv
