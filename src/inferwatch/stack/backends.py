"""The stack's own Redis and PostgreSQL, for each of the two the user names no URL for: the
demo keeps its cache and its database there, and the exporter's Redis and PostgreSQL
collectors report on them, so every dashboard has data from the first start.

Each listens on a free loopback port chosen at every start and requires a password that is
generated once per data directory into a 0600 file under ``config/``; the URLs reach the
demo and the exporter as 0600 files too (never a command line, never a log line). Their
data lives under the stack's data directory: ``redis/`` (nothing is persisted: it is a
cache) and ``postgres/`` (initialised on the first start, kept like Prometheus's data).
PostgreSQL refuses to run as root; as root it runs as the unprivileged ``postgres`` user
(:mod:`inferwatch.stack.postgres`).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from inferwatch.exporters.redact import redact_url
from inferwatch.stack import postgres
from inferwatch.stack.components import Component, Probe, find_binary
from inferwatch.stack.configs import secret, write_private
from inferwatch.stack.settings import StackSettings

LOOPBACK = "127.0.0.1"
# The superuser initdb creates, and the database the demo and the exporter connect to.
PG_USER = "inferwatch"
PG_DATABASE = "postgres"
INITDB_TIMEOUT = 120.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class OwnBackend:
    """One backend the stack runs: its process, and the URL its clients connect with."""

    name: str  # "redis" or "postgres": the settings' <name>_url
    component: Component
    url: str = field(repr=False)
    # Runs before the component starts, on every start (PostgreSQL's initdb, once).
    prepare: Callable[[Progress], None] = lambda progress: None


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def own_backends(settings: StackSettings) -> list[OwnBackend]:
    """The backends to run for ``settings`` (:attr:`StackSettings.backends_to_run`), in
    start order. Finds the binaries and settles ports and passwords; starts nothing."""
    made = {"redis": _redis, "postgres": _postgres}
    return [made[name](settings) for name in settings.backends_to_run]


def _password(settings: StackSettings, name: str) -> str:
    return secret(settings.config_dir / f"{name}-password")


def _redis(settings: StackSettings) -> OwnBackend:
    binary = find_binary("redis-server", package="redis-server")
    port, password = free_port(), _password(settings, "redis")
    work_dir = (settings.data_dir / "redis").resolve()
    config = settings.config_dir.resolve() / "redis.conf"
    # The password is in this 0600 file: on the command line every user could read it.
    text = "\n".join(
        [
            f"bind {LOOPBACK}",
            f"port {port}",
            f"requirepass {password}",
            f"dir {work_dir}",
            'save ""',  # a cache: nothing on disk, nothing to clean up
            "appendonly no",
            "daemonize no",
            'logfile ""',  # stdout, which is the component's log
            "",
        ]
    )
    url = f"redis://:{quote(password, safe='')}@{LOOPBACK}:{port}/0"

    def prepare(progress: Progress) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_private(config, text)

    component = Component(
        "redis",
        [binary, str(config)],
        f"{LOOPBACK}:{port}",
        _redis_ready(port, password),
        redact_url(url),
        "Redis (the demo's cache)",
    )
    return OwnBackend("redis", component, url, prepare)


def _redis_ready(port: int, password: str) -> Probe:
    def ready() -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host=LOOPBACK,
            port=port,
            password=password,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 0),  # one answer per probe: the supervisor polls
        )
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    return ready


def _postgres(settings: StackSettings) -> OwnBackend:
    server, initdb = postgres.program("postgres"), postgres.program("initdb")
    user = postgres.server_user()
    port, password = free_port(), _password(settings, "postgres")
    data = (settings.data_dir / "postgres").resolve()
    log = (settings.log_dir / "postgres.log").resolve()
    url = f"postgresql://{PG_USER}:{quote(password, safe='')}@{LOOPBACK}:{port}/{PG_DATABASE}"

    def prepare(progress: Progress) -> None:
        if user is not None:
            opened = postgres.share_with(user, data)
            if opened:
                shown = ", ".join(map(str, opened))
                progress(f"PostgreSQL runs as {user.pw_name} (not root); it may now pass "
                         f"through {shown} (o+x: search only)")  # fmt: skip
        if (data / "PG_VERSION").exists():
            return
        if any(data.iterdir()):
            raise OSError(f"{data} holds something other than a PostgreSQL cluster; remove it")
        progress(f"initialising PostgreSQL's data directory {data} ...")
        _initdb(initdb, data, password, user, log)

    command = [server, "-D", str(data), "-p", str(port),
               "-c", f"listen_addresses={LOOPBACK}",
               "-c", "unix_socket_directories="]  # TCP only: no socket files anywhere  # fmt: skip
    component = Component(
        "postgres",
        command,
        f"{LOOPBACK}:{port}",
        _postgres_ready(url),
        redact_url(url),
        "PostgreSQL (the demo's database)",
        user=user.pw_name if user is not None else None,
        stop_signal=postgres.FAST_SHUTDOWN,
    )
    return OwnBackend("postgres", component, url, prepare)


def _initdb(initdb: str, data: Path, password: str, user: object, log: Path) -> None:
    """A new cluster in ``data``, its superuser :data:`PG_USER` with ``password`` (from a
    file that initdb's user can read and that exists only while it runs)."""
    pwfile = data.parent / ".postgres-password.tmp"
    write_private(pwfile, password + "\n")
    try:
        if user is not None:
            postgres.give(pwfile, user)
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [initdb, "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
                   "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"]  # fmt: skip
        with log.open("ab") as out:
            done = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=INITDB_TIMEOUT,
                **postgres.as_user(user),  # type: ignore[arg-type]
            )
        if done.returncode != 0:
            raise OSError(f"initdb failed (exit status {done.returncode}); see {log}")
    finally:
        pwfile.unlink(missing_ok=True)


def _postgres_ready(url: str) -> Probe:
    def ready() -> bool:
        import psycopg

        try:
            psycopg.connect(url, connect_timeout=2).close()
        except (psycopg.Error, OSError):
            return False
        return True

    return ready
