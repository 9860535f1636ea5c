"""Alerting rules for every signal, at each severity, plus overrides, state alerts and Watchdog.

An override gets its own rule restricted by its matchers, and the rules before it (the
defaults and earlier overrides) drop those series with ``unless``: the first matching override
wins and a series is never judged by two thresholds of the same severity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferwatch.alerts import promql, signals
from inferwatch.alerts.annotate import SERVICE_LABEL, VALUE, rule_annotations, threshold_text
from inferwatch.alerts.signals import Signal
from inferwatch.alerts.thresholds import (
    SEVERITIES,
    Levels,
    Override,
    Severity,
    StateLevel,
    Thresholds,
)

Rule = dict[str, Any]
WATCHDOG = "Watchdog"


@dataclass(frozen=True)
class Judged:
    """One set of series with one set of levels: the defaults or one override."""

    levels: Levels
    override: Override | None
    excluded: tuple[Override, ...]  # later-listed series claimed by overrides


def judged(thresholds: Thresholds, signal: Signal) -> list[Judged]:
    """The defaults first, then each override touching the signal, in file order."""
    base = thresholds.signals[signal.key]
    assert isinstance(base, Levels)
    touching = [o for o in thresholds.overrides if signal.key in o.signals]
    result = [Judged(base, None, tuple(touching))]
    for i, override in enumerate(touching):
        result.append(Judged(override.signals[signal.key], override, tuple(touching[:i])))
    return result


def _series(signal: Signal, extra: tuple[str, ...] = ()) -> str:
    return promql.selector(signal.series, (signal.matchers, *extra))


def expression(signal: Signal, judged_set: Judged, threshold: Any) -> str:
    own = tuple(m.promql() for m in judged_set.override.matchers) if judged_set.override else ()
    expr = promql.compare(_series(signal, own), signal.direction, threshold)
    for other in judged_set.excluded:
        expr = f"{expr} unless {_series(signal, tuple(m.promql() for m in other.matchers))}"
    return expr


def _description(signal: Signal, severity: Severity, threshold: Any, scope: str) -> str:
    return (
        f"{signal.what} is {VALUE[signal.kind]}, {signal.direction} the {severity} threshold "
        f"of {threshold_text(signal.kind, threshold)}{scope}."
    )


def _scope(judged_set: Judged) -> str:
    if judged_set.override is None:
        return ""
    matchers = ", ".join(m.promql().replace('"', "") for m in judged_set.override.matchers)
    profile = f"{judged_set.override.profile} profile, " if judged_set.override.profile else ""
    return f" ({profile}override for {matchers})"


def _labels(severity: str, judged_set: Judged) -> dict[str, str]:
    labels = {"severity": severity, "service": SERVICE_LABEL}
    if judged_set.override is not None:
        # Tells the override's rule from the default one (promtool rejects look-alikes).
        labels["thresholds"] = judged_set.override.name
    return labels


def threshold_rules(thresholds: Thresholds, signal: Signal) -> list[Rule]:
    rules = []
    for judged_set in judged(thresholds, signal):
        for severity in SEVERITIES:
            threshold = judged_set.levels.level(severity)  # type: ignore[arg-type]
            if threshold is None:
                continue
            rules.append(
                {
                    "alert": signal.alert,
                    "expr": expression(signal, judged_set, threshold),
                    "for": promql.window(judged_set.levels.for_),
                    "labels": _labels(severity, judged_set),
                    "annotations": rule_annotations(
                        thresholds, signal.alert, signal.dashboard_uid, signal.summary,
                        _description(signal, severity, threshold, _scope(judged_set)),  # type: ignore[arg-type]
                    ),
                }
            )  # fmt: skip
    return rules


def state_expressions(thresholds: Thresholds, signal: Signal) -> list[str]:
    assert signal.state is not None, f"{signal.key} is not a yes/no signal"
    return signal.state.expressions(thresholds.settings.targets)


def state_rules(thresholds: Thresholds, signal: Signal) -> list[Rule]:
    level = thresholds.signals[signal.key]
    assert isinstance(level, StateLevel) and signal.state is not None
    duration = promql.window(level.for_)
    return [
        {
            "alert": signal.alert,
            "expr": expr,
            "for": duration,
            "labels": {"severity": level.severity, "service": SERVICE_LABEL},
            "annotations": rule_annotations(
                thresholds,
                signal.alert,
                signal.dashboard_uid,
                signal.summary,
                signal.state.description.replace("{for}", duration),
            ),
        }
        for expr in state_expressions(thresholds, signal)
    ]


def watchdog_rule(thresholds: Thresholds) -> Rule:
    return {
        "alert": WATCHDOG,
        "expr": "vector(1)",
        "for": "0s",
        "labels": {"severity": "none"},
        "annotations": rule_annotations(
            thresholds,
            WATCHDOG,
            "inferwatch-overview",
            "Alerting pipeline heartbeat (always firing)",
            "Fires all the time so that Alertmanager's heartbeat receiver notices when "
            "Prometheus, its rules or the notification path stop working.",
        ),
    }


def groups(thresholds: Thresholds) -> list[dict[str, Any]]:
    from inferwatch.alerts import slo  # one module per concept; slo uses this module's helpers

    by_dashboard: dict[str, list[Rule]] = {}
    for signal in signals.SIGNALS:
        rules = (
            state_rules(thresholds, signal)
            if signal.kind == "state"
            else threshold_rules(thresholds, signal)
        )
        by_dashboard.setdefault(signal.dashboard, []).extend(rules)
    interval = promql.window(thresholds.settings.evaluation_interval)
    result = [
        {"name": f"inferwatch.{name}.alerts", "interval": interval, "rules": rules}
        for name, rules in by_dashboard.items()
    ]
    result.append(
        {"name": "inferwatch.slo.alerts", "interval": interval, "rules": slo.rules(thresholds)}
    )
    result.append(
        {
            "name": "inferwatch.meta.alerts",
            "interval": interval,
            "rules": [watchdog_rule(thresholds)],
        }
    )
    return result


def alert_names(thresholds: Thresholds) -> list[str]:
    """Every alert name once, in file order."""
    names = [r["alert"] for g in groups(thresholds) for r in g["rules"]]
    return list(dict.fromkeys(names))


def severities(thresholds: Thresholds) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for g in groups(thresholds):
        for r in g["rules"]:
            sev = found.setdefault(r["alert"], [])
            if r["labels"]["severity"] not in sev:
                sev.append(r["labels"]["severity"])
    return found
