"""Fault episodes in the report's per-scrape failure shares and the mean time to recover."""

from __future__ import annotations

from inferwatch.reports.recovery import (
    episodes,
    failed_shares,
    mean_recovery,
    merge,
    scrape_faults,
)


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


def test_a_fault_runs_from_its_first_to_its_last_faulty_scrape() -> None:
    shares = [(1.0, 0.0), (2.0, 0.4), (3.0, 1.0), (4.0, 0.3), (5.0, 0.05), (6.0, 0.5)]
    found = scrape_faults(shares, threshold=0.05)
    assert found == [
        # Began within (1, 2], ended within (3, 4]: 2 s to within one interval.
        {"start": 2.0, "end": 4.0, "seconds": 2.0, "recovered": True, "recovered_at": 5.0},
        # One faulty scrape, still under way at the end.
        {"start": 6.0, "end": 6.0, "seconds": 0.0, "recovered": False, "recovered_at": None},
    ]
    assert mean_recovery(found) == 2.0


def _fault(start: float, end: float, recovered_at: float | None) -> dict[str, object]:
    return {"start": start, "end": end, "seconds": end - start,
            "recovered": recovered_at is not None, "recovered_at": recovered_at}  # fmt: skip


def test_overlapping_faults_of_instances_are_one_fault() -> None:
    a, b = _fault(10.0, 20.0, 21.0), _fault(12.0, 25.0, 26.0)
    c, d = _fault(40.0, 50.0, None), _fault(45.0, 48.0, 49.0)
    e, f = _fault(60.0, 70.0, 71.0), _fault(65.0, 70.0, 72.0)
    assert merge([c, b, a, f, d, e]) == [_fault(10.0, 25.0, 26.0), _fault(40.0, 50.0, None),
                                         _fault(60.0, 70.0, 72.0)]  # fmt: skip
