"""Fault episodes in the report's per-scrape failure shares and the mean time to recover."""

from __future__ import annotations

from inferwatch.reports.recovery import episodes, failed_shares, mean_recovery, merge


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


def test_failed_shares_are_per_scrape_at_the_scrapes_own_times() -> None:
    # Steps every 0.5 s over scrapes at x.2: each scrape is seen twice and judged once.
    scraped = {0.5: 0.2, 1.0: 0.2, 1.5: 1.2, 2.0: 1.2, 2.5: 2.2, 3.0: 2.2, 3.5: 3.2, 4.0: 4.2}
    total = {0.5: 10, 1.0: 10, 1.5: 20, 2.0: 20, 2.5: 40, 3.0: 40, 3.5: 40, 4.0: 50}
    # The failed series is born between the first two scrapes: absent means none yet.
    failed = {1.5: 5, 2.0: 5, 2.5: 25, 3.0: 25, 3.5: 25, 4.0: 25}
    # 3.2 counted no request: neither a fault nor a recovery.
    assert failed_shares(scraped, failed, total) == [(1.2, 0.5), (2.2, 1.0), (4.2, 0.0)]


def test_a_restart_is_not_judged() -> None:
    scraped = {1.0: 1.0, 2.0: 2.0, 3.0: 3.0, 4.0: 4.0}
    total = {1.0: 100, 2.0: 110, 3.0: 4, 4.0: 10}
    failed = {1.0: 50, 2.0: 60, 3.0: 0, 4.0: 3}
    assert failed_shares(scraped, failed, total) == [(2.0, 1.0), (4.0, 0.5)]


def test_overlapping_episodes_of_instances_are_one_fault() -> None:
    a = {"start": 10.0, "end": 20.0, "seconds": 10.0, "recovered": True}
    b = {"start": 12.0, "end": 25.0, "seconds": 13.0, "recovered": True}
    c = {"start": 40.0, "end": 50.0, "seconds": 10.0, "recovered": False}
    d = {"start": 45.0, "end": 48.0, "seconds": 3.0, "recovered": True}
    assert merge([c, b, a, d]) == [
        {"start": 10.0, "end": 25.0, "seconds": 15.0, "recovered": True},
        {"start": 40.0, "end": 50.0, "seconds": 10.0, "recovered": False},
    ]
