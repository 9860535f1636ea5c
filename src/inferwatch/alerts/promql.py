"""Small PromQL text builders shared by the rule producers."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from prometheus_client.utils import floatToGoString

from inferwatch.alerts.units import decimal_text, format_duration

ERROR_STATUS = 'http_response_status_code=~"5.."'
# OpenTelemetry's error.type: set on every failed request (an exception, also one halfway
# through a streamed 200; a 5xx; a client that left, 499), absent on successes.
ERROR_TYPE_SET = 'error_type!=""'


def number(value: Fraction) -> str:
    return decimal_text(value)


def window(seconds: Fraction) -> str:
    return format_duration(seconds)


def le(bound: Fraction | float) -> str:
    """The ``le`` label value exactly as prometheus_client exposes it (``2.0``, ``0.15``)."""
    text: str = floatToGoString(float(bound))
    return text


def selector(metric: str, matchers: Iterable[str] = ()) -> str:
    parts = [m for m in matchers if m]
    return f"{metric}{{{','.join(parts)}}}" if parts else metric


def by(labels: Iterable[str]) -> str:
    return f"by ({', '.join(labels)})"


def sum_rate(metric: str, labels: Iterable[str], rng: str, matchers: Iterable[str] = ()) -> str:
    return f"sum {by(labels)} (rate({selector(metric, matchers)}[{rng}]))"


def failed_requests(
    metric: str,
    labels: Iterable[str],
    rng: str,
    matchers: Iterable[str] = (),
    function: str = "rate",
) -> str:
    """Failed requests (``rate`` or ``increase`` over ``rng``): a 5xx status or an
    ``error_type``. A series with both is counted once (``or`` keeps one of two series with
    the same labels); the 5xx half covers instrumentations that set no ``error_type``."""
    own = [m for m in matchers if m]
    typed = f"{function}({selector(metric, [*own, ERROR_TYPE_SET])}[{rng}])"
    five_xx = f"{function}({selector(metric, [*own, ERROR_STATUS])}[{rng}])"
    grouping = f"sum {by(labels)}" if labels else "sum"
    return f"{grouping} ({typed} or {five_xx})"


def quantile(
    q: str, metric: str, labels: Iterable[str], rng: str, matchers: Iterable[str] = ()
) -> str:
    by_le = (*labels, "le")
    return f"histogram_quantile({q}, {sum_rate(metric + '_bucket', by_le, rng, matchers)})"


def compare(expr: str, direction: str, threshold: Fraction) -> str:
    return f"{expr} {'>' if direction == 'above' else '<'} {number(threshold)}"
