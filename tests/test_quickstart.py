"""The README's quick start, run as written: its app.py, its shell lines, its curl scrapes.

Everything is taken from the "Instrumenting your own service" section of README.md, so the
test fails when the README drifts from what works. Only the ports change (free loopback
ports instead of 8000 and 9464, so that tests can run side by side), and each ``curl`` line
is sent with httpx, header for header.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.metrics import Metrics
from tests.support.polling import wait_until
from tests.support.server import LOOPBACK, Server, free_port, serve

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Instrumenting your own service"
README_APP_PORT = "127.0.0.1:8000"
README_METRICS_PORT = 9464
ROUTE = "/v1/generate/{model}"
START_TIMEOUT = 60.0  # a worker imports FastAPI and inferwatch; slow on a busy machine
REQUESTS = 20


@dataclass(frozen=True)
class QuickStart:
    app: str  # the python block: app.py
    setup: list[str]  # shell lines run before the server (the token)
    serve: str  # the uvicorn line for one worker
    curls: list[str]  # the curl lines, in order
    workers_setup: list[str]  # shell lines before the several-workers server
    workers_serve: str  # the uvicorn line for several workers


def quick_start() -> QuickStart:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    python = [body for lang, body in blocks if lang == "python"]
    shell = [body.splitlines() for lang, body in blocks if lang == "sh"]
    assert len(python) == 1 and len(shell) == 2, "one app.py and two shell blocks"
    first, several = shell

    def split(lines: list[str]) -> tuple[list[str], str, list[str]]:
        (server,) = [line for line in lines if " uvicorn " in f" {line}"]
        curls = [line for line in lines if line.startswith("curl ")]
        before = lines[: lines.index(server)]
        return before, server, curls

    setup, server, curls = split(first)
    workers_setup, workers_server, workers_curls = split(several)
    assert not workers_curls and "--workers 2" in workers_server
    return QuickStart(python[0], setup, server, curls, workers_setup, workers_server)


def curl(line: str, token: str, *, app_port: int, metrics_port: int) -> httpx.Response:
    """``line``, a README curl command, sent with httpx on a new connection."""
    line = line.replace("$(cat token)", token)
    line = line.replace(README_APP_PORT, f"{LOOPBACK}:{app_port}")
    line = line.replace(f":{README_METRICS_PORT}/", f":{metrics_port}/")
    words = shlex.split(line)[1:]
    method, headers, url = "GET", {}, None
    while words:
        word = words.pop(0)
        if word == "-X":
            method = words.pop(0)
        elif word == "-H":
            name, _, header_value = words.pop(0).partition(":")
            headers[name] = header_value.strip()
        else:
            assert url is None and not word.startswith("-"), f"curl option {word!r}"
            url = f"http://{word}"
    assert url is not None
    return httpx.request(method, url, headers=headers, timeout=10)


def shell_env() -> dict[str, str]:
    """The user's shell after the install line: this environment's python and uvicorn."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def run_shell(line: str, cwd: Path) -> None:
    subprocess.run(["bash", "-c", line], cwd=cwd, env=shell_env(), check=True, timeout=60)


@dataclass
class Project:
    """The user's directory: app.py as the README gives it, on a free metrics port."""

    path: Path
    guide: QuickStart
    metrics_port: int

    def command(self, line: str, app_port: int) -> list[str]:
        """``line`` typed in the project's directory (stopping the test's server stops the
        shell's whole process group, uvicorn included)."""
        cd = f"cd {shlex.quote(str(self.path))}"
        return ["bash", "-c", f"{cd} && {line} --host {LOOPBACK} --port {app_port}"]

    @property
    def token(self) -> str:
        return (self.path / "token").read_text().strip()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    guide = quick_start()
    assert f"start_metrics_server({README_METRICS_PORT}," in guide.app
    metrics_port = free_port()
    app = guide.app.replace(f"({README_METRICS_PORT},", f"({metrics_port},")
    (tmp_path / "app.py").write_text(app)
    return Project(tmp_path, guide, metrics_port)


@pytest.fixture
def running(project: Project, request: pytest.FixtureRequest) -> Iterator[tuple[Server, int]]:
    """The service started the way the README says, with the workers given by the test."""
    workers = request.param
    for line in project.guide.setup:
        run_shell(line, project.path)
    if workers == "multiprocess":
        for line in project.guide.workers_setup:
            run_shell(line, project.path)
        line, workers = project.guide.workers_serve, 2
    elif workers == 1:
        line = project.guide.serve
    else:
        line = f"{project.guide.serve} --workers {workers}"  # several, without the directory
    port = free_port()
    log = project.path / "server.log"
    env = {"PATH": shell_env()["PATH"]}
    command = project.command(line, port)
    with serve(command, port=port, log_path=log, ready_path="/openapi.json", env=env,
               timeout=START_TIMEOUT) as server:  # fmt: skip
        wait_until(
            lambda: len(worker_pids(server)) == workers,
            START_TIMEOUT,
            interval=0.05,
            message=lambda: f"{workers} workers, not {worker_pids(server)}",
        )
        yield server, workers


def worker_pids(server: Server) -> set[int]:
    """The uvicorn workers (spawned processes), or uvicorn itself when it runs alone."""
    shell = psutil.Process(server.executor.process.pid)
    # bash may have become uvicorn (it execs a last command), or be its parent
    processes = {p.pid: p.cmdline() for p in [shell, *shell.children(recursive=True)]}
    workers = {pid for pid, argv in processes.items() if "spawn_main" in " ".join(argv)}
    return workers or {pid for pid, argv in processes.items() if "app:app" in argv}


def listening_on(pid: int, port: int) -> bool:
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr.port == port
        for c in psutil.Process(pid).net_connections("tcp")
    )


def generated(metrics: Metrics) -> float | None:
    return metrics.value("http_server_request_duration_seconds_count", http_route=ROUTE)


@pytest.mark.parametrize("running", [1, "multiprocess"], indirect=True)
def test_the_quick_start_counts_every_request(project: Project, running) -> None:
    server, workers = running
    ports = {"app_port": server.port, "metrics_port": project.metrics_port}
    request_line, scrape_line = project.guide.curls
    # Every worker took its own share of the metrics port: both listen on it.
    wait_until(
        lambda: all(listening_on(pid, project.metrics_port) for pid in worker_pids(server)),
        START_TIMEOUT,
        message="every worker listening on the metrics port",
    )
    assert curl(request_line, project.token, **ports).status_code == 200
    for _ in range(REQUESTS):  # a new connection each: the kernel spreads them over workers
        assert curl(request_line, project.token, **ports).status_code == 200
    denied = curl(scrape_line, "wrong-token", **ports)
    assert denied.status_code == 401
    # Whichever worker a scrape reaches, it answers for all of them.
    for _ in range(4 * workers):
        scrape = curl(scrape_line, project.token, **ports)
        assert scrape.status_code == 200
        assert generated(Metrics(scrape.text)) == REQUESTS + 1
    log = server.log()
    assert "Traceback" not in log and "WARNING" not in log and "in use" not in log, log


@pytest.mark.parametrize("running", [2], indirect=True)
def test_several_workers_without_the_directory_serve_requests(project: Project, running) -> None:
    server, _ = running
    ports = {"app_port": server.port, "metrics_port": project.metrics_port}
    request_line, scrape_line = project.guide.curls
    warning = f"metrics port {LOOPBACK}:{project.metrics_port} is in use, so process "

    def warned() -> list[str]:
        return [line for line in server.log().splitlines() if line.startswith(warning)]

    (line,) = wait_until(warned, START_TIMEOUT, message="the second worker's warning")
    assert "set PROMETHEUS_MULTIPROC_DIR to an empty directory" in line
    pid = int(line.removeprefix(warning).split()[0])
    assert pid in worker_pids(server)  # it warned, and it is still running
    for _ in range(REQUESTS):
        assert curl(request_line, project.token, **ports).status_code == 200
    assert curl(scrape_line, project.token, **ports).status_code == 200
    assert warned() == [line] and len(worker_pids(server)) == 2
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("line", ["serve", "workers_serve"])
def test_a_missing_token_file_is_one_line(project: Project, line: str) -> None:
    guide = project.guide
    for setup in guide.workers_setup if line == "workers_serve" else []:
        run_shell(setup, project.path)
    command = project.command(getattr(guide, line), free_port())
    result = subprocess.run(
        command, env=shell_env(), capture_output=True, text=True, timeout=START_TIMEOUT
    )
    output = result.stdout + result.stderr
    message = (
        "cannot read token ($INFERWATCH_METRICS_TOKEN_FILE) from file 'token': No such file "
        "or directory; create it with python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))' > token && chmod 600 token, or set "
        "$INFERWATCH_METRICS_TOKEN_FILE to the file that holds the token"
    )
    assert "Traceback" not in output, output
    if line == "serve":
        assert result.returncode == 3 and output.splitlines() == [message], output
    else:  # each worker says it once, and the supervisor stops instead of restarting them
        assert output.splitlines().count(message) == 2, output
        assert "failed to start, stopping the parent process" in output, output
