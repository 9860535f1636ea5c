"""No process of the stack outlives its runner: children die with a SIGKILLed `stack up`, and
the next start stops what a dead runner left behind, never a process that merely reuses a
recorded pid, nor the processes of a runner that is still alive."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from inferwatch.stack import Ports, Stack, StackError
from inferwatch.stack.children import PID_FILE
from tests.support import wait_until
from tests.support.server import inferwatch_command
from tests.test_stack import ports, settings

COMPONENTS = {"alert-sink", "alertmanager", "demo", "exporter", "prometheus"}
# `stack up` also runs its own Redis and PostgreSQL (PostgreSQL as another user when root).
CLI_COMPONENTS = COMPONENTS | {"redis", "postgres"}


def stack_up(data_dir: Path, p: Ports, *extra: str) -> list[str]:
    return [
        *inferwatch_command(), "stack", "up", "--data-dir", str(data_dir),
        "--prometheus-port", str(p.prometheus), "--alertmanager-port", str(p.alertmanager),
        "--alert-sink-port", str(p.alert_sink), "--demo-port", str(p.demo),
        "--exporter-port", str(p.exporter), "--scrape-interval", "1s",
        "--evaluation-interval", "1s", "--demo-time-scale", "0.01", "--status-interval", "0.5",
        *extra,
    ]  # fmt: skip


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # dead, whoever reaps it
    except psutil.NoSuchProcess:
        return True


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def leftovers() -> Iterator[list[psutil.Process]]:
    """Processes a test may leave behind when what it guards is broken: killed at the end."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        if not gone(proc):
            proc.kill()


def test_children_die_with_a_killed_runner(
    tmp_path: Path, stack_dir: Path, leftovers: list[psutil.Process]
) -> None:
    p = ports()
    out = tmp_path / "runner.out"
    with out.open("wb") as sink:
        runner = subprocess.Popen(stack_up(stack_dir, p), stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: "[7/7] prometheus healthy" in out.read_text() or runner.poll() is not None,
            timeout=120,
            message=lambda: f"every component healthy; runner said:\n{out.read_text()}",
        )
        assert runner.poll() is None, out.read_text()
        children = psutil.Process(runner.pid).children()
        family = psutil.Process(runner.pid).children(recursive=True)
        leftovers += family
        recorded = json.loads((stack_dir / PID_FILE).read_text())
        assert recorded["runner"]["pid"] == runner.pid
        assert {c["name"] for c in recorded["children"]} == CLI_COMPONENTS
        assert sorted(c["pid"] for c in recorded["children"]) == sorted(c.pid for c in children)
    finally:
        runner.kill()
        runner.wait()

    wait_until(
        lambda: all(gone(proc) for proc in family),
        timeout=30,
        message=lambda: (
            f"the runner's children to exit; alive: {[p for p in family if not gone(p)]}"
        ),
    )
    assert [name for name, port in p.items() if listening(port)] == []

    # Same data directory, same ports: nothing is in the way, nothing stale to report.
    done = subprocess.run(
        stack_up(stack_dir, p, "--exit-when-up"), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "targets up 5/5" in done.stdout
    assert "stopped what a dead stack left" not in done.stdout
    assert not (stack_dir / PID_FILE).exists()  # a stack that stopped leaves no pid file


def sleeper(*code: str) -> subprocess.Popen[bytes]:
    """A Python process in its own session, running ``code`` and then sleeping."""
    program = "\n".join([*code, "import time", "time.sleep(600)"])
    return subprocess.Popen([sys.executable, "-c", program], start_new_session=True)


def write_pid_file(data_dir: Path, runner: dict, children: list[dict]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / PID_FILE).write_text(json.dumps({"runner": runner, "children": children}))


def entry(name: str, proc: subprocess.Popen[bytes], started_offset: float = 0.0) -> dict:
    started = psutil.Process(proc.pid).create_time() + started_offset
    return {"name": name, "pid": proc.pid, "started": started}


def test_a_dead_runners_survivors_are_stopped_and_a_reused_pid_is_not(tmp_path: Path) -> None:
    config = settings(tmp_path)
    port = config.ports.prometheus
    # A Prometheus the dead runner left holding its port (PDEATHSIG was not possible) ...
    stale = sleeper(
        "import socket",
        "s = socket.socket()",
        f"s.bind(('127.0.0.1', {port}))",
        "s.listen()",
    )
    # ... and a pid recorded for the exporter, since taken by an unrelated process: it
    # started later than the recorded start time.
    unrelated = sleeper()
    dead_runner = subprocess.Popen([sys.executable, "-c", ""])
    dead_runner.wait()
    try:
        wait_until(lambda: listening(port), timeout=30, message="the stale child's port")
        write_pid_file(
            tmp_path,
            {"name": "runner", "pid": dead_runner.pid, "started": 1.0},
            [entry("prometheus", stale), entry("exporter", unrelated, started_offset=-100.0)],
        )
        said: list[str] = []
        Stack(config).prepare(progress=said.append)  # the port is free again: no error
        assert said == [
            f"stopped what a dead stack left running in {tmp_path}: prometheus (pid {stale.pid})"
        ]
        # Stopped and reaped (the stack waits for it: in this test it is the stack's child).
        assert stale.poll() is not None and not listening(port)
        assert unrelated.poll() is None
        assert not (tmp_path / PID_FILE).exists()
    finally:
        for proc in (stale, unrelated):
            proc.kill()
            proc.wait()


def test_the_children_of_a_live_runner_are_left_alone(tmp_path: Path) -> None:
    child = sleeper()
    try:
        me = psutil.Process(os.getpid())
        write_pid_file(
            tmp_path,
            {"name": "runner", "pid": me.pid, "started": me.create_time()},
            [entry("prometheus", child)],
        )
        with pytest.raises(StackError, match=rf"a stack already runs from .* \(pid {me.pid}\)"):
            Stack(settings(tmp_path)).prepare()
        assert child.poll() is None
        assert (tmp_path / PID_FILE).exists()
    finally:
        child.kill()
        child.wait()


def recorded_children(data_dir: Path) -> dict[str, int]:
    body = json.loads((data_dir / PID_FILE).read_text())
    return {child["name"]: child["pid"] for child in body["children"]}


def test_the_pid_file_follows_stops_and_restarts(tmp_path: Path) -> None:
    with Stack(settings(tmp_path)) as stack:
        pids = {name: stack.supervisor.pid(name) for name in COMPONENTS}
        assert recorded_children(tmp_path) == pids
        stack.stop_component("exporter")
        assert set(recorded_children(tmp_path)) == COMPONENTS - {"exporter"}
        stack.start_component("exporter")
        assert recorded_children(tmp_path) == pids | {"exporter": stack.supervisor.pid("exporter")}
    assert not (tmp_path / PID_FILE).exists()
