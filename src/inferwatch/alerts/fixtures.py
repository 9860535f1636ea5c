"""Input series for promtool tests: raw metrics shaped so the recorded value is known exactly.

A phase holds one target value for some samples. Counters grow at slopes proportional to the
wanted ratio, so every rate window yields the same ratio; histograms put all observations of a
phase in one bucket ``(lo, hi]`` whose bounds sit on the thresholds, so ``histogram_quantile``
interpolates to exactly ``lo + q * (hi - lo)``.

Each signal names its fixture, one of the shapes below, in its own definition
(``alerts/signals.py``): the generated tests read it from there instead of a table of keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from inferwatch.alerts.promql import le
from inferwatch.alerts.units import decimal_text

if TYPE_CHECKING:  # signals.py builds its definitions from this module's shapes
    from inferwatch.alerts.signals import Signal

Region = tuple[Fraction, Fraction]  # the open interval the recorded value must fall in
Phase = tuple[Region, int]  # (region, number of samples)
Value = tuple[Fraction, int]  # (value inside a region, number of samples)
Series = dict[str, str]
Labels = dict[str, str]

PER_STEP = Fraction(1000)  # events per scrape interval in ratio fixtures

# The labels of a recorded series in the fixtures, by the level it is aggregated at.
HTTP_LABELS: Labels = {"job": "inferwatch-api", "http_route": "/v1/generate"}
HOST_LABELS: Labels = {"job": "inferwatch-exporter", "instance": "gpu-node-1:9400"}
SERVICE_LABELS: Labels = {"job": "inferwatch-api", "instance": "api-1:8000"}  # its own process
POOL_LABELS: Labels = {
    "job": "inferwatch-api",
    "db_system_name": "postgresql",
    "db_client_connection_pool_name": "main",
}
CACHE_LABELS: Labels = {"job": "inferwatch-api", "cache": "embeddings"}
MODEL_LABELS: Labels = {"job": "inferwatch-api", "model": "musicgen-small"}
GPU_LABELS: Labels = {
    "job": "inferwatch-exporter",
    "instance": "gpu-node-1:9400",
    "gpu": "0",
    "uuid": "GPU-00000000-0000-0000-0000-000000000000",
}
PEER_LABELS: Labels = {"job": "inferwatch-api", "peer": "tts"}


def selector(metric: str, labels: Labels) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def gauge_values(values: Sequence[tuple[Fraction | None, int]]) -> str:
    """``[(v, n), ...]`` -> promtool notation; None is a gap (``_``)."""
    parts = []
    for value, n in values:
        if value is None:
            parts.append(f"_x{n}")  # n missing samples (``axn`` would be n+1 values)
        else:
            parts.append(f"{decimal_text(value)}+0x{n - 1}")
    return " ".join(parts)


def counter_values(slopes: Sequence[tuple[Fraction, int]]) -> str:
    """A counter starting at 0 and growing ``slope`` per sample during each phase."""
    parts, current, first = [], Fraction(0), True
    for slope, n in slopes:
        start = current if first else current + slope
        parts.append(f"{decimal_text(start)}+{decimal_text(slope)}x{n - 1}")
        current = start + slope * (n - 1)
        first = False
    return " ".join(parts)


def value_in(region: Region, quantile: Fraction | None, direction: str) -> Fraction:
    """The value a fixture records inside ``region``: where ``histogram_quantile`` lands for a
    quantile, else nine tenths of the way from the good end (so it is clearly inside)."""
    lo, hi = region
    if quantile is not None:
        return lo + quantile * (hi - lo)
    return lo + (hi - lo) * (Fraction(9, 10) if direction == "above" else Fraction(1, 10))


@dataclass(frozen=True)
class Target:
    """What a fixture must make its signal record, phase after phase."""

    phases: tuple[Phase, ...]  # the regions (histograms put their buckets on them)
    values: tuple[Value, ...]  # the value inside each region
    step: Fraction  # seconds between samples
    window: Fraction  # seconds of history the recorded value spans (0: an instant gauge)


@dataclass(frozen=True)
class Fixture:
    """Raw input series that make a signal's recorded series hold the target values."""

    labels: Labels  # of the recorded series, hence of the alert

    def series(self, labels: Labels, target: Target) -> list[Series]:
        raise NotImplementedError


def _split(
    name: str,
    labels: Labels,
    values: Sequence[Value],
    share: Callable[[Fraction, Labels], Fraction],
    parts: Sequence[Labels],
) -> list[Series]:
    """Counters ``name{part}`` whose slopes are ``share(value, part) * PER_STEP``."""
    out = []
    for part_labels in parts:
        slopes = [(share(v, part_labels) * PER_STEP, n) for v, n in values]
        out.append(
            {"series": selector(name, {**labels, **part_labels}), "values": counter_values(slopes)}
        )
    return out


@dataclass(frozen=True)
class Histogram(Fixture):
    """Every observation of a phase in the bucket whose bounds are the phase's region."""

    metric: str  # without ``_bucket``
    extra: Labels = field(default_factory=dict)  # labels the recording rule sums away

    def series(self, labels: Labels, target: Target) -> list[Series]:
        phases = target.phases
        bounds = sorted({b for (lo, hi), _ in phases for b in (lo, hi) if b > 0})
        out = []
        for bound in [*bounds, None]:
            slopes = []
            for (_, hi), n in phases:
                inside = bound is None or bound >= hi
                slopes.append((Fraction(10) if inside else Fraction(0), n))
            le_value = "+Inf" if bound is None else le(bound)
            series = selector(f"{self.metric}_bucket", {**labels, **self.extra, "le": le_value})
            out.append({"series": series, "values": counter_values(slopes)})
        return out


@dataclass(frozen=True)
class Ratio(Fixture):
    """One counter split in two: ``good`` grows at the ratio, ``bad`` at its complement."""

    metric: str
    good: Labels  # the part the ratio counts (failed requests, hits, accepted handshakes...)
    bad: Labels
    extra: Labels = field(default_factory=dict)

    def series(self, labels: Labels, target: Target) -> list[Series]:
        good = self.good
        return _split(
            self.metric,
            {**labels, **self.extra},
            target.values,
            lambda v, part: v if part == good else 1 - v,
            [self.good, self.bad],
        )


@dataclass(frozen=True)
class Gauge(Fixture):
    """The raw gauge holds the value itself."""

    metric: str
    extra: Labels = field(default_factory=dict)

    def series(self, labels: Labels, target: Target) -> list[Series]:
        series = selector(self.metric, {**labels, **self.extra})
        return [{"series": series, "values": gauge_values(target.values)}]


@dataclass(frozen=True)
class Events(Fixture):
    """A counter growing so that its increase over the signal's window is the value."""

    metric: str
    extra: Labels = field(default_factory=dict)

    def series(self, labels: Labels, target: Target) -> list[Series]:
        slopes = [(v * target.step / target.window, n) for v, n in target.values]
        series = selector(self.metric, {**labels, **self.extra})
        return [{"series": series, "values": counter_values(slopes)}]


@dataclass(frozen=True)
class Used(Fixture):
    """``used / total`` of a fixed ``size``: the used gauge first, then the total."""

    used: str
    total: str
    size: Fraction
    used_extra: Labels = field(default_factory=dict)

    def series(self, labels: Labels, target: Target) -> list[Series]:
        values = target.values
        return [
            {"series": selector(self.used, {**labels, **self.used_extra}),
             "values": gauge_values([(v * self.size, n) for v, n in values])},
            {"series": selector(self.total, labels),
             "values": gauge_values([(self.size, n) for _, n in values])},
        ]  # fmt: skip


@dataclass(frozen=True)
class Available(Fixture):
    """``1 - available / total`` of a fixed ``size``: the total first, then what is free."""

    available: str
    total: str
    size: Fraction

    def series(self, labels: Labels, target: Target) -> list[Series]:
        values = target.values
        return [
            {"series": selector(self.total, labels),
             "values": gauge_values([(self.size, n) for _, n in values])},
            {"series": selector(self.available, labels),
             "values": gauge_values([((1 - v) * self.size, n) for v, n in values])},
        ]  # fmt: skip


@dataclass(frozen=True)
class Growth(Fixture):
    """A gauge growing at the value per second, beside a ``marker`` series that makes the
    target one the recording rule judges (a service process serving inferwatch's metrics)."""

    metric: str
    marker: str
    marker_extra: Labels = field(default_factory=dict)

    def series(self, labels: Labels, target: Target) -> list[Series]:
        values = target.values
        return [
            {"series": selector(self.metric, labels),
             "values": counter_values([(v * target.step, n) for v, n in values])},
            {"series": selector(self.marker, {**labels, **self.marker_extra}),
             "values": gauge_values([(Fraction(0), n) for _, n in values])},
        ]  # fmt: skip


@dataclass(frozen=True)
class StateCase:
    """A yes/no signal's fixture: one series healthy or failing, others that stay healthy."""

    metric: str
    labels: Labels  # of the alert
    series_labels: Labels  # of the input series
    failing: Fraction | None  # None: the series is absent
    healthy: Fraction = Fraction(1)
    others: tuple[str, ...] = ()  # selectors of series that stay healthy throughout


def labels_for(signal: Signal) -> Labels:
    """The labels a threshold signal's fixture records (a copy: callers add to it)."""
    assert signal.fixture is not None, f"{signal.key} has no threshold fixture"
    return dict(signal.fixture.labels)


def window_of(signal: Signal) -> Fraction:
    """Seconds of history the recorded value spans (0 for instant gauges)."""
    return signal.window


def threshold_series(
    signal: Signal, labels: Labels, phases: Sequence[Phase], step: Fraction
) -> list[Series]:
    """Raw input series making ``signal``'s recorded value fall in each phase's region."""
    assert signal.fixture is not None, f"{signal.key} has no threshold fixture"
    values = tuple((value_in(region, signal.quantile, signal.direction), n) for region, n in phases)
    return signal.fixture.series(labels, Target(tuple(phases), values, step, signal.window))
