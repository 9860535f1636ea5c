"""Artefact producers and the write/check driver behind ``inferwatch generate``.

Each producer maps relative paths to file contents. The dashboards generator plugs in by
adding a producer to ``PRODUCERS``; the driver handles writing, staleness checks and removing
generated files that a producer no longer makes (hand-written files are never touched).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferwatch import alertmanager
from inferwatch.alerts import alerting, recording, runbooks, unit_tests
from inferwatch.alerts.adjust import (
    scale_for,
    scale_rule_windows,
    with_evaluation_interval,
    with_grafana,
    with_targets,
)
from inferwatch.alerts.render import is_generated, to_yaml
from inferwatch.alerts.thresholds import Thresholds, load_thresholds
from inferwatch.alerts.units import parse_duration
from inferwatch.deploy import compose, kubernetes

Files = dict[str, str]


@dataclass(frozen=True)
class Producer:
    name: str
    owns: tuple[
        str, ...
    ]  # directories (relative to the output root) whose generated files it manages
    make: Callable[[Thresholds], Files]


Groups = list[dict[str, Any]]


def _rules(thresholds: Thresholds, adjust: Callable[[Groups], Groups] = list) -> Files:
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

    return {Path(rel).name: text for rel, text in _rules(loaded, adjust).items()}


def _runbooks(thresholds: Thresholds) -> Files:
    return {
        f"alerts/runbooks/{alert}.md": text for alert, text in runbooks.pages(thresholds).items()
    }


def _tests(thresholds: Thresholds) -> Files:
    return {
        f"alerts/tests/{name}": to_yaml(doc, "Run: promtool test rules alerts/tests/*.yaml")
        for name, doc in unit_tests.documents(thresholds).items()
    }


PRODUCERS: list[Producer] = [
    Producer("rules", ("alerts",), _rules),
    Producer("runbooks", ("alerts/runbooks",), _runbooks),
    Producer("tests", ("alerts/tests",), _tests),
    Producer("deploy", (compose.OUT_DIR,), compose.files),
    # One file in a folder of hand-written ones (README, routing cases): it owns no folder.
    Producer("alertmanager", (), alertmanager.files),
    Producer("kubernetes", (kubernetes.OUT_DIR,), kubernetes.files),
]
# The dashboards' ConfigMaps need grafanalib (the `dashboards` extra) like the dashboards
# themselves; without it they are left alone rather than reported stale or removed.
if importlib.util.find_spec("grafanalib") is not None:
    PRODUCERS.append(
        Producer("kubernetes-dashboards", (kubernetes.DASHBOARDS_DIR,), kubernetes.dashboard_files)
    )


@dataclass(frozen=True)
class Plan:
    """What writing would change: paths to create or update, and generated paths to remove."""

    changed: dict[str, str]
    removed: list[str]

    @property
    def stale(self) -> list[str]:
        return sorted([*self.changed, *self.removed])


def produce(thresholds: Thresholds, producers: list[Producer] | None = None) -> Files:
    files: Files = {}
    for producer in PRODUCERS if producers is None else producers:
        files.update(producer.make(thresholds))
    return dict(sorted(files.items()))


def plan(root: Path, thresholds: Thresholds, producers: list[Producer] | None = None) -> Plan:
    chosen = PRODUCERS if producers is None else producers
    files = produce(thresholds, chosen)
    changed = {}
    for rel, text in files.items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            changed[rel] = text
    removed = []
    for producer in chosen:
        for directory in producer.owns:
            folder = root / directory
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                rel = path.relative_to(root).as_posix()
                candidate = path.is_file() and rel not in files and path.suffix in (".yaml", ".md")
                if candidate and is_generated(path.read_text(encoding="utf-8")):
                    removed.append(rel)
    return Plan(changed, removed)


def write(root: Path, result: Plan) -> None:
    for rel, text in result.changed.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for rel in result.removed:
        (root / rel).unlink()
