"""Metric descriptors: the families a collector may emit, declared before any scrape.

node_exporter declares a ``prometheus.Desc`` per metric when a collector is built and
``Collect`` only fills in values. The same here: each collector module declares its
:class:`Descriptor` constants (name, type, help, label names) in one ``METRICS`` tuple, and
``collect()`` builds its families from them. So the metric catalogue, the dashboards' tests
and a reader can all learn a collector's metrics without running it (or reaching its backend),
and a test checks that what a collector emits is exactly what it declares.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

MetricType = Literal["counter", "gauge"]
# What a descriptor builds: a family that takes samples with add_metric(labels, value).
Family = CounterMetricFamily | GaugeMetricFamily


@dataclass(frozen=True)
class Descriptor:
    """One metric family. ``name`` is the name a scrape shows (counters end in ``_total``)."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # prometheus_client strips a counter's `_total` and adds it back to the sample, so the
        # declared name is the exposed one only if counters, and counters alone, carry it.
        if (self.type == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.type} {self.name}: only counters end in _total")

    def family(self, value: float | None = None, *, help: str | None = None) -> Family:
        """A family of this metric: with its one unlabelled sample ``value``, or empty, to be
        filled with ``add_metric`` (labelled metrics). ``help`` replaces the declared text
        where it depends on the configuration (it must say the same with other figures)."""
        doc = self.help if help is None else help
        if value is not None and self.labels:
            raise ValueError(f"{self.name} is labelled: add its samples with add_metric")
        if self.type == "counter":
            if value is not None:
                return CounterMetricFamily(self.name, doc, value=value)
            return CounterMetricFamily(self.name, doc, labels=list(self.labels))
        if value is not None:
            return GaugeMetricFamily(self.name, doc, value=value)
        return GaugeMetricFamily(self.name, doc, labels=list(self.labels))


def non_empty(families: Iterable[Metric]) -> Iterator[Metric]:
    """The families that have samples: a collector reports no family it has nothing for."""
    return (family for family in families if family.samples)


class DeclaredMetrics:
    """A prometheus_client collector that exposes ``descriptors`` without samples: what the
    catalogue lists for a collector whose values exist only at scrape time."""

    def __init__(self, descriptors: Sequence[Descriptor]) -> None:
        self.descriptors = tuple(descriptors)

    def describe(self) -> list[Metric]:
        return [d.family() for d in self.descriptors]

    def collect(self) -> list[Metric]:
        return self.describe()
