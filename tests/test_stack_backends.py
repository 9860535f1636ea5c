"""The default stack runs a real Redis and a real PostgreSQL of its own: the demo keeps its
cache and its table there, the exporter's collectors watch them, their passwords are on no
command line and in no log, and a stopped stack leaves none of their processes or running
state behind. A backend the demo cannot reach shows in the status, and `--exit-when-up`
does not pass while it cannot."""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
import urllib.parse
from pathlib import Path

import httpx
import psutil

from inferwatch.stack import Stack
from inferwatch.stack.settings import BACKENDS
from tests.support import free_port, wait_for_metrics, wait_until
from tests.support.server import inferwatch_command
from tests.test_stack import ports, query, settings
from tests.test_stack_orphans import gone, stack_up

ORDER = ["alert-sink", "alertmanager", "redis", "postgres", "demo", "exporter", "prometheus"]
CACHE = {"cache": "demo-conditioning"}
PG = {"db_system_name": "postgresql", "db_client_connection_pool_name": "demo-db"}
PRIVATE = ("redis-password", "postgres-password", "redis-url", "postgres-url", "redis.conf")


def family(stack: Stack) -> list[psutil.Process]:
    """Every process of the stack: its components and theirs (PostgreSQL's backends)."""
    procs = []
    for name in stack.supervisor.started():
        pid = stack.supervisor.pid(name)
        assert pid is not None, name
        proc = psutil.Process(pid)
        procs += [proc, *proc.children(recursive=True)]
    return procs


def exporter_figures(stack: Stack) -> dict[str, float]:
    """The exporter's view of the backends, as Prometheus has it."""
    promql = (
        '{__name__=~"inferwatch_(redis|postgres)_up"} or '
        'inferwatch_exporter_collector_success{collector=~"redis|postgres"}'
    )
    found = {}
    for sample in query(stack, promql):
        metric = sample["metric"]
        key = metric.get("collector", metric["__name__"])
        found[key] = float(sample["value"][1])
    return found


def test_the_default_stack_runs_its_own_redis_and_postgres(stack_dir: Path) -> None:
    config = settings(stack_dir, embedded_backends=BACKENDS)
    first: list[str] = []
    stack = Stack(config)
    try:
        stack.start(progress=first.append)
    finally:
        stack.stop()
    assert f"initialising PostgreSQL's data directory {stack_dir / 'postgres'} ..." in first
    # The second start: the same data directory, hence the same cluster and password.
    said: list[str] = []
    stack = Stack(config)
    stack.start(progress=said.append)
    try:
        s = stack.settings
        assert [c.name for c in stack.components] == ORDER
        assert s.redis_url and s.postgres_url
        for url in (s.redis_url, s.postgres_url):
            assert urllib.parse.urlsplit(url).hostname == "127.0.0.1"
        for name in PRIVATE:
            assert stat.S_IMODE((s.config_dir / name).stat().st_mode) == 0o600, name
        secrets = [(s.config_dir / f"{b}-password").read_text().strip() for b in BACKENDS]
        assert all(len(secret) >= 32 for secret in secrets)
        # On no command line: neither as started (Redis rewrites its process title) nor as
        # the process list shows it now; nor in any child's environment.
        for component in stack.components:
            assert not any(secret in " ".join(component.command) for secret in secrets)
        procs = family(stack)
        for proc in procs:
            shown = " ".join(proc.cmdline()) + " ".join(proc.environ().values())
            assert not any(secret in shown for secret in secrets), proc
        postgres = psutil.Process(stack.supervisor.pid("postgres"))
        assert postgres.username() == ("postgres" if os.geteuid() == 0 else getpass.getuser())

        # The demo keeps its cache in the Redis and its table in the PostgreSQL.
        demo = s.url("demo")
        body = {"prompt": "harbour bells", "duration_seconds": 1.0}
        codes = [httpx.post(f"{demo}/v1/audio/generate", json=body, timeout=30).status_code
                 for _ in range(3)]  # fmt: skip
        assert codes == [200, 200, 200]
        gets = "inferwatch_cache_gets_total"
        m = wait_for_metrics(demo, lambda m: m.value(gets, result="hit", **CACHE) == 2, show=gets)
        assert m.value(gets, result="miss", **CACHE) == 1
        assert m.value("inferwatch_cache_shared_entries", **CACHE) == 1
        assert m.value("db_client_connection_max", **PG) == 5
        assert m.value("db_client_operation_duration_seconds_count", db_operation_name="INSERT",
                       **PG) == 3  # fmt: skip
        redis_port = urllib.parse.urlsplit(s.redis_url).port
        postgres_port = urllib.parse.urlsplit(s.postgres_url).port
        assert (
            f"database postgresql://127.0.0.1:{postgres_port}/postgres; "
            f"cache redis://127.0.0.1:{redis_port}/0"
        ) in (s.log_dir / "demo.log").read_text()

        # The exporter's Redis and PostgreSQL collectors are up, and so is everything else.
        want = {"inferwatch_redis_up": 1.0, "inferwatch_postgres_up": 1.0, "redis": 1.0,
                "postgres": 1.0}  # fmt: skip
        wait_until(lambda: exporter_figures(stack) == want, 60, interval=0.5,
                   message=lambda: f"exporter figures {exporter_figures(stack)}")  # fmt: skip
        status = wait_until(
            lambda: (found := stack.status()) is not None and found.all_up and found,
            60,
            interval=0.5,
            message=lambda: f"all up: {stack.status()}",
        )
        assert "backends" not in status.line()
        logs = "".join(path.read_text(errors="replace") for path in s.log_dir.iterdir())
        assert not any(secret in logs for secret in secrets)
    finally:
        stack.stop()

    assert not [line for line in said if "initialising" in line]
    wait_until(lambda: all(gone(proc) for proc in procs), 30, message="the stack's processes")
    everywhere = [
        proc.info["pid"]
        for proc in psutil.process_iter(["pid", "cmdline"])
        if str(stack_dir) in " ".join(proc.info["cmdline"] or ())
    ]
    assert everywhere == []
    running_state = [
        path.relative_to(stack_dir)
        for path in stack_dir.rglob("*")
        if path.suffix == ".pid" or path.is_socket() or path.name.endswith(".lock")
    ]
    assert running_state == []


def test_a_backend_the_demo_cannot_reach_shows_and_fails_exit_when_up(tmp_path: Path) -> None:
    password = "pw-Unreachable-7f3a"
    nothing = f"redis://:{password}@127.0.0.1:{free_port()}/0"  # nothing listens there
    url_file = tmp_path / "redis-url"
    url_file.write_text(nothing + "\n")
    url_file.chmod(0o600)
    done = subprocess.run(
        stack_up(tmp_path / "stack", ports(), "--redis-url-file", str(url_file),
                 "--no-postgres", "--exit-when-up", "--startup-timeout", "30"),
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "backends: redis unreachable" in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("inferwatch stack up: not all up within 30 s: targets up 5/5 ")
    assert "backends: redis unreachable" in last
    assert password not in done.stdout + done.stderr
    assert inferwatch_command()  # the same interpreter's inferwatch ran it
