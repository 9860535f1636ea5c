"""The metric catalogue: every metric inferwatch defines, rendered as Markdown.

The catalogue is built from the metric definitions themselves (never written by hand), so the
table in docs/metrics.md cannot drift from what a scrape actually returns: a test compares
the two.
New metric sets (AI workload, collectors) are added to :data:`METRIC_SETS`.

The standalone exporter's metrics exist only at scrape time, from backends the catalogue
cannot reach; its collectors declare them up front instead (``METRICS`` in each collector
module, see :mod:`inferwatch.exporters.descriptors`), and the catalogue lists those
declarations: one table for what the runner adds to every collector, one per collector named
in :data:`~inferwatch.exporters.config.COLLECTOR_MODULES`, so a new collector is listed
without an edit here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.registry import Collector, CollectorRegistry

from inferwatch.exporters.config import COLLECTOR_MODULES

# Labels the exposition adds by itself; they are part of the type, not of the metric.
_IMPLIED_LABELS = frozenset({"le", "quantile"})
# How each type's family name becomes the name a scrape shows (prometheus_client strips these).
_EXPOSED_SUFFIX = {"counter": "_total", "info": "_info"}


@dataclass(frozen=True)
class MetricSet:
    """A group of metrics defined together, and how to create them in a given registry."""

    title: str
    build: Callable[[CollectorRegistry], object]


@dataclass(frozen=True)
class MetricInfo:
    name: str  # as exposed: counters with `_total`, histograms without `_bucket`/`_sum`/`_count`
    type: str
    labels: tuple[str, ...]
    help: str


def _http(registry: CollectorRegistry) -> object:
    # Imported here so that listing the sets costs nothing until a catalogue is built.
    from inferwatch.http.instruments import HttpMetrics

    return HttpMetrics(registry, body_sizes=True)  # the opt-in sizes are listed too


def _ai(registry: CollectorRegistry) -> object:
    from inferwatch.ai import define_metrics

    return define_metrics(registry)


def _pools(registry: CollectorRegistry) -> object:
    from inferwatch.pools.instruments import pool_metrics

    return pool_metrics(registry)


def _self(registry: CollectorRegistry) -> object:
    from inferwatch.metrics.shared import instrumentation_errors

    return instrumentation_errors(registry)


# Where the exporter's runner declares what it adds for every collector.
EXPORTER_RUNNER_MODULE = "inferwatch.exporters.collector"


def declared(module_name: str) -> Callable[[CollectorRegistry], object]:
    """A metric set built from the ``METRICS`` descriptors ``module_name`` declares."""

    def build(registry: CollectorRegistry) -> object:
        from inferwatch.exporters.descriptors import DeclaredMetrics

        collector = DeclaredMetrics(importlib.import_module(module_name).METRICS)
        registry.register(collector)
        return collector

    return build


METRIC_SETS: list[MetricSet] = [
    MetricSet("HTTP and WebSocket (`inferwatch.http`)", _http),
    MetricSet("AI workloads (`inferwatch.ai`)", _ai),
    MetricSet("Connection pools and database clients (`inferwatch.pools`)", _pools),
    MetricSet("inferwatch itself", _self),
    MetricSet(
        "Standalone exporter, for every collector (`inferwatch exporter`)",
        declared(EXPORTER_RUNNER_MODULE),
    ),
    *(
        MetricSet(f"Standalone exporter, `{name}` collector (`{module}`)", declared(module))
        for name, module in COLLECTOR_MODULES.items()
    ),
]


class _RecordingRegistry(CollectorRegistry):
    """A registry that remembers its collectors in registration order.

    CollectorRegistry keeps them only in a private dict; recording them here tells which
    collectors each metric set added, without touching private state.
    """

    def __init__(self) -> None:
        super().__init__()
        self.collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)  # raises on duplicate names across sets, as it should
        self.collectors.append(collector)


def _labels(collector: Any, family: Any, families: int) -> tuple[str, ...]:
    # Families built by the *MetricFamily helpers (inferwatch's own metrics, most custom
    # collectors) carry their label names; prometheus_client's metric classes describe
    # themselves without them but hold them on the collector.
    names = tuple(getattr(family, "_labelnames", ()) or ())
    if not names and families == 1:
        names = tuple(getattr(collector, "labelnames", ()) or getattr(collector, "_labelnames", ()))
    seen = list(names)
    for sample in family.samples:
        seen.extend(k for k in sample.labels if k not in seen)
    return tuple(label for label in seen if label not in _IMPLIED_LABELS)


def _describe(collector: Any) -> list[Any]:
    # describe() yields the families even when no series exist yet (labelled metrics before
    # their first observation, a GPU collector on a machine without GPUs).
    describe = getattr(collector, "describe", None)
    families = list(describe() if describe is not None else collector.collect())
    return families


def metrics_of(collectors: Iterable[Collector]) -> list[MetricInfo]:
    """One entry per metric family the collectors expose, sorted by exposed name."""
    infos: list[MetricInfo] = []
    for collector in collectors:
        families = _describe(collector)
        for family in families:
            infos.append(
                MetricInfo(
                    name=family.name + _EXPOSED_SUFFIX.get(family.type, ""),
                    type=family.type,
                    labels=_labels(collector, family, len(families)),
                    help=" ".join(family.documentation.split()),
                )
            )
    return sorted(infos, key=lambda info: info.name)


def build(
    sets: Sequence[MetricSet] | None = None,
) -> tuple[CollectorRegistry, list[tuple[MetricSet, list[MetricInfo]]]]:
    """Create every metric set in one fresh registry; return it and each set's metrics.

    One shared registry (rather than one per set) makes a name defined by two sets fail here.
    """
    registry = _RecordingRegistry()
    grouped: list[tuple[MetricSet, list[MetricInfo]]] = []
    for metric_set in METRIC_SETS if sets is None else sets:
        before = len(registry.collectors)
        metric_set.build(registry)
        grouped.append((metric_set, metrics_of(registry.collectors[before:])))
    return registry, grouped


def _cell(text: str) -> str:
    # A literal `|` would end the table cell.
    return text.replace("|", "\\|")


def render(sets: Sequence[MetricSet] | None = None) -> str:
    """The catalogue as Markdown: one table per metric set, ending with a newline."""
    _, grouped = build(sets)
    parts: list[str] = []
    for metric_set, infos in grouped:
        rows = [
            f"### {metric_set.title}",
            "",
            "| Metric | Type | Labels | Meaning |",
            "| --- | --- | --- | --- |",
        ]
        for info in infos:
            labels = ", ".join(f"`{label}`" for label in info.labels) or "—"
            rows.append(f"| `{info.name}` | {info.type} | {labels} | {_cell(info.help)} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts) + "\n"
