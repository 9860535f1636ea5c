"""The alerts' generated files: rules, runbooks and promtool tests, as ``{path: text}``.

Pure functions of the thresholds, for :mod:`inferwatch.generation` (the committed files under
``alerts/``) and for the local stack, which renders the rules for its own scrape jobs, scaled
windows and ``for:`` (:func:`rule_files`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inferwatch.alerts import alerting, recording, runbooks, unit_tests
from inferwatch.alerts.adjust import (
    scale_for,
    scale_rule_windows,
    with_evaluation_interval,
    with_grafana,
    with_targets,
)
from inferwatch.alerts.render import to_yaml
from inferwatch.alerts.thresholds import Thresholds, load_thresholds
from inferwatch.alerts.units import parse_duration

Files = dict[str, str]
Groups = list[dict[str, Any]]


def rule_files_for(thresholds: Thresholds, adjust: Callable[[Groups], Groups] = list) -> Files:
    """The committed ``alerts/*.yaml``: recording and alerting rules for ``thresholds``."""
    return {
        "alerts/recording_rules.yaml": to_yaml(
            {"groups": adjust(recording.groups(thresholds))},
            "Recording rules shared by the alerts and the dashboards.",
        ),
        "alerts/alert_rules.yaml": to_yaml(
            {"groups": adjust(alerting.groups(thresholds))},
            "Alerting rules: thresholds, SLO burn rates, target health and the Watchdog.",
        ),
    }


def rule_files(
    thresholds: Sequence[Path] = (),
    *,
    for_scale: float = 1.0,
    targets: Sequence[str] | None = None,
    evaluation_interval: str | None = None,
    window_scale: float = 1.0,
    scrape_interval: str | None = None,
    grafana_base_url: str | None = None,
) -> Files:
    """Recording and alerting rules (file name -> YAML) for one deployment: the defaults
    with ``thresholds`` overlays merged on top, ``for:`` scaled, and its own scrape jobs.

    ``window_scale`` multiplies every range selector (``[5m]`` -> ``[30s]`` at 0.1) so that
    a fast test deployment also recovers fast; no window drops below two scrape intervals
    (``scrape_interval``, else the thresholds file's). Rule names keep their production
    window (``...:ratio_rate5m``), as dashboards and alerts refer to them by name.
    ``grafana_base_url`` replaces the thresholds' for the ``dashboard_url`` annotations; ""
    leaves them out.
    """
    loaded = scale_for(load_thresholds(*thresholds), for_scale)
    if grafana_base_url is not None:
        loaded = with_grafana(loaded, grafana_base_url)
    if targets is not None:
        loaded = with_targets(loaded, targets)
    if evaluation_interval is not None:
        loaded = with_evaluation_interval(loaded, parse_duration(evaluation_interval))
    if window_scale <= 0:
        raise ValueError(f"the window scale must be positive, got {window_scale}")
    scrape = (
        parse_duration(scrape_interval)
        if scrape_interval is not None
        else loaded.settings.scrape_interval
    )

    def adjust(groups: Groups) -> Groups:
        return scale_rule_windows(groups, window_scale, 2 * scrape)

    return {Path(rel).name: text for rel, text in rule_files_for(loaded, adjust).items()}


def runbook_files(thresholds: Thresholds) -> Files:
    """``alerts/runbooks/<Alert>.md``, one page per alert."""
    return {
        f"alerts/runbooks/{alert}.md": text for alert, text in runbooks.pages(thresholds).items()
    }


def promtool_test_files(thresholds: Thresholds) -> Files:
    """``alerts/tests/*.yaml``, run by ``promtool test rules``."""
    return {
        f"alerts/tests/{name}": to_yaml(doc, "Run: promtool test rules alerts/tests/*.yaml")
        for name, doc in unit_tests.documents(thresholds).items()
    }
