"""Model lifecycle metrics: loads with phases, failures, loaded models, unloads, label bounds."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.ai import OTHER, InferenceMetrics, ModelMetrics
from inferwatch.http.instruments import http_metrics
from inferwatch.metrics.histogram import HistogramChild
from tests.support import Exact, registry_samples, value

Scrape = Exact
LOAD = "inferwatch_model_load_duration_seconds"
PHASE = "inferwatch_model_load_phase_duration_seconds"
FAILURES = "inferwatch_model_load_failures_total"
LOADED = "inferwatch_model_loaded"
UNLOADS = "inferwatch_model_unloads_total"
LAST_LOAD = "inferwatch_model_last_load_timestamp_seconds"
ERRORS = "inferwatch_instrumentation_errors_total"


def scrape(registry: CollectorRegistry) -> Scrape:
    return registry_samples(registry)


def names(got: Scrape, prefix: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    return {key for key in got if key[0].startswith(prefix)}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError."""


def test_successful_load_records_duration_phases_loaded_and_timestamp() -> None:
    reg, clock = CollectorRegistry(), FakeClock()
    models = ModelMetrics(reg, clock=clock)
    before = time.time()
    with models.loading("musicgen-small", version="1.0", device="cuda:0") as load:
        with load.phase("download"):
            clock.advance(12.0)
        with load.phase("to_device"):
            clock.advance(0.3)
        clock.advance(0.2)
    after = time.time()
    got = scrape(reg)
    ok = {"model": "musicgen-small", "outcome": "success"}
    assert value(got, f"{LOAD}_bucket", le="10.0", **ok) == 0
    assert value(got, f"{LOAD}_bucket", le="15.0", **ok) == 1
    assert value(got, f"{LOAD}_count", **ok) == 1
    assert value(got, f"{LOAD}_sum", **ok) == pytest.approx(12.5)
    download = {"model": "musicgen-small", "phase": "download"}
    to_device = {"model": "musicgen-small", "phase": "to_device"}
    assert value(got, f"{PHASE}_bucket", le="10.0", **download) == 0
    assert value(got, f"{PHASE}_bucket", le="15.0", **download) == 1
    assert value(got, f"{PHASE}_bucket", le="0.25", **to_device) == 0
    assert value(got, f"{PHASE}_bucket", le="0.5", **to_device) == 1
    assert value(got, f"{PHASE}_sum", **to_device) == pytest.approx(0.3)
    assert value(got, LOADED, model="musicgen-small", version="1.0", device="cuda:0") == 1
    stamp = value(got, LAST_LOAD, model="musicgen-small")
    assert stamp is not None and before <= stamp <= after
    assert not names(got, FAILURES) and not names(got, UNLOADS)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OutOfMemoryError("CUDA out of memory"), "oom"),
        (MemoryError(), "oom"),
        (TimeoutError(), "timeout"),
        (ValueError("bad checkpoint"), "error"),
    ],
)
def test_failed_load_counts_failure_in_its_phase_and_reraises(
    error: Exception, reason: str
) -> None:
    reg = CollectorRegistry()
    models = ModelMetrics(reg)
    with pytest.raises(type(error)) as raised, models.loading("bark", device="cuda:1") as load:
        with load.phase("download"):
            pass
        with load.phase("to_device"):
            raise error
    assert raised.value is error
    got = scrape(reg)
    assert value(got, FAILURES, model="bark", phase="to_device", reason=reason) == 1
    assert value(got, f"{LOAD}_count", model="bark", outcome="failure") == 1
    assert value(got, f"{LOAD}_count", model="bark", outcome="success") is None
    assert value(got, f"{PHASE}_count", model="bark", phase="to_device") == 1
    assert not names(got, LOADED) and not names(got, LAST_LOAD)


def test_failure_outside_any_phase_and_cancelled_load() -> None:
    reg = CollectorRegistry()
    models = ModelMetrics(reg)
    with pytest.raises(KeyError), models.loading("bark"):
        raise KeyError("config")

    async def cancelled_load() -> None:
        async with models.loading("bark") as load, load.phase("warmup"):
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled_load())
    got = scrape(reg)
    assert value(got, FAILURES, model="bark", phase="none", reason="error") == 1
    assert value(got, FAILURES, model="bark", phase="warmup", reason="cancelled") == 1
    assert value(got, f"{LOAD}_count", model="bark", outcome="failure") == 2


def test_decorator_and_async_forms() -> None:
    reg = CollectorRegistry()
    models = ModelMetrics(reg)

    @models.track("bark", version="2", device="cpu")
    def load_sync(x: int) -> int:
        return x + 1

    @models.track("bark", version="2", device="cpu")
    async def load_async(x: int) -> int:
        return x * 2

    @models.track("bark", version="2", device="cpu")
    def load_broken() -> None:
        raise RuntimeError("no weights")

    async def with_async_cm() -> None:
        async with (
            models.loading("bark", version="2", device="cpu") as load,
            load.phase("deserialize"),
        ):
            pass

    assert load_sync(1) == 2
    assert load_sync.__name__ == "load_sync"
    assert asyncio.run(load_async(4)) == 8
    asyncio.run(with_async_cm())
    with pytest.raises(RuntimeError, match="no weights"):
        load_broken()
    got = scrape(reg)
    assert value(got, f"{LOAD}_count", model="bark", outcome="success") == 3
    assert value(got, f"{LOAD}_count", model="bark", outcome="failure") == 1
    assert value(got, FAILURES, model="bark", phase="none", reason="error") == 1
    assert value(got, f"{PHASE}_count", model="bark", phase="deserialize") == 1
    # Loading what is already loaded keeps one copy.
    assert value(got, LOADED, model="bark", version="2", device="cpu") == 1


def test_unload_by_device_and_version_replacement() -> None:
    reg = CollectorRegistry()
    models = ModelMetrics(reg)
    for device in ("cuda:0", "cuda:1"):
        with models.loading("bark", version="1", device=device):
            pass
    models.unloaded("bark", reason="lru", device="cuda:0")
    got = scrape(reg)
    assert value(got, LOADED, model="bark", version="1", device="cuda:0") is None
    assert value(got, LOADED, model="bark", version="1", device="cuda:1") == 1
    assert value(got, UNLOADS, model="bark", reason="lru") == 1

    with models.loading("bark", version="2", device="cuda:1"):  # replaces version 1 there
        pass
    got = scrape(reg)
    assert value(got, LOADED, model="bark", version="1", device="cuda:1") is None
    assert value(got, LOADED, model="bark", version="2", device="cuda:1") == 1

    models.unloaded("bark", reason="oom")  # every device
    models.unloaded("never-loaded", reason="idle")  # counted, and nothing goes negative
    got = scrape(reg)
    assert not names(got, LOADED)
    assert value(got, UNLOADS, model="bark", reason="oom") == 1
    assert value(got, UNLOADS, model="never-loaded", reason="idle") == 1


def test_model_cap_folds_later_models_into_other_on_every_metric() -> None:
    reg = CollectorRegistry()
    models = ModelMetrics(reg, max_models=2)
    infer = InferenceMetrics(reg)  # shares the registry's model bound
    for name in ("a", "b", "c", "d"):
        with models.loading(name, version="1", device="cpu"):
            pass
    for name in ("a", "c"):
        with infer.request(name):
            pass
    got = scrape(reg)
    assert value(got, f"{LOAD}_count", model="a", outcome="success") == 1
    assert value(got, f"{LOAD}_count", model="b", outcome="success") == 1
    assert value(got, f"{LOAD}_count", model=OTHER, outcome="success") == 2
    assert value(got, LOADED, model=OTHER, version="1", device="cpu") == 2
    assert value(got, LAST_LOAD, model="c") is None
    assert value(got, LAST_LOAD, model=OTHER) is not None
    requests = "inferwatch_inference_requests_total"
    assert value(got, requests, model="a", outcome="success") == 1
    assert value(got, requests, model=OTHER, outcome="success") == 1
    assert {dict(k[1])["model"] for k in names(got, "inferwatch_")} == {"a", "b", OTHER}

    models.unloaded("c", reason="manual")
    assert value(scrape(reg), LOADED, model=OTHER, version="1", device="cpu") == 1
    models.unloaded("d", reason="manual")
    got = scrape(reg)
    assert value(got, LOADED, model=OTHER, version="1", device="cpu") is None
    assert value(got, UNLOADS, model=OTHER, reason="manual") == 2


def test_allow_list_and_conflicting_bounds() -> None:
    reg = CollectorRegistry()
    models = ModelMetrics(reg, allowed_models=["bark", "musicgen-small"])
    with models.loading("bark"):
        pass
    with models.loading("some-user-upload"):
        pass
    got = scrape(reg)
    assert value(got, f"{LOAD}_count", model="bark", outcome="success") == 1
    assert value(got, f"{LOAD}_count", model=OTHER, outcome="success") == 1
    ModelMetrics(reg, allowed_models=["musicgen-small", "bark"])  # the same bound: fine
    with pytest.raises(ValueError, match="bounded differently"):
        InferenceMetrics(reg, max_models=5)

    # A default bound not used yet gives way to an explicit one, whatever the order.
    reg2 = CollectorRegistry()
    infer = InferenceMetrics(reg2)
    ModelMetrics(reg2, max_models=1)
    for name in ("x", "y"):
        with infer.request(name):
            pass
    got = scrape(reg2)
    assert value(got, "inferwatch_inference_requests_total", model=OTHER, outcome="success") == 1
    with pytest.raises(ValueError, match="not both"):
        ModelMetrics(CollectorRegistry(), allowed_models=["a"], max_models=3)


def test_metrics_are_created_once_per_registry() -> None:
    reg = CollectorRegistry()
    first, second = ModelMetrics(reg), ModelMetrics(reg)
    with first.loading("bark"):
        pass
    with second.loading("bark"):
        pass
    assert value(scrape(reg), f"{LOAD}_count", model="bark", outcome="success") == 2
    with pytest.raises(ValueError, match="other buckets"):
        ModelMetrics(reg, load_buckets=[1, 2])
    ModelMetrics(None)  # unregistered: never conflicts


def test_broken_metrics_never_break_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = CollectorRegistry()
    http_metrics(reg)  # defines the instrumentation error counter
    models = ModelMetrics(reg)

    def broken(self: HistogramChild, value: float, exemplar: object = None) -> None:
        raise RuntimeError("metrics backend down")

    monkeypatch.setattr(HistogramChild, "observe", broken)

    @models.track("bark")
    def load() -> str:
        return "weights"

    assert load() == "weights"
    error = ValueError("user error")
    with pytest.raises(ValueError) as raised, models.loading("bark") as handle:
        with handle.phase("download"):
            pass
        raise error
    assert raised.value is error
    got = scrape(reg)
    assert value(got, ERRORS, component="ai.models.load") == 2
    assert value(got, ERRORS, component="ai.models.phase") == 1


def test_errors_are_logged_once_without_the_error_counter(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reg = CollectorRegistry()
    models = ModelMetrics(reg)
    monkeypatch.setattr(HistogramChild, "observe", lambda *a, **k: 1 / 0)
    with caplog.at_level(logging.WARNING, logger="inferwatch.ai"):
        for _ in range(3):
            with models.loading("bark"):
                pass
    assert [r.getMessage().count("ai.models.load") for r in caplog.records] == [1]


def test_concurrent_loads_are_exact() -> None:
    reg = CollectorRegistry()
    models = ModelMetrics(reg)
    threads, per_thread = 8, 200

    def work(i: int) -> None:
        for n in range(per_thread):
            with models.loading(f"m{n % 4}", device=f"cuda:{i}") as load, load.phase("warmup"):
                pass
            models.unloaded(f"m{n % 4}", reason="idle", device=f"cuda:{i}")

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    got = scrape(reg)
    loads = [value(got, f"{LOAD}_count", model=f"m{k}", outcome="success") for k in range(4)]
    assert loads == [threads * per_thread / 4] * 4
    assert sum(value(got, UNLOADS, model=f"m{k}", reason="idle") or 0 for k in range(4)) == (
        threads * per_thread
    )
    assert not names(got, LOADED)


def test_multiprocess_mode(tmp_path: os.PathLike[str]) -> None:
    # prometheus_client picks its value storage at import, so this runs in a fresh process.
    script = textwrap.dedent(
        """
        import asyncio
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        from inferwatch.ai import InferenceMetrics, ModelMetrics, instrumented_cache

        reg = CollectorRegistry()
        models, infer = ModelMetrics(reg), InferenceMetrics(reg)
        with models.loading("bark", version="1", device="cpu") as load:
            with load.phase("download"):
                pass
        with models.loading("musicgen", version="1", device="cpu"):
            pass
        models.unloaded("musicgen", reason="lru")
        with infer.request("bark") as req, req.queued("high"):
            req.produced(2, unit="frames")
        cached = instrumented_cache("emb", registry=reg)(lambda x: x)
        cached(1), cached(1)
        out = CollectorRegistry()
        MultiProcessCollector(out)
        print(generate_latest(out).decode())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    got: Scrape = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(run.stdout)
        for s in family.samples
    }
    assert value(got, f"{LOAD}_count", model="bark", outcome="success") == 1
    assert value(got, LOADED, model="bark", version="1", device="cpu") == 1
    assert value(got, LOADED, model="musicgen", version="1", device="cpu") == 0
    assert value(got, UNLOADS, model="musicgen", reason="lru") == 1
    assert value(got, "inferwatch_inference_requests_total", model="bark", outcome="success") == 1
    assert value(got, "inferwatch_queue_depth", priority="high") == 0
    assert value(got, "inferwatch_inference_output_units_total", model="bark", unit="frames") == 2
    assert value(got, "inferwatch_cache_gets_total", cache="emb", result="hit") == 1
    assert value(got, "inferwatch_cache_entries", cache="emb") == 1
