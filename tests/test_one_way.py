"""One way to do each thing: every setting that several parts of inferwatch take (a duration,
a port, a backend URL, a secret file) is accepted and rejected alike by all of them, and
what exists once per registry, the overflow label and the Prometheus client have one home.

Each test runs one table of inputs through every place that takes the value, so a part that
grew a rule of its own (a second grammar, another port range, another way of reading a
file) disagrees with the others on some row.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry

from inferwatch.alerts.adjust import scale_windows, scaled_window
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.alerts.units import format_duration, parse_duration
from inferwatch.cli import arguments, launch
from inferwatch.cli.main import build_parser
from inferwatch.config import check_backend_url, check_http_url, check_port
from inferwatch.exporters.config import ConfigError, build_config
from inferwatch.exposition.auth import MetricsAuth, MetricsAuthError, read_secret_file
from inferwatch.metrics.shared import once_per_registry, report_error
from inferwatch.stack.prometheus_api import Prometheus, QueryError
from inferwatch.stack.settings import Ports, StackSettings
from inferwatch.stack.status import read_status
from tests.support import free_port

PASSWORD = "s3cret-Pw"


def _accepts(call: Callable[[], object]) -> bool:
    try:
        call()
    # ConfigError, ThresholdsError, an argparse type's error and argparse's exit
    except (ValueError, argparse.ArgumentTypeError, SystemExit):
        return False
    return True


# -- durations ---------------------------------------------------------------------------
ACCEPTED_DURATIONS = ["1h30m", "500ms", "2d", "1y2w", "1m30s", "90s", "1.5s", "0s"]
REJECTED_DURATIONS = ["30m1h", "5m5m", "5", "", "1 h", "-1s", "5minutes", "ms", "1h30"]


@pytest.mark.parametrize("text", ACCEPTED_DURATIONS + REJECTED_DURATIONS)
def test_every_duration_setting_takes_the_one_grammar(text: str, tmp_path: Path) -> None:
    """Prometheus's grammar (units in order, each once) plus decimal counts, wherever a
    duration is read: thresholds, the stack's timings, the window scaling of rule ranges."""
    expected = text in ACCEPTED_DURATIONS
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"signals:\n  api_latency_p95:\n    for: '{text}'\n", encoding="utf-8")
    verdicts = {
        "units": _accepts(lambda: parse_duration(text)),
        "thresholds": _accepts(lambda: load_thresholds(overlay)),
        # group_wait is the stack's one timing that may be 0s
        "stack": _accepts(lambda: StackSettings(group_wait=text)),
    }
    assert verdicts == dict.fromkeys(verdicts, expected)
    expr = f"rate(x[{text}])"
    scaled = scale_windows(expr, 0.5)
    if expected:
        window = scaled_window(parse_duration(text), Fraction(1, 2), Fraction(0))
        assert scaled == f"rate(x[{format_duration(window)}])"
        assert StackSettings(group_wait=text).group_wait == format_duration(parse_duration(text))
    else:
        assert scaled == expr  # not a range selector in the grammar: left as written


def test_the_grammar_reads_each_unit_as_prometheus_does() -> None:
    assert [parse_duration(t) for t in ("1h30m", "500ms", "2d", "1y", "1w", "1.5s")] == [
        5400, Fraction(1, 2), 172_800, 31_536_000, 604_800, Fraction(3, 2),
    ]  # fmt: skip


# -- ports -------------------------------------------------------------------------------
PORTS = [0, 1, 8080, 65535, 65536, -1]


@pytest.mark.parametrize("value", PORTS)
def test_every_port_setting_takes_the_same_ports(value: int) -> None:
    """0..65535 for the exporter's file and flags and every command's --port; the stack's
    ports too, but for 0: every component is told the others' ports before it starts."""
    expected = 0 <= value <= 65535
    verdicts = {
        "config": _accepts(lambda: check_port(value)),
        "exporter": _accepts(lambda: build_config(overrides={"port": value})),
        "flag": _accepts(lambda: arguments.port(str(value))),
        "demo": _accepts(lambda: build_parser(["demo"]).parse_args(["demo", "--port", str(value)])),
    }
    assert verdicts == dict.fromkeys(verdicts, expected)
    assert _accepts(lambda: StackSettings(ports=Ports(demo=value))) is (expected and value != 0)


def test_a_bad_port_is_named_with_the_range() -> None:
    with pytest.raises(ConfigError, match=r"'port' must be a port 0\.\.65535, got 70000"):
        build_config(overrides={"port": 70000})
    with pytest.raises(ValueError, match=r"^--demo-port must be a port 1\.\.65535, got 0$"):
        StackSettings(ports=Ports(demo=0))
    with pytest.raises(argparse.ArgumentTypeError, match="invalid port 'x': not an integer"):
        arguments.port("x")


# -- backend URLs ------------------------------------------------------------------------
URLS = [
    ("redis", "redis://cache:6379/0", "redis://cache:6379/0"),
    ("redis", f"rediss://:{PASSWORD}@cache:6380/0", f"rediss://:{PASSWORD}@cache:6380/0"),
    ("redis", "unix:///run/redis.sock", "unix:///run/redis.sock"),
    ("redis", f"redis://:p@{PASSWORD}@cache/0", f"redis://:p%40{PASSWORD}@cache/0"),
    ("redis", f"http://:{PASSWORD}@cache/", None),
    ("redis", "redis:6379", None),
    ("redis", f"redis://:{PASSWORD}@cache:99999/0", None),
    ("postgres", f"postgresql://u:{PASSWORD}@db/app", f"postgresql://u:{PASSWORD}@db/app"),
    ("postgres", "postgres://db:5432/app", "postgres://db:5432/app"),
    ("postgres", "postgresql:///app", "postgresql:///app"),
    ("postgres", f"mysql://u:{PASSWORD}@db/app", None),
]


@pytest.mark.parametrize(("backend", "url", "expected"), URLS)
def test_every_backend_url_setting_checks_alike(
    backend: str, url: str, expected: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exporter, the stack, the demo's flag and the commands' shared reader take the
    same URLs, hand on the same (userinfo-encoded) URL, and never show a password."""
    key = f"{backend}_url"
    readers: dict[str, Callable[[], str | None]] = {
        "config": lambda: check_backend_url(backend, url),
        "exporter": lambda: getattr(build_config(overrides={key: url}), key),
        "stack": lambda: StackSettings(**{key: url}).url_of(backend),  # type: ignore[arg-type]
        "flags": lambda: arguments.backend_url(argparse.Namespace(**{key: url}), backend),
        "demo": lambda: getattr(
            build_parser(["demo"]).parse_args(["demo", f"--{backend}-url", url]), key
        ),
    }
    found: dict[str, str | None] = {}
    for name, read in readers.items():
        try:
            found[name] = read()
        except (ValueError, SystemExit) as exc:
            message = str(exc) + capsys.readouterr().err
            assert PASSWORD not in message, name
            found[name] = None
    assert found == dict.fromkeys(readers, expected)


def test_a_bad_backend_url_names_the_setting_and_what_it_must_be() -> None:
    with pytest.raises(ValueError) as error:
        StackSettings(postgres_url=f"mysql://u:{PASSWORD}@db/app")
    assert str(error.value) == (
        "--postgres-url must be a postgresql or postgres:// URL, got scheme 'mysql' in "
        "mysql://db/app"
    )
    with pytest.raises(ConfigError, match=r"'redis_url' must be a redis or rediss or unix://"):
        build_config(overrides={"redis_url": "redis:6379"})


# -- http URLs ---------------------------------------------------------------------------
HTTP_URLS = [
    ("http://grafana:3000", True),
    ("https://grafana.example.org/", True),
    ("ftp://grafana:3000", False),
    ("grafana:3000", False),
    ("http://", False),
    ("http:/grafana", False),
]


@pytest.mark.parametrize(("url", "expected"), HTTP_URLS)
def test_every_http_url_setting_checks_alike(url: str, expected: bool, tmp_path: Path) -> None:
    """A Grafana, Prometheus, alert-sink or forward URL: http:// or https:// with a host,
    wherever it is given (flags, settings, the thresholds file, the generators)."""
    from inferwatch.alertmanager import render_alertmanager_config
    from inferwatch.alerts.adjust import with_grafana
    from inferwatch.deploy.kubernetes import Settings as KubernetesSettings

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"settings:\n  grafana_base_url: '{url}'\n", encoding="utf-8")
    verdicts = {
        "config": _accepts(lambda: check_http_url(url)),
        "thresholds": _accepts(lambda: load_thresholds(overlay)),
        "grafana link": _accepts(lambda: with_grafana(load_thresholds(), url)),
        "stack": _accepts(lambda: StackSettings(grafana_url=url)),
        "sink forwards": _accepts(lambda: StackSettings(alert_sink_forward=(url,))),
        "kubernetes": _accepts(lambda: KubernetesSettings(grafana_url=url)),
        "alertmanager": _accepts(lambda: render_alertmanager_config(url)),
        "alert sink": _accepts(
            lambda: build_parser(["alert_sink"]).parse_args(["alert-sink", "--forward", url])
        ),
        "report": _accepts(
            lambda: build_parser(["report"]).parse_args(
                ["report", "--prometheus", url, "--start", "0", "--end", "1"]
            )
        ),
    }
    assert verdicts == dict.fromkeys(verdicts, expected)


# -- secret files ------------------------------------------------------------------------
def url_password(url: str | None) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url or "").password or "")


def _secret_readers(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Callable[[], str]]:
    """Every place that reads a secret file, each giving back what it read as the secret."""

    def token() -> str:
        monkeypatch.setenv("INFERWATCH_METRICS_TOKEN_FILE", str(path))
        auth = MetricsAuth.from_env()
        assert auth is not None and auth.bearer_token is not None
        return auth.bearer_token

    def launcher() -> str:
        environ = {
            "INFERWATCH_POSTGRES_URL": "postgresql://u@db/app",
            "INFERWATCH_POSTGRES_PASSWORD_FILE": str(path),
        }
        return url_password(launch.backend_urls(environ)["postgres"])

    def stack() -> str:
        # The stack only checks the file (Prometheus reads it on each scrape): what it
        # checked is what the one reader reads.
        StackSettings(service_targets=("h:1",), service_token_file=path)
        return read_secret_file(path, "token")

    return {
        "reader": lambda: read_secret_file(path, "the secret"),
        "metrics token": token,
        "launcher": launcher,
        "stack": stack,
        "exporter": lambda: url_password(
            build_config(overrides={"redis_url_file": str(path)}).redis_url
        ),
        "flags": lambda: url_password(
            arguments.backend_url(argparse.Namespace(redis_url_file=path), "redis")
        ),
    }


def test_every_secret_file_is_read_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Surrounding whitespace (the editor's final newline) dropped, as Prometheus drops it
    from the same files; nothing else touched."""
    plain = tmp_path / "plain"
    plain.write_text(f" {PASSWORD}\n", encoding="utf-8")
    as_url = tmp_path / "url"
    as_url.write_text(f"redis://:{PASSWORD}@cache:6379/0\r\n", encoding="utf-8")
    url_readers = ("exporter", "flags")  # a backend URL in a file: its password is the secret
    read = {
        name: r()
        for name, r in _secret_readers(plain, monkeypatch).items()
        if name not in url_readers
    }
    for name in url_readers:
        read[name] = _secret_readers(as_url, monkeypatch)[name]()
    assert read == dict.fromkeys(read, PASSWORD)


def test_an_empty_secret_file_is_an_error_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.write_text(" \n\n", encoding="utf-8")
    for name, read in _secret_readers(empty, monkeypatch).items():
        with pytest.raises((ValueError, MetricsAuthError)) as error:
            read()
        assert "is empty" in str(error.value) and str(empty) in str(error.value), name


# -- once per registry, the overflow value -----------------------------------------------
def test_what_exists_once_per_registry_has_one_store() -> None:
    from inferwatch.ai._shared import state_for

    registry = CollectorRegistry()
    state = state_for(registry)
    assert state_for(registry) is state
    assert once_per_registry(registry, "ai", lambda: pytest.fail("built a second time")) is state
    assert state_for(None) is not state_for(None)  # unregistered metrics share nothing


def test_an_instrumentation_error_is_logged_once_per_registry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("tests.one_way")
    registries = [CollectorRegistry(), CollectorRegistry()]
    with caplog.at_level(logging.WARNING, logger=log.name):
        for registry in [*registries, *registries]:
            report_error(registry, "one_way.test", ZeroDivisionError(), log)
    assert len(caplog.records) == 2  # each registry's first error, not the repeats


def test_one_overflow_value() -> None:
    from inferwatch import ai
    from inferwatch.exporters import postgres
    from inferwatch.http import middleware
    from inferwatch.metrics import labels
    from inferwatch.pools import names

    assert labels.OTHER == "_OTHER"
    assert all(m.OTHER is labels.OTHER for m in (ai, middleware, names, postgres))


# -- the Prometheus client ---------------------------------------------------------------
ANSWERS: dict[str, Any] = {
    "/api/v1/targets": {
        "activeTargets": [
            {"labels": {"job": "demo"}, "health": "up"},
            {"labels": {"job": "exporter"}, "health": "down"},
        ]
    },
    "/api/v1/alerts": {
        "alerts": [
            {"labels": {"alertname": "Watchdog", "severity": "none"}, "state": "firing"},
            {
                "labels": {"alertname": "APIHighErrorRate", "severity": "critical"},
                "state": "firing",
            },
        ]
    },
    "/api/v1/rules": {"groups": [{"name": "g", "rules": []}]},
}


class _FakePrometheus(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        status, body = 200, {"status": "success", "data": ANSWERS.get(url.path)}
        if url.path == "/api/v1/query" and query.get("query") == "up":
            body["data"] = {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]}
        elif url.path == "/api/v1/query":
            status, body = 400, {"status": "error", "error": "parse error at char 4"}
        elif url.path == "/not-json":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>")
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_prometheus() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def test_one_prometheus_client_for_queries_targets_rules_and_alerts(fake_prometheus: str) -> None:
    prometheus = Prometheus(fake_prometheus, timeout=5)
    assert prometheus.query("up") == [{"metric": {}, "value": [1, "1"]}]
    assert [t["health"] for t in prometheus.targets()] == ["up", "down"]
    assert [g["name"] for g in prometheus.rules()] == ["g"]
    assert [a["labels"]["alertname"] for a in prometheus.alerts()] == [
        "Watchdog", "APIHighErrorRate",
    ]  # fmt: skip
    with pytest.raises(QueryError, match=r"^'sum\(': parse error at char 4$"):
        prometheus.query("sum(")
    with pytest.raises(QueryError, match="not Prometheus's JSON"):
        prometheus._get("/not-json")
    with pytest.raises(QueryError, match=r"^/api/v1/alerts: "):
        Prometheus(f"http://127.0.0.1:{free_port()}", timeout=5).alerts()


def test_the_stack_status_reads_prometheus_through_the_client(fake_prometheus: str) -> None:
    status = read_status(fake_prometheus, timeout=5)
    assert status is not None
    assert (status.targets_up, status.targets_total, status.down) == (1, 2, ("exporter",))
    assert (status.firing, status.heartbeat) == (("APIHighErrorRate (critical)",), True)
    assert read_status(f"http://127.0.0.1:{free_port()}", timeout=5) is None
