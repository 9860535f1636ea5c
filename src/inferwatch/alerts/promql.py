"""Small PromQL text builders shared by the rule producers."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from prometheus_client.utils import floatToGoString

from inferwatch.alerts.units import decimal_text, format_duration

ERROR_STATUS = 'http_response_status_code=~"5.."'


def number(value: Fraction) -> str:
    return decimal_text(value)


def window(seconds: Fraction) -> str:
    return format_duration(seconds)


def le(bound: Fraction | float) -> str:
    """The ``le`` label value exactly as prometheus_client exposes it (``2.0``, ``0.15``)."""
    return floatToGoString(float(bound))


def selector(metric: str, matchers: Iterable[str] = ()) -> str:
    parts = [m for m in matchers if m]
    return f"{metric}{{{','.join(parts)}}}" if parts else metric


def by(labels: Iterable[str]) -> str:
    return f"by ({', '.join(labels)})"


def sum_rate(metric: str, labels: Iterable[str], rng: str, matchers: Iterable[str] = ()) -> str:
    return f"sum {by(labels)} (rate({selector(metric, matchers)}[{rng}]))"


def quantile(q: str, metric: str, labels: Iterable[str], rng: str, matchers: Iterable[str] = ()):
    labels = (*labels, "le")
    return f"histogram_quantile({q}, {sum_rate(metric + '_bucket', labels, rng, matchers)})"


def compare(expr: str, direction: str, threshold: Fraction) -> str:
    return f"{expr} {'>' if direction == 'above' else '<'} {number(threshold)}"
