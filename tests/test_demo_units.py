"""The demo service's parts, in process: bounded job stores, shared faults, app settings."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from inferwatch.demo import create_app
from inferwatch.demo.faults import Faults, FaultSwitch, FaultUpdate
from inferwatch.demo.jobs import DirectoryJobStore, Job, MemoryJobStore


def _jobs(n: int) -> list[Job]:
    return [Job.new("audio", f"prompt {i}", 1.0) for i in range(n)]


def test_memory_job_store_keeps_the_newest_jobs() -> None:
    store = MemoryJobStore(max_jobs=3)
    jobs = _jobs(5)
    for job in jobs:
        store.put(job)
    store.put(jobs[-1].model_copy(update={"status": "done"}))  # an update is not a new job
    assert len(store) == 3
    assert [store.get(j.job_id) is not None for j in jobs] == [False, False, True, True, True]
    assert store.get(jobs[-1].job_id).status == "done"  # type: ignore[union-attr]


def test_directory_job_store_is_bounded_and_rejects_paths(tmp_path: Path) -> None:
    store = DirectoryJobStore(tmp_path, max_jobs=50)
    jobs = _jobs(200)
    for job in jobs:
        store.put(job)
    assert len(list(tmp_path.glob("*.json"))) <= 100  # pruned every 100 writes
    assert store.get(jobs[-1].job_id) == jobs[-1]
    assert store.get("../../etc/passwd") is None
    assert DirectoryJobStore(tmp_path).get(jobs[-1].job_id) == jobs[-1]  # another worker


def test_fault_file_is_shared_between_workers(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    one = FaultSwitch(Faults(), rng=random.Random(1), path=path)
    two = FaultSwitch(Faults(), rng=random.Random(2), path=path)
    one.update(FaultUpdate(error_rate=1.0))
    assert two.get().error_rate == 1.0
    two.reset()
    assert one.get() == Faults()


def test_rates_zero_and_one_are_exact() -> None:
    switch = FaultSwitch(Faults(), rng=random.Random(0))
    assert not any(switch.fires(0.0) for _ in range(1000))
    assert all(switch.fires(1.0) for _ in range(1000))


@pytest.mark.parametrize("time_scale", [0.0, -1.0, math.nan, math.inf])
def test_time_scale_must_be_positive_and_finite(time_scale: float) -> None:
    with pytest.raises(ValueError, match="time_scale"):
        create_app(time_scale=time_scale)


def test_apps_share_or_separate_registries() -> None:
    shared = CollectorRegistry()
    create_app(registry=shared)
    create_app(registry=shared)  # no "Duplicated timeseries"
    create_app()
    create_app()  # each gets a registry of its own
