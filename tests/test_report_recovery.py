"""Fault episodes in the report's error-ratio series and the mean time to recover."""

from __future__ import annotations

from inferwatch.reports.recovery import episodes, mean_recovery


def test_episodes_run_from_the_first_sample_above_to_the_first_back_below() -> None:
    samples = [(0, 0.0), (10, 0.2), (20, 0.5), (30, 0.05), (40, 0.0), (50, 0.3), (60, 0.06)]
    found = episodes(samples, threshold=0.05)
    assert found == [
        {"start": 10, "end": 30, "seconds": 20, "recovered": True},  # 0.05 is not above
        {"start": 50, "end": 60, "seconds": 10, "recovered": False},  # still under way
    ]
    assert mean_recovery(found) == 20


def test_no_fault_and_no_recovery() -> None:
    assert episodes([(0, 0.01), (10, 0.02)], threshold=0.05) == []
    assert mean_recovery(episodes([(0, 0.5), (10, 0.5)], threshold=0.05)) is None
