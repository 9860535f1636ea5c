"""One Markdown runbook per alert, from its definition's page and the current thresholds."""

from __future__ import annotations

from inferwatch.alerts import alerting, promql, runbook_data, signals
from inferwatch.alerts.annotate import dashboard_url, threshold_text
from inferwatch.alerts.render import GENERATED
from inferwatch.alerts.slo import SLIS, burn_threshold
from inferwatch.alerts.thresholds import Levels, StateLevel, Thresholds
from inferwatch.alerts.units import format_percent


def _rows(thresholds: Thresholds, alert: str) -> list[str]:
    rows = []
    for signal in signals.SIGNALS:
        if signal.alert != alert:
            continue
        if signal.kind == "state":
            level = thresholds.signals[signal.key]
            assert isinstance(level, StateLevel)
            rows.append(f"| all | {level.severity} | — | {promql.window(level.for_)} |")
            continue
        for judged in alerting.judged(thresholds, signal):
            scope = (
                "default"
                if judged.override is None
                else ", ".join(f"`{m.promql()}`" for m in judged.override.matchers)
            )
            levels: Levels = judged.levels
            for severity in ("warning", "critical"):
                value = levels.level(severity)
                if value is not None:
                    rows.append(
                        f"| {scope} | {severity} | {signal.direction} "
                        f"{threshold_text(signal.kind, value)} | {promql.window(levels.for_)} |"
                    )
    for sli in SLIS:
        if sli.alert == alert:
            for rate in thresholds.slo.burn_rates:
                rows.append(
                    f"| {promql.window(rate.long)} and {promql.window(rate.short)} windows "
                    f"| {rate.severity} | {sli.name} error ratio above "
                    f"{format_percent(burn_threshold(thresholds, sli, rate))} "
                    f"({promql.number(rate.factor)}x budget) | {promql.window(rate.for_)} |"
                )
    return rows


def _dashboard(alert: str) -> str:
    for signal in signals.SIGNALS:
        if signal.alert == alert:
            return signal.dashboard_uid
    return "inferwatch-overview"


def render(thresholds: Thresholds, alert: str) -> str:
    page = runbook_data.pages()[alert]
    rows = _rows(thresholds, alert)
    lines = [f"<!-- {GENERATED} -->", f"# {alert}", "", page.meaning, ""]
    if rows:
        lines += ["| Applies to | Severity | Fires when | For |", "| --- | --- | --- | --- |"]
        lines += [*rows, ""]
    lines += ["## Likely causes", "", *(f"- {c}" for c in page.causes), ""]
    lines += ["## First checks", "", *(f"1. {c}" for c in page.checks), ""]
    lines += [f"Dashboard: {dashboard_url(thresholds, _dashboard(alert))}", ""]
    return "\n".join(lines)


def pages(thresholds: Thresholds) -> dict[str, str]:
    return {alert: render(thresholds, alert) for alert in alerting.alert_names(thresholds)}
