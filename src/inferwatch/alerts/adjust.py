"""Derived thresholds and rules for a particular deployment, without editing any file: shorter
``for:`` durations and range windows for demonstrations and end-to-end tests, and the scrape
jobs that must be up."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, TypeVar

from inferwatch.alerts.thresholds import Levels, StateLevel, Thresholds
from inferwatch.alerts.units import DURATION, format_duration, parse_duration
from inferwatch.config import check_http_url

T = TypeVar("T", Levels, StateLevel)


def _scaled(for_: Fraction, factor: Fraction) -> Fraction:
    # Prometheus durations are whole milliseconds at best; whole seconds read better, and a
    # non-zero `for:` must stay non-zero or "silent before for: elapses" would be lost.
    if for_ == 0:
        return for_
    return Fraction(max(1, round(for_ * factor)))


def _level(level: T, factor: Fraction) -> T:
    return dataclasses.replace(level, for_=_scaled(level.for_, factor))


def scale_for(thresholds: Thresholds, factor: float | Fraction) -> Thresholds:
    """Every alert's ``for:`` multiplied by ``factor`` (burn-rate windows are left alone:
    they define the SLO, not how long to wait)."""
    f = Fraction(factor).limit_denominator(1000)
    if f <= 0:
        raise ValueError(f"the for: scale must be positive, got {factor}")
    if f == 1:
        return thresholds
    slo = dataclasses.replace(
        thresholds.slo,
        burn_rates=tuple(
            dataclasses.replace(b, for_=_scaled(b.for_, f)) for b in thresholds.slo.burn_rates
        ),
    )
    overrides = tuple(
        dataclasses.replace(o, signals={k: _level(v, f) for k, v in o.signals.items()})
        for o in thresholds.overrides
    )
    return dataclasses.replace(
        thresholds,
        slo=slo,
        signals={name: _level(level, f) for name, level in thresholds.signals.items()},
        overrides=overrides,
    )


def with_targets(thresholds: Thresholds, targets: Sequence[str]) -> Thresholds:
    """The scrape jobs whose absence or failure pages someone."""
    settings = dataclasses.replace(thresholds.settings, targets=tuple(targets))
    return dataclasses.replace(thresholds, settings=settings)


def with_grafana(thresholds: Thresholds, base_url: str) -> Thresholds:
    """Every ``dashboard_url`` at the Grafana this deployment really runs, or none when
    ``base_url`` is "" (a deployment without Grafana gets no dead link)."""
    if base_url:
        check_http_url(base_url, "the Grafana URL")
    settings = dataclasses.replace(thresholds.settings, grafana_base_url=base_url.rstrip("/"))
    return dataclasses.replace(thresholds, settings=settings)


def with_evaluation_interval(thresholds: Thresholds, seconds: Fraction) -> Thresholds:
    """Rule groups evaluated as often as the deployment's Prometheus evaluates rules."""
    settings = dataclasses.replace(thresholds.settings, evaluation_interval=Fraction(seconds))
    return dataclasses.replace(thresholds, settings=settings)


# A range selector's duration (``[5m]``, ``[1h30m]``, the range of a subquery ``[30m:1m]``),
# in the project's one duration grammar, or a string literal, which is skipped so a label
# value that looks like ``[5m]`` is left alone.
_RANGE_OR_STRING = re.compile(
    rf"\[(?P<range>{DURATION})(?P<step>:(?:{DURATION})?)?\]"
    r"|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`"
)


def scaled_window(seconds: Fraction, factor: Fraction, minimum: Fraction) -> Fraction:
    """``seconds * factor`` rounded to whole seconds, but never below ``minimum`` (a rate needs
    two samples in its window) or 1 s, unless the window was shorter than that already."""
    return max(Fraction(round(seconds * factor)), min(seconds, max(minimum, Fraction(1))))


def scale_windows(expr: str, factor: float | Fraction, minimum: Fraction | float = 0) -> str:
    """``expr`` with every range selector's duration multiplied by ``factor``.

    ``rate(x[5m])`` becomes ``rate(x[30s])`` at 0.1; a subquery's step is kept. Only ranges
    change: series names such as ``job:errors:ratio_rate5m`` keep their production window, so
    dashboards and alerts read the same names in every deployment.
    """
    f = Fraction(factor).limit_denominator(1000)
    if f <= 0:
        raise ValueError(f"the window scale must be positive, got {factor}")
    if f == 1:
        return expr
    floor = Fraction(minimum)

    def replace(match: re.Match[str]) -> str:
        if match.group("range") is None:
            return match.group(0)
        window = scaled_window(parse_duration(match.group("range")), f, floor)
        return f"[{format_duration(window)}{match.group('step') or ''}]"

    return _RANGE_OR_STRING.sub(replace, expr)


def scale_rule_windows(
    groups: Sequence[Mapping[str, Any]], factor: float | Fraction, minimum: Fraction | float = 0
) -> list[dict[str, Any]]:
    """Copies of rule ``groups`` (as in a rule file) with :func:`scale_windows` applied to
    every rule's ``expr``; names, labels and ``for:`` are untouched (see :func:`scale_for`)."""
    return [
        {
            **group,
            "rules": [
                {**rule, "expr": scale_windows(rule["expr"], factor, minimum)}
                for rule in group["rules"]
            ],
        }
        for group in groups
    ]
