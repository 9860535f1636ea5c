"""The demo service's parts, in process: the database, shared faults, the leak, settings."""

from __future__ import annotations

import asyncio
import math
import random
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from inferwatch.demo import create_app
from inferwatch.demo.database import PRUNE_EVERY, Database, engine_url
from inferwatch.demo.faults import Faults, FaultSwitch, FaultUpdate
from inferwatch.demo.jobs import Job
from inferwatch.demo.leak import MIB, MemoryLeak
from inferwatch.demo.models import resolve
from inferwatch.demo.settings import Settings, from_env, to_env


def _jobs(n: int) -> list[Job]:
    return [Job.new("audio", "speech-small", 1.0 + i) for i in range(n)]


def _database(path: Path, max_rows: int = 1000) -> Database:
    return Database(engine_url(None, path), registry=CollectorRegistry(), max_rows=max_rows)


def test_database_keeps_the_newest_rows(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = _database(tmp_path, max_rows=50)
        await db.create_tables()
        jobs = _jobs(PRUNE_EVERY)
        for i, job in enumerate(jobs):  # distinct creation times, oldest first
            await db.insert(job.model_copy(update={"created_at": 1000.0 + i}))
        assert [await db.get(j.job_id) is not None for j in (jobs[0], jobs[49], jobs[50])] == [
            False,
            False,
            True,
        ]
        await db.update(jobs[-1].job_id, status="done", result_bytes=8044)
        got = await db.get(jobs[-1].job_id)
        assert got is not None and (got.status, got.result_bytes) == ("done", 8044)
        assert await db.get("../../etc/passwd") is None  # ids are bound parameters
        await db.close()

    asyncio.run(scenario())


def test_database_file_is_shared_between_workers(tmp_path: Path) -> None:
    async def scenario() -> None:
        one, two = _database(tmp_path), _database(tmp_path)
        await one.create_tables()
        await two.create_tables()  # IF NOT EXISTS: every worker runs it
        job = _jobs(1)[0]
        await one.insert(job)
        assert await two.get(job.job_id) == job
        await one.close()
        await two.close()

    asyncio.run(scenario())


def test_memory_leak_grows_to_its_cap_and_is_released() -> None:
    leak = MemoryLeak(cap=8 * MIB)
    leak.advance(10.0, 0.25)  # 2.5 MiB due: two whole chunks now, the rest carried over
    assert leak.leaked == 2 * MIB
    leak.advance(10.0, 0.05)
    assert leak.leaked == 3 * MIB
    leak.advance(1000.0, 1.0)
    assert leak.leaked == 8 * MIB  # never past the cap
    leak.advance(0.0, 1.0)
    assert leak.leaked == 0


def test_settings_round_trip_through_the_environment(tmp_path: Path) -> None:
    settings = Settings(
        time_scale=0.5,
        seed=3,
        state_dir=tmp_path,
        redis_url="redis://:pw@localhost:6379/0",
        max_models=3,
        preload=("video-diffusion",),
        max_batch_size=8,
        batch_window=0.2,
        db_pool_timeout=0.25,
    )
    assert from_env(to_env(settings)) == settings
    assert from_env({}) == Settings()
    assert from_env({"INFERWATCH_DEMO_PRELOAD": "none"}).preload == ()
    with pytest.raises(ValueError, match="INFERWATCH_DEMO_MAX_MODELS='two' is not valid"):
        from_env({"INFERWATCH_DEMO_MAX_MODELS": "two"})


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"preload": ("speech-small", "musicgen-small", "video-diffusion")}, "cannot preload 3"),
        ({"preload": ("gpt-9",)}, "unknown models to preload: ['gpt-9']"),
        ({"max_models": 0}, "max_models must be at least 1"),
        ({"max_batch_size": 0}, "max_batch_size must be at least 1"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        Settings(**changes)  # type: ignore[arg-type]


def test_models_are_checked_against_their_kind() -> None:
    assert resolve("music", None).name == "musicgen-small"
    assert resolve("music", "musicgen-large").name == "musicgen-large"
    with pytest.raises(ValueError, match="generates audio, not video"):
        resolve("video", "speech-small")
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        resolve("audio", "nope")


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
