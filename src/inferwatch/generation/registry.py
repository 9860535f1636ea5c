"""The producers behind ``inferwatch generate``, in one list.

Adding a generated artefact means adding one :class:`Producer` here: the driver then writes
it, checks it for staleness and removes what it stops producing. Paths are relative to the
project root; ``path#name`` is the region of ``path`` between ``<!-- name:start -->`` and
``<!-- name:end -->`` (the rest of that file is hand-written).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from inferwatch.alerts.thresholds import Thresholds

Files = dict[str, str]


@dataclass(frozen=True)
class Producer:
    """One domain's generated files.

    ``source`` says, in the folder notes, what to edit instead of the generated file.
    ``requires`` names optional packages it needs: without them the producer is skipped and
    the files it owns are left as they are (neither reported stale nor removed).
    """

    name: str
    source: str
    make: Callable[[Thresholds], Files]
    requires: tuple[str, ...] = ()

    def available(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.requires)


def _rules(thresholds: Thresholds) -> Files:
    from inferwatch.alerts import files

    return files.rule_files_for(thresholds)


def _runbooks(thresholds: Thresholds) -> Files:
    from inferwatch.alerts import files

    return files.runbook_files(thresholds)


def _promtool_tests(thresholds: Thresholds) -> Files:
    from inferwatch.alerts import files

    return files.promtool_test_files(thresholds)


def _dashboards(thresholds: Thresholds) -> Files:
    from inferwatch import dashboards

    return dashboards.files(thresholds)


def _compose(thresholds: Thresholds) -> Files:
    from inferwatch.deploy import compose

    return compose.files(thresholds)


def _alertmanager(thresholds: Thresholds) -> Files:
    from inferwatch import alertmanager

    return alertmanager.files(thresholds)


def _kubernetes(thresholds: Thresholds) -> Files:
    from inferwatch.deploy import kubernetes

    return kubernetes.files(thresholds)


def _kubernetes_dashboards(thresholds: Thresholds) -> Files:
    from inferwatch import dashboards
    from inferwatch.deploy import kubernetes

    return kubernetes.dashboard_files(dashboards.files(thresholds))


def _catalogue(thresholds: Thresholds) -> Files:
    from inferwatch import catalogue

    return {"docs/metrics.md#catalogue": catalogue.render()}


def _fault_table(thresholds: Thresholds) -> Files:
    from inferwatch.generation import fault_table

    return fault_table.files()


SOURCE_THRESHOLDS = "src/inferwatch/alerts/thresholds.yaml and src/inferwatch/alerts/"
PRODUCERS: tuple[Producer, ...] = (
    Producer("rules", SOURCE_THRESHOLDS, _rules, ("yaml",)),
    Producer("runbooks", SOURCE_THRESHOLDS, _runbooks, ("yaml",)),
    Producer("promtool-tests", SOURCE_THRESHOLDS, _promtool_tests, ("yaml",)),
    Producer("dashboards", "src/inferwatch/dashboards/", _dashboards, ("yaml", "grafanalib")),
    Producer("compose", "src/inferwatch/deploy/compose.py", _compose, ("yaml",)),
    Producer("alertmanager", "src/inferwatch/alertmanager.py", _alertmanager, ("yaml",)),
    Producer("kubernetes", "src/inferwatch/deploy/", _kubernetes, ("yaml",)),
    Producer(
        "kubernetes-dashboards",
        "src/inferwatch/dashboards/ and src/inferwatch/deploy/kubernetes.py",
        _kubernetes_dashboards,
        ("yaml", "grafanalib"),
    ),
    Producer("catalogue", "the metric definitions (src/inferwatch/catalogue.py)", _catalogue),
    Producer(
        "fault-table",
        "docs/e2e-results.json, recorded by tests/test_e2e_faults.py",
        _fault_table,
    ),
)


def by_name(name: str) -> Producer:
    for producer in PRODUCERS:
        if producer.name == name:
            return producer
    raise KeyError(f"no producer {name!r}; known: {', '.join(p.name for p in PRODUCERS)}")
