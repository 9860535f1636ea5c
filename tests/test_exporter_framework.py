"""The exporter framework: collector runner, host collector, one-poller sharing, config,
credential redaction, and the ``inferwatch exporter`` command end to end."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.exporters import (
    CollectorError,
    CollectorRunner,
    ConfigError,
    ExporterConfig,
    build_config,
    redact_text,
    redact_url,
    start_exporter,
)
from inferwatch.exporters.collector import scrape_deadline, timeout_from_header
from inferwatch.exporters.config import load_file
from inferwatch.exporters.host import HostCollector, MemoryGrowth
from inferwatch.exposition import ServerLimits
from tests.support import free_port, serve, value, wait_until
from tests.support.server import LOOPBACK, inferwatch_command
from tests.support.shared_collector import SharedCollector


class Counting:
    """A collector that counts its runs, optionally blocking or failing."""

    def __init__(self, name: str = "c", *, block: threading.Event | None = None) -> None:
        self.name = name
        self.calls = 0
        self.block = block
        self.fail_after_first = False

    def collect(self) -> Iterator[Metric]:
        self.calls += 1
        if self.block is not None:
            self.block.wait()
        yield GaugeMetricFamily(f"{self.name}_ok", "first family", value=self.calls)
        if self.fail_after_first:
            raise CollectorError("backend went away half-way")
        yield GaugeMetricFamily(f"{self.name}_more", "second family", value=1)


# -- runner ------------------------------------------------------------------------------


def test_runner_keeps_families_yielded_before_an_error() -> None:
    c = Counting()
    c.fail_after_first = True
    m = list(CollectorRunner([c], cache_ttl=0).collect())
    assert value(m, "inferwatch_exporter_collector_success", collector="c") == 0
    assert value(m, "c_ok") == 1
    assert value(m, "c_more") is None


def test_runner_cache_spares_the_backend() -> None:
    c = Counting()
    runner = CollectorRunner([c], cache_ttl=60)
    for _ in range(5):
        list(runner.collect())
    assert c.calls == 1
    uncached = Counting()
    runner = CollectorRunner([uncached], cache_ttl=0)
    for _ in range(3):
        list(runner.collect())
    assert uncached.calls == 3


def test_runner_bounds_a_hung_collector_without_piling_up_threads() -> None:
    release = threading.Event()
    hung, fine = Counting("hung", block=release), Counting("fine")
    runner = CollectorRunner([hung, fine], timeout=0.1, cache_ttl=0)
    try:
        with_threads = threading.active_count()
        for _ in range(4):
            m = list(runner.collect())
            assert value(m, "inferwatch_exporter_collector_success", collector="hung") == 0
            assert value(m, "inferwatch_exporter_collector_success", collector="fine") == 1
            assert value(m, "hung_ok") is None  # nothing stale or partial from a timeout
        assert hung.calls == 1
        assert threading.active_count() <= with_threads + 1
        assert value(m, "inferwatch_exporter_collector_timeouts_total", collector="hung") == 4
    finally:
        release.set()
    wait_until(
        lambda: (
            value(list(runner.collect()), "inferwatch_exporter_collector_success", collector="hung")
            == 1
        )
    )


def test_concurrent_scrapes_share_one_run() -> None:
    release = threading.Event()
    c = Counting(block=release)
    runner = CollectorRunner([c], timeout=5, cache_ttl=1)
    results: list[list[Metric]] = []
    threads = [
        threading.Thread(target=lambda: results.append(list(runner.collect()))) for _ in range(5)
    ]
    for t in threads:
        t.start()
    wait_until(lambda: c.calls == 1)
    release.set()
    for t in threads:
        t.join(5)
    assert c.calls == 1 and len(results) == 5
    assert all(
        value(m, "inferwatch_exporter_collector_success", collector="c") == 1 for m in results
    )


# -- the scraper's timeout ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "budget"),
    [
        ("10", 9.5),  # less the offset
        ("2", 1.5),
        (" 2.5 ", 2.0),
        ("0.8", 0.4),  # never less than half the scraper's timeout
        ("1e1", 9.5),
        (None, None),  # no header: the configured timeout alone
        ("", None),
        ("ten", None),
        ("0", None),
        ("-3", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_scrape_timeout_header_parsing(header: str | None, budget: float | None) -> None:
    assert timeout_from_header(header) == budget


def test_scrape_timeout_offset_is_configurable() -> None:
    assert timeout_from_header("10", offset=2.0) == 8.0
    assert timeout_from_header("10", offset=0.0) == 10.0
    assert build_config(None, {"scrape_timeout_offset": 1.0}).scrape_timeout_offset == 1.0
    with pytest.raises(ConfigError, match="'scrape_timeout_offset'"):
        build_config(None, {"scrape_timeout_offset": -1})


def test_a_scrape_deadline_shortens_the_runner_timeout_for_that_scrape_only() -> None:
    release = threading.Event()
    hung, fine = Counting("hung", block=release), Counting("fine")
    runner = CollectorRunner([hung, fine], timeout=30, cache_ttl=0)
    try:
        with scrape_deadline(time.monotonic() + 0.2):
            m = list(runner.collect())
        assert value(m, "inferwatch_exporter_collector_success", collector="hung") == 0
        assert value(m, "inferwatch_exporter_collector_duration_seconds", collector="hung") <= 0.2
        assert value(m, "inferwatch_exporter_collector_timeouts_total", collector="hung") == 1
        assert value(m, "inferwatch_exporter_collector_success", collector="fine") == 1
        assert value(m, "fine_ok") is not None and value(m, "fine_more") == 1
        with scrape_deadline(time.monotonic() - 60):  # already past: no time to wait at all
            m = list(runner.collect())
        assert value(m, "inferwatch_exporter_collector_duration_seconds", collector="hung") == 0
    finally:
        release.set()


def test_the_exporter_answers_within_the_scrapers_timeout() -> None:
    release = threading.Event()
    config = ExporterConfig(host=LOOPBACK, port=0, collector_timeout=30, cache_ttl=0)
    exporter = start_exporter(config, collectors=[Counting("hung", block=release), Counting()])
    try:
        response = httpx.get(
            f"{exporter.url}/metrics",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"},
            timeout=10,
        )
        assert response.status_code == 200
        m = list(text_string_to_metric_families(response.text))
        assert value(m, "inferwatch_exporter_collector_success", collector="hung") == 0
        # 1 s less the 0.5 s offset: the collector was given up on by then, not after 30 s
        assert value(m, "inferwatch_exporter_collector_duration_seconds", collector="hung") <= 0.5
        assert value(m, "inferwatch_exporter_collector_success", collector="c") == 1
        assert value(m, "c_more") == 1
    finally:
        release.set()
        exporter.close()


def test_server_limits_come_from_the_config() -> None:
    config = build_config(None, {"request_timeout": 2.5, "idle_timeout": 30, "max_connections": 8})
    assert config.limits == ServerLimits(request_timeout=2.5, idle_timeout=30, max_connections=8)
    assert ExporterConfig().limits == ServerLimits()
    with pytest.raises(ConfigError, match="'max_connections' must be a positive integer"):
        build_config(None, {"max_connections": 0})
    with pytest.raises(ConfigError, match="'request_timeout'"):
        build_config(None, {"request_timeout": 0})


# -- host --------------------------------------------------------------------------------


def test_memory_growth_slope_over_a_window() -> None:
    growth = MemoryGrowth(window=600, min_span=60)
    assert growth.add(0, 1_000_000) is None
    assert growth.add(30, 1_000_000 + 30 * 2048) is None  # window too short to judge
    assert growth.add(60, 1_000_000 + 60 * 2048) == pytest.approx(2048)
    assert growth.add(90, 1_000_000 + 90 * 2048) == pytest.approx(2048)
    # after the window the old samples are gone: a flat RSS reads as no growth
    for t in range(700, 1400, 30):
        slope = growth.add(t, 5_000_000)
    assert slope == pytest.approx(0)


def test_host_collector_reports_host_and_process() -> None:
    now = [0.0]
    host = HostCollector(growth_window=600, growth_min_span=60, clock=lambda: now[0])
    m = list(host.collect())
    assert value(m, "inferwatch_host_memory_total_bytes") > 0
    assert value(m, "inferwatch_host_cpu_seconds_total", mode="idle") > 0
    assert value(m, "inferwatch_process_resident_memory_bytes") > 0
    assert value(m, "inferwatch_host_cpu_usage_ratio") is None  # needs a previous scrape
    assert value(m, "inferwatch_process_resident_memory_growth_bytes_per_second") is None
    now[0] = 120.0
    # the ratio needs CPU clock ticks (10 ms) between two scrapes
    m = wait_until(
        lambda: (
            (m := list(host.collect()))
            and value(m, "inferwatch_host_cpu_usage_ratio") is not None
            and m
        )
    )
    assert 0 <= value(m, "inferwatch_host_cpu_usage_ratio") <= 1
    assert value(m, "inferwatch_process_resident_memory_growth_bytes_per_second") is not None
    assert not any(s.labels.get("device") == "lo" for f in m for s in f.samples)


def test_host_collector_drops_process_series_of_dead_pids() -> None:
    proc = subprocess.Popen(["sleep", "0"])
    proc.wait()
    m = list(HostCollector(pids=[proc.pid]).collect())
    assert value(m, "inferwatch_process_resident_memory_bytes") is None
    assert value(m, "inferwatch_host_memory_total_bytes") > 0


# -- one poller for many workers ------------------------------------------------------------


def test_shared_collector_polls_from_one_process_only(tmp_path: Path) -> None:
    # flock locks belong to the open file, so two instances in one process exclude each
    # other exactly as two workers would.
    first, second = Counting("w"), Counting("w")
    a = SharedCollector(first, tmp_path, interval=60)
    b = SharedCollector(second, tmp_path, interval=60)
    try:
        from_a, from_b = list(a.collect()), list(b.collect())
        assert a.leading and not b.leading
        assert (first.calls, second.calls) == (1, 0)
        assert value(from_a, "w_ok") == value(from_b, "w_ok") == 1
        assert value(from_b, "inferwatch_exporter_collector_success", collector="w") == 1
        a.close()  # the poller exits: the next scrape elsewhere takes over
        list(b.collect())
        assert b.leading and second.calls == 1
    finally:
        a.close()
        b.close()


# -- config and redaction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://cache:6379/0"),
        ("redis://default:hunter2@cache/1", "redis://cache/1"),
        ("rediss://u:p%40ss@[::1]:6380", "rediss://[::1]:6380"),
        (
            "postgresql://app:hunter2@db:5432/app?sslmode=require",
            "postgresql://db:5432/app?sslmode=require",
        ),
        (
            "postgresql://db/app?password=hunter2&user=app",
            "postgresql://db/app?password=REDACTED&user=app",
        ),
        ("postgresql://a:hun@ter2@db/app", "postgresql://db/app"),
        ("host=db user=app password=hunter2", "host=db user=app password=REDACTED"),
        ("redis://cache:notaport/0", "<unparseable URL>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    for secret in ("hunter2", "p%40ss", "hun@ter2"):
        assert secret not in redact_url(url)


def test_redact_text_scrubs_urls_and_known_secrets() -> None:
    text = "Error connecting to redis://:hunter2@cache:6379: auth failed for hunter2"
    assert "hunter2" not in redact_text(text, ["hunter2"])


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("prot = 9100\n", "'prot'"),
        ('port = "9100"\n', "'port'"),
        ("port = 70000\n", "'port'"),
        ('collectors = ["host", "gpus"]\n', "'collectors'"),
        ("collector_timeout = 0\n", "'collector_timeout'"),
        ("cache_ttl = -1\n", "'cache_ttl'"),
        ('redis_url = "http://:hunter2@cache"\n', "'redis_url'"),
        ("pids = [0]\n", "'pids'"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, "exporter.toml", text)
    with pytest.raises(ConfigError) as err:
        build_config(path)
    assert key in str(err.value) and str(path) in str(err.value)
    assert "hunter2" not in str(err.value)


def test_config_sources_and_precedence(tmp_path: Path) -> None:
    toml = write(tmp_path, "e.toml", 'port = 9200\ncollectors = ["host"]\ncache_ttl = 2.5\n')
    config = build_config(toml, {"port": 9300, "cache_ttl": None})
    assert (config.port, config.collectors, config.cache_ttl) == (9300, ("host",), 2.5)
    yaml = write(tmp_path, "e.yaml", "port: 9201\ncollectors: [gpu]\n")
    assert load_file(yaml) == {"port": 9201, "collectors": ("gpu",)}
    json_file = write(tmp_path, "e.json", '{"pids": [1, 2]}')
    assert load_file(json_file) == {"pids": (1, 2)}
    assert build_config(overrides={"redis_url": "redis://r"}).enabled == ("host", "gpu", "redis")
    with pytest.raises(ConfigError, match="'redis_url' is not set"):
        build_config(overrides={"collectors": "host,redis"})
    bad = write(tmp_path, "e.yaml", "redis_url: [redis://:hunter2@x\n")
    with pytest.raises(ConfigError) as err:
        load_file(bad)
    assert "hunter2" not in str(err.value)


def test_passwords_never_reach_output_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = ExporterConfig(
        host="127.0.0.1",
        port=0,
        cache_ttl=0,
        collector_timeout=2,
        redis_url="redis://default:r3d1s-s3cret@127.0.0.1:1/0",
        postgres_url="postgresql://app:pg-s3cret@127.0.0.1:1/app?sslpassword=k3y-s3cret",
    )
    assert "s3cret" not in repr(config)
    exporter = start_exporter(config, collectors=[HostCollector()])
    try:
        metrics = httpx.get(f"{exporter.url}/metrics", timeout=10).text
        landing = httpx.get(f"{exporter.url}/", timeout=10).text
    finally:
        exporter.close()
    assert "inferwatch_host_memory_total_bytes" in metrics
    assert "redis://127.0.0.1:1/0" in landing and "<a href='/metrics'>" in landing
    assert "s3cret" not in metrics + landing + caplog.text


# -- the command -------------------------------------------------------------------------


def test_exporter_command_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    command = [
        *inferwatch_command(),
        "exporter",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--collector-timeout",
        "2",
        "--redis-url",
        "redis://:cli-s3cret@127.0.0.1:1/0",
    ]
    # the real pynvml on a machine without an NVIDIA driver: the GPU collector must fail
    # alone, without taking the process down
    with serve(command, port=port, log_path=tmp_path / "exporter.log", ready_path="/") as server:
        body = httpx.get(f"{server.url}/metrics", timeout=10).text
        m = list(text_string_to_metric_families(body))
        assert value(m, "inferwatch_exporter_collector_success", collector="host") == 1
        assert value(m, "inferwatch_exporter_collector_duration_seconds", collector="gpu") < 2
        if value(m, "inferwatch_exporter_collector_success", collector="gpu") == 0:
            assert not [f for f in m if f.name.startswith("inferwatch_gpu_")]
        assert "cli-s3cret" not in body
        log = server.log()
    assert "listening on" in log and "cli-s3cret" not in log


def test_exporter_command_rejects_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", "colectors = []\n")
    result = subprocess.run(
        [*inferwatch_command(), "exporter", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": ""},
    )
    assert result.returncode == 2
    assert "'colectors'" in result.stderr


def test_backend_urls_can_come_from_secret_files(tmp_path) -> None:
    from inferwatch.exporters.config import ConfigError, build_config

    secret = tmp_path / "redis-url"
    secret.write_text("redis://:from-a-file@127.0.0.1:6379/0\n")
    config = build_config(None, {"redis_url_file": str(secret)})
    assert config.redis_url == "redis://:from-a-file@127.0.0.1:6379/0"
    assert "redis" in config.enabled
    assert "from-a-file" not in repr(config) and "from-a-file" not in str(config.describe())
    with pytest.raises(ConfigError, match="postgres_url_file"):
        build_config(None, {"postgres_url_file": str(tmp_path / "missing")})
    bad = tmp_path / "bad-url"
    bad.write_text("http://:leaked@host/\n")
    with pytest.raises(ConfigError, match="scheme") as error:
        build_config(None, {"postgres_url_file": str(bad)})
    assert "leaked" not in str(error.value)


def test_the_example_config_in_the_exporters_folder_is_valid(tmp_path) -> None:
    from pathlib import Path

    from inferwatch.exporters.config import build_config, load_file

    example = Path(__file__).parents[1] / "exporters" / "exporter.example.toml"
    text = example.read_text()
    # point the secret files at real ones so the example loads as written otherwise
    urls = {"redis-url": "redis://127.0.0.1/0", "postgres-url": "postgresql://127.0.0.1/db"}
    for name, url in urls.items():
        (tmp_path / name).write_text(url + "\n")
        text = text.replace(f"/run/secrets/inferwatch-{name}", str(tmp_path / name))
    local = tmp_path / "exporter.toml"
    local.write_text(text)
    assert set(load_file(local)) >= {"collectors", "redis_url", "postgres_url", "cache_ttl"}
    config = build_config(local)
    assert config.enabled == ("host", "gpu", "redis", "postgres")
