"""The GPU collector behind a real exporter HTTP server, against the simulated NVML in
tests/fakes (no GPU on the test machines; real-hardware verification is pending)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pynvml
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.exporters import Exporter, ExporterConfig, start_exporter
from inferwatch.exporters.collector import Collector
from inferwatch.exporters.gpu import GpuCollector
from inferwatch.exporters.host import HostCollector
from tests.fakes.fake_nvml import GIB, FakeGpu, FakeNvml
from tests.support import value, wait_until

UUID0 = "GPU-6f0e3a52-6c4b-1b39-3c3f-6a1a7a9b1f01"
UUID1 = "GPU-0c8d1f7e-2a7d-4e91-9b0b-54f3e1b3a2c7"
TIMEOUT = 0.5


def gpu_series(families: list[Metric], **labels: str) -> list[str]:
    return [
        s.name
        for f in families
        for s in f.samples
        if s.name.startswith("inferwatch_gpu_")
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    gpus = [
        FakeGpu(UUID0, processes=[(os.getpid(), 512 * 1024**2), (2**22 + 7, GIB)]),
        FakeGpu(
            UUID1,
            name="NVIDIA L4",
            utilization=80,
            memory_used=8 * GIB,
            unsupported={"nvmlDeviceGetEncoderUtilization", "nvmlDeviceGetTotalEccErrors"},
        ),
    ]
    return FakeNvml(gpus).install(monkeypatch)


@pytest.fixture
def serve() -> Iterator[Callable[..., Exporter]]:
    started: list[Exporter] = []

    def start(collectors: list[Collector], **settings: object) -> Exporter:
        config = ExporterConfig(
            host="127.0.0.1", port=0, collector_timeout=TIMEOUT, cache_ttl=0.0, **settings
        )
        exporter = start_exporter(config, collectors=collectors)
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.close()


def scrape(exporter: Exporter) -> list[Metric]:
    response = httpx.get(f"{exporter.url}/metrics", timeout=10)
    assert response.status_code == 200
    return list(text_string_to_metric_families(response.text))


def gpu_collector() -> GpuCollector:
    return GpuCollector(pids=[os.getpid()], backoff_initial=0.0)


def test_exact_values_and_units(fake: FakeNvml, serve: Callable[..., Exporter]) -> None:
    exporter = serve([gpu_collector()])
    m = scrape(exporter)
    g0 = {"gpu": "0", "uuid": UUID0}
    g1 = {"gpu": "1", "uuid": UUID1}
    assert value(m, "inferwatch_exporter_collector_success", collector="gpu") == 1
    assert value(m, "inferwatch_gpu_info", **g0, name="NVIDIA A100-SXM4-40GB") == 1
    assert value(m, "inferwatch_gpu_info", **g1, driver_version="550.54.15") == 1
    assert value(m, "inferwatch_gpu_utilization_ratio", **g0) == 0.37
    assert value(m, "inferwatch_gpu_utilization_ratio", **g1) == 0.8
    assert value(m, "inferwatch_gpu_memory_utilization_ratio", **g0) == 0.12
    assert value(m, "inferwatch_gpu_memory_used_bytes", **g0) == 1073741824
    assert value(m, "inferwatch_gpu_memory_total_bytes", **g0) == 17179869184
    assert value(m, "inferwatch_gpu_memory_used_bytes", **g1) == 8 * 1073741824
    assert value(m, "inferwatch_gpu_temperature_celsius", **g0) == 61
    assert value(m, "inferwatch_gpu_power_watts", **g0) == 187.5  # 187500 mW
    assert value(m, "inferwatch_gpu_power_limit_watts", **g0) == 400
    assert value(m, "inferwatch_gpu_clock_hertz", **g0, clock="graphics") == 1.41e9  # MHz
    assert value(m, "inferwatch_gpu_clock_hertz", **g0, clock="memory") == 1.215e9
    assert value(m, "inferwatch_gpu_throttle_reasons", **g0, reason="sw_power_cap") == 1
    assert value(m, "inferwatch_gpu_throttle_reasons", **g0, reason="hw_slowdown") == 1
    assert value(m, "inferwatch_gpu_throttle_reasons", **g0, reason="gpu_idle") == 0
    assert value(m, "inferwatch_gpu_encoder_utilization_ratio", **g0) == 0.05
    assert value(m, "inferwatch_gpu_decoder_utilization_ratio", **g0) == 0.4
    assert value(m, "inferwatch_gpu_ecc_errors_total", **g0, type="corrected") == 3
    assert value(m, "inferwatch_gpu_ecc_errors_total", **g0, type="uncorrected") == 0
    # only this service's process counts, not the other pid on the same GPU
    assert value(m, "inferwatch_gpu_process_memory_used_bytes", **g0) == 512 * 1024**2
    assert value(m, "inferwatch_gpu_process_memory_used_bytes", **g1) == 0
    # unsupported on GPU 1: omitted there only, never written as 0
    assert value(m, "inferwatch_gpu_encoder_utilization_ratio", **g1) is None
    assert value(m, "inferwatch_gpu_ecc_errors_total", **g1, type="corrected") is None
    assert value(m, "inferwatch_gpu_decoder_utilization_ratio", **g1) == 0.4

    assert value(m, "inferwatch_gpu_xid_errors_total", **g1) == 0
    fake.xid(1, 79)
    fake.xid(1, 48)
    m = scrape(exporter)
    assert value(m, "inferwatch_gpu_xid_errors_total", **g1) == 2
    assert value(m, "inferwatch_gpu_xid_errors_total", **g0) == 0


def test_nvml_missing_fails_gpu_only(
    fake: FakeNvml, serve: Callable[..., Exporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.remove_library()
    exporter = serve([HostCollector(), gpu_collector()])
    m = scrape(exporter)
    assert value(m, "inferwatch_exporter_collector_success", collector="gpu") == 0
    assert value(m, "inferwatch_exporter_collector_success", collector="host") == 1
    assert value(m, "inferwatch_host_memory_total_bytes") > 0
    assert gpu_series(m) == []  # no zeros standing in for missing data
    fake.restore()
    m = wait_until(
        lambda: (
            (m := scrape(exporter))
            and value(m, "inferwatch_exporter_collector_success", collector="gpu") == 1
            and m
        ),
        message="GPU collector to initialise once NVML is back",
    )
    assert value(m, "inferwatch_gpu_utilization_ratio", gpu="0", uuid=UUID0) == 0.37


def test_gpu_lost_mid_run_drops_only_that_gpu(
    fake: FakeNvml, serve: Callable[..., Exporter]
) -> None:
    exporter = serve([gpu_collector()])
    m = scrape(exporter)
    assert gpu_series(m, gpu="1") and gpu_series(m, gpu="0")
    fake.gpus[1].lost = True
    m = scrape(exporter)
    assert value(m, "inferwatch_exporter_collector_success", collector="gpu") == 0
    assert gpu_series(m, gpu="1") == []
    assert value(m, "inferwatch_gpu_utilization_ratio", gpu="0", uuid=UUID0) == 0.37
    # the collector re-enumerates (backoff permitting) and the GPU returns after a reset
    fake.gpus[1].lost = False
    wait_until(
        lambda: gpu_series(scrape(exporter), gpu="1"), message="GPU 1 to come back after reset"
    )


def test_hanging_call_is_bounded_and_recovers(
    fake: FakeNvml, serve: Callable[..., Exporter]
) -> None:
    exporter = serve([HostCollector(), gpu_collector()])
    release = fake.hang("nvmlDeviceGetUtilizationRates")
    try:
        for _ in range(3):  # each scrape bounded; the hung run is shared, not repeated
            started = time.monotonic()
            m = scrape(exporter)
            assert time.monotonic() - started < TIMEOUT + 1.0
            assert value(m, "inferwatch_exporter_collector_success", collector="gpu") == 0
            assert value(m, "inferwatch_exporter_collector_success", collector="host") == 1
            assert gpu_series(m) == []
        assert fake.entered.is_set()
        assert value(m, "inferwatch_exporter_collector_timeouts_total", collector="gpu") == 3
        stuck = [t for t in threading.enumerate() if t.name == "inferwatch-collector-gpu"]
        assert len(stuck) == 1, "hung collector runs must not pile up"
    finally:
        release.set()
    m = wait_until(
        lambda: (
            (m := scrape(exporter))
            and value(m, "inferwatch_exporter_collector_success", collector="gpu") == 1
            and m
        ),
        message="GPU collector to recover after the call returned",
    )
    assert value(m, "inferwatch_gpu_utilization_ratio", gpu="1", uuid=UUID1) == 0.8


def test_reinitialises_after_lifecycle_error(
    fake: FakeNvml, serve: Callable[..., Exporter]
) -> None:
    exporter = serve([gpu_collector()])
    assert value(scrape(exporter), "inferwatch_exporter_collector_success", collector="gpu") == 1
    assert fake.init_calls == 1
    fake.fail_once("nvmlDeviceGetCount", pynvml.NVML_ERROR_UNINITIALIZED)
    m = scrape(exporter)
    assert value(m, "inferwatch_exporter_collector_success", collector="gpu") == 0
    assert gpu_series(m) == []
    m = scrape(exporter)  # backoff 0: re-initialised on the next scrape
    assert value(m, "inferwatch_exporter_collector_success", collector="gpu") == 1
    assert fake.init_calls == 2

    fake.unload_driver()  # the driver goes away: init fails too, with backoff
    m = scrape(exporter)
    assert value(m, "inferwatch_exporter_collector_success", collector="gpu") == 0
    fake.restore()
    wait_until(
        lambda: (
            value(scrape(exporter), "inferwatch_exporter_collector_success", collector="gpu") == 1
        ),
        message="re-initialisation after the driver came back",
    )
    assert fake.init_calls == 3


def test_promtool_accepts_the_output(fake: FakeNvml, serve: Callable[..., Exporter]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    exporter = serve([HostCollector(), gpu_collector()])
    fake.xid(0, 13)
    scrape(exporter)  # second scrape: CPU usage ratio present too
    body = httpx.get(f"{exporter.url}/metrics", timeout=10).text
    assert "inferwatch_gpu_utilization_ratio" in body
    assert "inferwatch_host_cpu_usage_ratio" in body
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
