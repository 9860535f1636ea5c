"""Derived thresholds for a particular deployment, without editing any file: shorter ``for:``
durations for demonstrations and end-to-end tests, and the scrape jobs that must be up."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction
from typing import TypeVar

from inferwatch.alerts.thresholds import Levels, StateLevel, Thresholds

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


def with_evaluation_interval(thresholds: Thresholds, seconds: Fraction) -> Thresholds:
    """Rule groups evaluated as often as the deployment's Prometheus evaluates rules."""
    settings = dataclasses.replace(thresholds.settings, evaluation_interval=Fraction(seconds))
    return dataclasses.replace(thresholds, settings=settings)
