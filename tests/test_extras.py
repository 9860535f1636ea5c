"""Each extra, installed alone into a fresh environment, does what it is for.

The development environment has every extra at once, so a module that imports a package
only another extra (or the dev tools) declares works there and fails for a user who
installs just the extra that promises it. Here the project is built into a wheel once, the
wheels of every extra's requirements are downloaded once into a folder (pip's own
resolution, through the configured index), and each extra is installed into its own empty
virtual environment from that folder alone (``--no-index``), then made to do its job: the
core serves /metrics on a port, ``fastapi`` instruments an app and serves a request,
``alerts`` generates the rules and finds them current, ``demo`` starts the demo and serves a
generation, and so on. Nothing outside the wheelhouse is reachable to the installs, so a
requirement missing from an extra fails its check.

The static tests beside them keep the declarations honest both ways: every third-party
package the wheel imports is declared, and every declared package is imported somewhere.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "inferwatch"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
CORE: list[str] = PYPROJECT["project"]["dependencies"]
# Unions of the others: `all` is installed by `dev`, which is the environment every other
# test runs in.
UNIONS = {"all", "dev"}
INSTALL_TIMEOUT = 600.0
CHECK_TIMEOUT = 120.0

# What the scripts below share: a free port, and a GET or POST that returns (status, text).
PRELUDE = """
import json, socket, subprocess, sys, time, urllib.error, urllib.request

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def call(url, body=None, timeout=10.0):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")

def wait_for(url, seconds=60.0):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call(url, timeout=2.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

def asgi(app, method, path, body=b""):
    # One HTTP request through an ASGI app, without an HTTP client or server.
    import asyncio
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"test")], "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, text.decode()

def cli(*args):
    return subprocess.run(["inferwatch", *args], capture_output=True, text=True)

def lines(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]
"""


@dataclass(frozen=True)
class Check:
    """A script run with the extra's interpreter, in an empty folder, and what it prints."""

    script: str
    expected: list[str]


# What each extra is for, shown by doing it. Every extra in pyproject.toml but the unions
# has one (test_every_extra_has_a_check).
CHECKS: dict[str, Check] = {
    "": Check(
        # The core: metric types, /metrics on a separate port (uvicorn with h11), the AI
        # facades, the exporter's configuration (TOML) and the command line, which names the
        # extra a command lacks.
        """
        from prometheus_client import CollectorRegistry
        import inferwatch
        from inferwatch import start_metrics_server
        from inferwatch.ai import InferenceMetrics
        from inferwatch.exporters.config import build_config
        from inferwatch.metrics import Counter
        import inferwatch.exporters.host, inferwatch.exporters.server

        registry = CollectorRegistry()
        Counter("jobs", "Jobs done.", ["kind"], registry=registry).labels("tts").inc(2)
        InferenceMetrics(registry=registry)
        server = start_metrics_server(0, host="127.0.0.1", registry=registry)
        status, text = call(f"http://127.0.0.1:{server.port}/metrics")
        server.shutdown()
        print(status, *lines(text, "jobs_total"))
        with open("exporter.toml", "w") as f:
            f.write("port = 9109\\ncollectors = ['host']\\n")
        config = build_config("exporter.toml")
        print(config.port, config.collectors)
        done = cli("--version")
        print(done.returncode, done.stdout.strip())
        done = cli("generate", "--check")
        print(done.returncode, "install inferwatch[alerts]" in done.stderr)
        """,
        [
            '200 jobs_total{kind="tts"} 2.0',
            "9109 ('host',)",
            "0 inferwatch 0.1.0",
            "2 True",
        ],
    ),
    "fastapi": Check(
        # instrument_app on a FastAPI app: a request is counted and /metrics serves it.
        """
        from fastapi import FastAPI
        from prometheus_client import CollectorRegistry
        from inferwatch import instrument_app

        registry = CollectorRegistry()
        app = FastAPI()
        instrument_app(app, registry=registry)

        @app.get("/items/{item}")
        async def item(item: str) -> dict:
            return {"item": item}

        print(*asgi(app, "GET", "/items/7"))
        status, text = asgi(app, "GET", "/metrics")
        print(status, *lines(text, "http_server_request_duration_seconds_count"))
        """,
        [
            '200 {"item":"7"}',
            '200 http_server_request_duration_seconds_count{error_type="",'
            'http_request_method="GET",http_response_status_code="200",'
            'http_route="/items/{item}"} 1.0',
        ],
    ),
    "otel": Check(
        # A server span per request of an instrumented FastAPI app, recorded by the SDK.
        """
        from fastapi import FastAPI
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from prometheus_client import CollectorRegistry
        from inferwatch import instrument_app

        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        app = FastAPI()
        instrument_app(app, registry=CollectorRegistry(), tracing=True, tracer_provider=provider)

        @app.get("/ping")
        async def ping() -> str:
            return "pong"

        print(*asgi(app, "GET", "/ping"))
        print(*[s.name for s in spans.get_finished_spans() if s.kind.name == "SERVER"])
        """,
        ['200 "pong"', "GET /ping"],
    ),
    "redis": Check(
        # The Redis pool metrics on a client (no server: nothing connects until a command),
        # and the Redis backend of the AI cache.
        """
        import redis
        from prometheus_client import CollectorRegistry, generate_latest
        from inferwatch.pools import instrument_redis
        import inferwatch.ai.redis_backend

        registry = CollectorRegistry()
        instrument_redis(redis.Redis(max_connections=4), pool_name="cache", registry=registry)
        print(*lines(generate_latest(registry).decode(), "db_client_connection_max"))
        """,
        [
            'db_client_connection_max{db_client_connection_pool_name="cache",'
            'db_system_name="redis"} 4.0'
        ],
    ),
    "sqlalchemy": Check(
        # The database pool metrics on a real (SQLite) engine, and one query through it.
        """
        import sqlalchemy
        from prometheus_client import CollectorRegistry, generate_latest
        from inferwatch.pools import instrument_sqlalchemy

        registry = CollectorRegistry()
        engine = sqlalchemy.create_engine("sqlite:///check.db", pool_size=3, max_overflow=2)
        instrument_sqlalchemy(engine, pool_name="primary", registry=registry)
        with engine.connect() as connection:
            print(connection.execute(sqlalchemy.text("select 1")).scalar())
        print(*lines(generate_latest(registry).decode(), "db_client_connection_max"))
        """,
        [
            "1",
            'db_client_connection_max{db_client_connection_pool_name="primary",'
            'db_system_name="sqlite"} 5.0',
        ],
    ),
    "postgres": Check(
        # Engines for PostgreSQL, sync and asyncio, load the psycopg driver (nothing connects).
        """
        import sqlalchemy
        from sqlalchemy.ext.asyncio import create_async_engine
        from prometheus_client import CollectorRegistry
        from inferwatch.pools import instrument_sqlalchemy

        url = "postgresql+psycopg://user@127.0.0.1:1/db"
        sync = sqlalchemy.create_engine(url)
        instrument_sqlalchemy(sync, registry=CollectorRegistry())
        asynchronous = create_async_engine(url)
        instrument_sqlalchemy(asynchronous, registry=CollectorRegistry())
        print(sync.dialect.driver, asynchronous.dialect.driver, asynchronous.dialect.is_async)
        """,
        ["psycopg psycopg True"],
    ),
    "gpu": Check(
        # NVML's Python binding for the exporter's gpu collector.
        """
        import pynvml
        import inferwatch.exporters.gpu

        print(issubclass(pynvml.NVMLError, Exception))
        """,
        ["True"],
    ),
    "alerts": Check(
        # The thresholds and everything generated from them, written and then found current.
        """
        from inferwatch.alerts.thresholds import load_thresholds

        load_thresholds()
        written = cli("generate", "--out", "out")
        print(written.returncode, "alerts/alert_rules.yaml" in written.stderr)
        print("Traceback" in written.stderr)
        checked = cli("generate", "--check", "--out", "out")
        print(checked.returncode, checked.stderr.count("stale"))
        """,
        ["0 True", "False", "0 0"],
    ),
    "dashboards": Check(
        # The dashboards among what `generate` writes, their renderer, and `inferwatch report`.
        """
        import glob
        import matplotlib
        import inferwatch.dashboards.render, inferwatch.reports.build, inferwatch.reports.charts

        written = cli("generate", "--out", "out")
        print(written.returncode, "skipping" in written.stderr, "Traceback" in written.stderr)
        print(len(glob.glob("out/dashboards/*.json")) > 0)
        report = cli("report", "--help")
        print(report.returncode, "unavailable" in report.stdout + report.stderr)
        """,
        ["0 False False", "True", "0 False"],
    ),
    "upstream": Check(
        # An httpx transport and a tenacity retry around a dependency, both recorded.
        """
        import httpx
        from prometheus_client import CollectorRegistry, generate_latest
        from inferwatch.ai import Upstream

        registry = CollectorRegistry()
        tts = Upstream("tts", registry)
        mock = httpx.MockTransport(lambda request: httpx.Response(200, text="ok"))
        with httpx.Client(transport=tts.transport(mock)) as client:
            print(client.get("http://tts.invalid/speak").text)

        @tts.retrying
        def speak() -> str:
            return "spoken"

        print(speak())
        text = generate_latest(registry).decode()
        print(*lines(text, "http_client_request_duration_seconds_count"))
        """,
        [
            "ok",
            "spoken",
            'http_client_request_duration_seconds_count{error_type="",'
            'http_request_method="GET",http_response_status_code="200",peer="tts"} 1.0',
        ],
    ),
    "demo": Check(
        # `inferwatch demo`: it starts (SQLite through aiosqlite, its own model service) and
        # serves a generation, counted on its /metrics.
        """
        port = free_port()
        demo = subprocess.Popen(
            ["inferwatch", "demo", "--port", str(port), "--time-scale", "0.01"],
            stdout=subprocess.DEVNULL, stderr=open("demo.log", "w"),
        )
        try:
            base = f"http://127.0.0.1:{port}"
            print(wait_for(f"{base}/admin/faults")[0])
            print(call(f"{base}/v1/audio/generate", {"prompt": "x", "duration_seconds": 1})[0])
            text = call(f"{base}/metrics")[1]
            print(*lines(text, "http_server_request_duration_seconds_count"), sep="\\n")
        finally:
            demo.terminate()
            demo.wait(30)
        """,
        [
            "200",
            "200",
            'http_server_request_duration_seconds_count{error_type="",'
            'http_request_method="GET",http_response_status_code="200",'
            'http_route="/admin/faults"} 1.0',
            'http_server_request_duration_seconds_count{error_type="",'
            'http_request_method="POST",http_response_status_code="200",'
            'http_route="/v1/audio/generate"} 1.0',
        ],
    ),
    "stack": Check(
        # `inferwatch stack`: its runner (mirakuru), the alert sink it runs, its rules.
        """
        from inferwatch.alertsink.app import create_app
        from inferwatch.stack import Stack
        from inferwatch.stack.supervisor import Supervisor

        print(asgi(create_app(), "GET", "/healthz")[0])
        for command in ("stack", "alert-sink", "demo"):
            shown = cli(command, "--help")
            print(command, shown.returncode, "unavailable" in shown.stdout + shown.stderr)
        """,
        ["200", "stack 0 False", "alert-sink 0 False", "demo 0 False"],
    ),
    "load": Check(
        # The Locust scenarios (WebSocket sessions too) and the report after a load test.
        f"""
        import websockets.sync.client
        listed = subprocess.run(
            ["locust", "-f", {str(ROOT / "loadtests" / "locustfile.py")!r}, "--list"],
            capture_output=True, text=True,
        )
        print(listed.returncode, "Traceback" in listed.stderr)
        report = cli("report", "--help")
        print(report.returncode, "unavailable" in report.stdout + report.stderr)
        """,
        ["0 False", "0 False"],
    ),
}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string."""
    return canonicalize_name(Requirement(requirement).name)


def _applies(requirement: str) -> bool:
    """Whether ``requirement`` is for this interpreter (``tomli; python_version < '3.11'``)."""
    marker = Requirement(requirement).marker
    return marker is None or marker.evaluate()


def _closure(extra: str) -> set[str]:
    """The extras ``extra`` installs: itself and those it names as inferwatch[...]."""
    seen: set[str] = set()
    todo = [extra] if extra else []
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for requirement in EXTRAS[current]:
            nested = re.fullmatch(r"inferwatch\[([a-z,]+)\]", requirement.replace(" ", ""))
            if nested:
                todo.extend(nested.group(1).split(","))
    return seen


def _declared(extras: set[str], *, here: bool = True) -> set[str]:
    """The distributions the core and ``extras`` name (not the inferwatch[...] references);
    ``here``: only those this interpreter installs (their markers hold)."""
    names = set()
    for requirement in [*CORE, *(r for extra in extras for r in EXTRAS[extra])]:
        if _name(requirement) != "inferwatch" and (_applies(requirement) or not here):
            names.add(_name(requirement))
    return names


@dataclass(frozen=True)
class Wheelhouse:
    project: Path  # the folder holding the project's wheel
    wheels: Path  # every requirement of every extra, as wheels


def _isolated_pip_env() -> dict[str, str]:
    """The environment for installs from the wheelhouse alone: no pip configuration (no
    index, find-links or constraints of this machine), no inherited PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(
    command: list[str], *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wheelhouse]:
    """The project's wheel, built from the working tree, and the wheels of every extra's
    requirements, downloaded once for all the installs of this module."""
    base = tmp_path_factory.mktemp("extras")
    tree = base / "tree"  # a copy, so the build leaves no build/ or egg-info in the checkout
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(
        PACKAGE, tree / "src" / "inferwatch", ignore=shutil.ignore_patterns("__pycache__")
    )
    project, wheels = base / "project", base / "wheels"
    started = time.monotonic()
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "-w", str(project), str(tree)], timeout=INSTALL_TIMEOUT)
    (wheel,) = project.glob("inferwatch-*.whl")
    everything = ",".join(sorted(set(EXTRAS) - UNIONS))
    _run(
        [*pip, "download", "-q", "-d", str(wheels), f"{wheel}[{everything}]"],
        timeout=INSTALL_TIMEOUT,
    )
    print(f"wheelhouse ready in {time.monotonic() - started:.1f} s")
    yield Wheelhouse(project, wheels)


def _install(wheelhouse: Wheelhouse, extra: str, where: Path) -> Path:
    """A fresh virtual environment with inferwatch[extra] from the wheelhouse; its bin/."""
    venv = where / "venv"
    # No pip of its own: the test's pip installs into it (--python), which saves seconds each.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=INSTALL_TIMEOUT)
    python = venv / "bin" / "python"
    target = f"inferwatch[{extra}]" if extra else "inferwatch"
    _run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "-q"),
            *("--no-index", "--find-links", str(wheelhouse.project)),
            *("--find-links", str(wheelhouse.wheels), target),
        ],
        timeout=INSTALL_TIMEOUT,
        env=_isolated_pip_env(),
    )
    return venv / "bin"


def _installed(bin_dir: Path) -> set[str]:
    script = (
        "import importlib.metadata as m; [print(d.metadata['Name']) for d in m.distributions()]"
    )
    done = _run([str(bin_dir / "python"), "-c", script], timeout=CHECK_TIMEOUT)
    return {_name(line) for line in done.stdout.split()}


def _check(bin_dir: Path, check: Check, cwd: Path) -> list[str]:
    # Nothing of this process's settings: no multiprocess directory, no inferwatch options.
    inherited = ("PYTHON", "INFERWATCH_", "PROMETHEUS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    source = PRELUDE + textwrap.dedent(check.script)
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", source],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
        cwd=cwd,
        env=env,
    )
    assert done.returncode == 0, f"exit status {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout.splitlines()


@pytest.mark.parametrize("extra", sorted(CHECKS), ids=lambda e: e or "core")
def test_extra_alone_does_what_it_promises(
    extra: str, wheelhouse: Wheelhouse, tmp_path: Path
) -> None:
    bin_dir = _install(wheelhouse, extra, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    assert _check(bin_dir, CHECKS[extra], work) == CHECKS[extra].expected
    installed = _installed(bin_dir)
    assert _declared(_closure(extra)) <= installed
    if not extra:
        # The core pulls in no package any extra names for itself.
        others = _declared(set(EXTRAS) - UNIONS) - _declared(set())
        assert installed & others == set()


def test_every_extra_has_a_check() -> None:
    assert set(CHECKS) - {""} == set(EXTRAS) - UNIONS


# Distributions whose import name is not their project name, as the dev environment says.
def _providers() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        found[module] = {_name(d) for d in dists}
    return found


def _third_party_imports(files: list[Path]) -> dict[str, set[str]]:
    """Top-level module name -> files importing it, for modules outside the stdlib."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"inferwatch", "__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


# Declared without an import of their own, and why.
IMPORTED_BY_OTHERS = {
    "aiosqlite": "loaded by SQLAlchemy's sqlite+aiosqlite dialect (the demo's database)",
}


def test_every_imported_package_is_declared() -> None:
    providers = _providers()
    declared = _declared(set(EXTRAS) - UNIONS, here=False)
    undeclared = {
        module: files
        for module, files in _third_party_imports(sorted(PACKAGE.rglob("*.py"))).items()
        if not providers.get(module, {module}) & declared
    }
    assert undeclared == {}


def test_every_declared_package_is_imported() -> None:
    providers = _providers()
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "loadtests").glob("*.py")]
    imported = set().union(*(providers.get(m, {m}) for m in _third_party_imports(sources)))
    declared = _declared(set(EXTRAS) - UNIONS, here=False)
    assert declared - imported == set(IMPORTED_BY_OTHERS)
