"""Look samples up by name and labels, in a scrape, a registry or exposition text.

``value(source, "http_server_request_duration_seconds_count", http_route="/x")`` sums the
samples with exactly that sample name (suffix included: ``_count``, ``_sum``, ``_bucket``,
``_total``) whose labels include the given ones, and is None when there is no such sample:
an absent series is not a zero, so a misspelled name or label cannot pass for "nothing
counted yet". A test that means "present and 0" asserts ``== 0``; one that means "never
created" asserts ``is None``. The source is whatever the test has at hand: a
:class:`Metrics` scrape, a registry or collector (read through the text format, so the
assertions see what Prometheus would see), exposition text, parsed families, or the
``{(name, labels): value}`` mapping of :func:`registry_samples`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Union

import httpx
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from .polling import wait_until

Families = Iterable[Metric]
SeriesKey = tuple[str, frozenset[tuple[str, str]]]  # (sample name, exact label set)
Exact = dict[SeriesKey, float]  # every sample of a scrape
Source = Union["Metrics", Collector, str, Families, Mapping[SeriesKey, float]]


def _samples_of(source: Source) -> Iterable[Sample]:
    if isinstance(source, Metrics):
        return (s for family in source.families for s in family.samples)
    if isinstance(source, str):
        return (s for family in text_string_to_metric_families(source) for s in family.samples)
    if isinstance(source, Mapping):
        return (Sample(name, dict(labels), v) for (name, labels), v in source.items())
    if hasattr(source, "collect"):  # a registry, or any collector (prometheus_client's or ours)
        text = generate_latest(source).decode()  # type: ignore[arg-type]
        return (s for family in text_string_to_metric_families(text) for s in family.samples)
    return (s for family in source for s in family.samples)


def samples(source: Source, name: str, /, **labels: str) -> list[Sample]:
    """The samples named ``name`` whose labels include ``labels``."""
    wanted = {k: str(v) for k, v in labels.items()}
    return [
        s
        for s in _samples_of(source)
        if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items())
    ]


def value(source: Source, name: str, /, **labels: str) -> float | None:
    """The sum of the samples named ``name`` whose labels include ``labels``; None when there
    is none (see the module's docstring)."""
    found = samples(source, name, **labels)
    return sum(s.value for s in found) if found else None


def bucket(source: Source, histogram: str, le: float | str, /, **labels: str) -> float | None:
    """The cumulative count of ``histogram``'s bucket ``le`` (a number or "+Inf"); None when
    that bucket is not exposed."""
    bound = le if isinstance(le, str) else floatToGoString(le)
    return value(source, f"{histogram}_bucket", le=bound, **labels)


@dataclass
class Metrics:
    """One parsed scrape."""

    text: str
    families: list[Metric] = field(init=False)

    def __post_init__(self) -> None:
        self.families = list(text_string_to_metric_families(self.text))

    def samples(self, name: str, /, **labels: str) -> list[Sample]:
        return samples(self, name, **labels)

    def value(self, name: str, /, **labels: str) -> float | None:
        """:func:`value` of this scrape: None for a series it does not hold."""
        return value(self, name, **labels)

    def bucket(self, histogram: str, le: float | str, /, **labels: str) -> float | None:
        return bucket(self, histogram, le, **labels)

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples(name) if label in s.labels}

    def describe(self, name: str) -> str:
        """The samples named ``name``, one per line, for assertion messages."""
        return "\n".join(f"  {s.labels} {s.value:g}" for s in self.samples(name)) or "  (none)"


def scrape(base_url: str, path: str = "/metrics") -> Metrics:
    response = httpx.get(base_url + path, timeout=10.0)
    assert response.status_code == 200, f"scrape returned {response.status_code}"
    return Metrics(response.text)


def wait_for_metrics(
    base_url: str,
    predicate: Callable[[Metrics], bool],
    timeout: float = 10.0,
    *,
    what: str = "",
    show: str = "",
) -> Metrics:
    """Scrape until ``predicate`` holds for a scrape, and return that scrape.

    Middleware records a request after the application returns, i.e. just after the client
    got its response (or after a background task), so a test polls rather than scraping once.
    ``show`` names a sample whose values the failure message lists.
    """
    last: list[Metrics] = []

    def check() -> Metrics | None:
        metrics = scrape(base_url)
        last[:] = [metrics]
        return metrics if predicate(metrics) else None

    def message() -> str:
        seen = last[0].describe(show) if last and show else ""
        return f"{what or predicate}" + (f"; last scrape of {show}:\n{seen}" if show else "")

    return wait_until(check, timeout, interval=0.02, message=message)


# -- in-process registries --------------------------------------------------------------------
def registry_samples(registry: Collector) -> Exact:
    """Every sample ``registry`` would expose, keyed by (sample name, exact label set), parsed
    back from the text format so the assertions see what Prometheus would see."""
    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
