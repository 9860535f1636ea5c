"""``promtool test rules`` files generated from the thresholds.

For every alert and every set of levels (defaults and each equality-matched override):
silent just short of the warning, warning only between the levels, both severities beyond
critical, nothing before ``for:`` has elapsed, and nothing once the signal recovers. Burn-rate
alerts are checked at each window pair's threshold times 1.01 (fires) and 0.99 (silent).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from inferwatch.alerts import alerting, fixtures, humanize, promql, recording, signals, slo
from inferwatch.alerts.alerting import Judged
from inferwatch.alerts.fixtures import Labels, Region, Target
from inferwatch.alerts.signals import Pressure, Saturation, Signal
from inferwatch.alerts.thresholds import Levels, StateLevel, Thresholds

RULE_FILES = ["../recording_rules.yaml", "../alert_rules.yaml"]
NEAR = Fraction(1, 100)  # "a little" around a burn-rate threshold
Test = dict[str, Any]
Eval = tuple[Fraction, list[dict[str, Any]]]  # (eval time, the alerts expected then)

_FILTERS: dict[str, Callable[[float], str]] = {
    "humanizeDuration": humanize.humanize_duration,
    "humanizePercentage": humanize.humanize_percentage,
    "humanize1024": humanize.humanize_1024,
    'printf "%.1f"': humanize.printf_1f,
    'printf "%.0f"': lambda v: f"{v:.0f}",
}
_TEMPLATE = re.compile(r"\{\{ \$(labels\.(\w+)|value \| ([^}]+?)) \}\}")


def expand(template: str, labels: Labels, value: float) -> str:
    """Render the subset of Go templates the rules use, as Prometheus would."""

    def sub(match: re.Match[str]) -> str:
        if match.group(2):
            return labels.get(match.group(2), "")
        return _FILTERS[match.group(3)](value)

    return _TEMPLATE.sub(sub, template)


def _expected(rule: dict[str, Any], labels: Labels, value: float) -> dict[str, Any]:
    exp_labels = {**labels}
    for key, template in rule["labels"].items():
        rendered = expand(template, labels, value)
        if rendered:
            exp_labels[key] = rendered
    annotations = {k: expand(v, labels, value) for k, v in rule["annotations"].items()}
    return {"exp_labels": exp_labels, "exp_annotations": annotations}


def _rules_for(thresholds: Thresholds, alert: str) -> list[dict[str, Any]]:
    return [r for g in alerting.groups(thresholds) for r in g["rules"] if r["alert"] == alert]


def _dur(seconds: Fraction) -> str:
    return promql.window(seconds)


class _Clock:
    """Times of one test group, in samples of the scrape interval."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.step = thresholds.settings.scrape_interval
        self.eval = thresholds.settings.evaluation_interval

    def samples(self, seconds: Fraction) -> int:
        return int(seconds // self.step) + 1


# --- threshold signals ---------------------------------------------------------------------


def _regions(signal: Signal, levels: Levels) -> dict[str, Region]:
    warning, critical = levels.warning, levels.critical
    first = warning if warning is not None else critical
    strongest = critical if critical is not None else warning
    assert first is not None and strongest is not None
    regions: dict[str, Region] = {}
    if signal.direction == "above":
        regions["silent"] = (first * Fraction(9, 10), first)
        if warning is not None and critical is not None:
            regions["between"] = (warning, critical)
        if strongest == 0:
            top = Fraction(2)
        elif signal.kind == "ratio":
            top = (strongest + 1) / 2
        elif signal.kind == "celsius":
            top = strongest + 10
        else:
            top = strongest * 2
        regions["beyond"] = (strongest, top)
    else:
        regions["silent"] = (first, first + (1 - first) / 10)
        if warning is not None and critical is not None:
            regions["between"] = (critical, warning)
        regions["beyond"] = (strongest / 2, strongest)
    return regions


def _matches(override: Any, labels: Labels) -> bool:
    for m in override.matchers:
        value = labels.get(m.label, "")
        if m.op == "=" and value != m.value:
            return False
        if m.op == "=~" and not re.fullmatch(m.value, value):
            return False
    return True


def _labels_for(signal: Signal, judged: Judged) -> Labels | None:
    """Labels judged by exactly this set of levels, or None when none can be built."""
    labels = fixtures.labels_for(signal)
    if judged.override is not None:
        if any(m.op != "=" for m in judged.override.matchers):
            return None  # a regex names no single value to put in a fixture
        labels.update({m.label: m.value for m in judged.override.matchers})
        if not _matches(judged.override, labels):
            return None
    if any(_matches(other, labels) for other in judged.excluded):
        return None  # an earlier override claims these series
    return labels


def _fired(
    signal: Signal,
    rules: list[dict[str, Any]],
    judged: Judged,
    severities: list[str],
    labels: Labels,
    value: float,
) -> list[dict[str, Any]]:
    own = [
        r
        for r in rules
        if r["labels"]["severity"] in severities
        and r["expr"]
        == alerting.expression(signal, judged, judged.levels.level(r["labels"]["severity"]))
    ]
    return [_expected(r, labels, value) for r in own]


def _value(signal: Signal, region: Region) -> Fraction:
    return fixtures.value_in(region, signal.quantile, signal.direction)


def _threshold_tests(thresholds: Thresholds, signal: Signal) -> list[Test]:
    clock = _Clock(thresholds)
    rules = _rules_for(thresholds, signal.alert)
    tests: list[Test] = []
    for judged in alerting.judged(thresholds, signal):
        levels = judged.levels
        if levels.warning is None and levels.critical is None:
            continue
        labels = _labels_for(signal, judged)
        if labels is None:
            continue
        scope = "defaults" if judged.override is None else judged.override.name
        regions = _regions(signal, levels)
        settle = fixtures.window_of(signal) + 2 * clock.step
        fire_at = settle + levels.for_ + clock.eval
        end = fire_at + fixtures.window_of(signal) + 3 * clock.step
        severities = [s for s in ("warning", "critical") if levels.level(s) is not None]

        def group(
            name: str,
            phases: list[fixtures.Phase],
            evals: list[Eval],
            labels: Labels = labels,
            scope: str = scope,
        ) -> Test:
            return {
                "name": f"{signal.alert} ({scope}): {name}",
                "interval": _dur(clock.step),
                "input_series": fixtures.threshold_series(signal, labels, phases, clock.step),
                "alert_rule_test": [
                    {"eval_time": _dur(t), "alertname": signal.alert, "exp_alerts": exp}
                    for t, exp in evals
                ],
            }

        silent = regions["silent"]
        tests.append(group("silent just short of the first threshold",
                           [(silent, clock.samples(end))], [(fire_at, [])]))  # fmt: skip
        early: list[Eval] = [(levels.for_ - clock.eval, [])] if levels.for_ >= clock.eval else []
        if "between" in regions:
            value = float(_value(signal, regions["between"]))
            tests.append(group(
                "warning only between the levels, not before for",
                [(regions["between"], clock.samples(end))],
                [*early, (fire_at, _fired(signal, rules, judged, ["warning"], labels, value))],
            ))  # fmt: skip
        value = float(_value(signal, regions["beyond"]))
        beyond = _fired(signal, rules, judged, severities, labels, value)
        tests.append(group(
            "every level beyond the strongest, not before for, resolved on recovery",
            [(regions["beyond"], clock.samples(fire_at)), (silent, clock.samples(end - fire_at))],
            [*early, (fire_at, beyond), (end, [])],
        ))  # fmt: skip
    return tests


# --- state signals, Watchdog -------------------------------------------------------------------


def _state_tests(thresholds: Thresholds, signal: Signal) -> list[Test]:
    clock = _Clock(thresholds)
    level = thresholds.signals[signal.key]
    assert isinstance(level, StateLevel)
    rules = _rules_for(thresholds, signal.alert)
    if not rules:
        return []
    fire_at = level.for_ + 2 * clock.eval
    end = fire_at + 3 * clock.step
    n_fire, n_rest = clock.samples(fire_at), clock.samples(end - fire_at)
    early: list[Eval] = [(level.for_ - clock.eval, [])] if level.for_ >= clock.eval else []
    assert signal.state is not None
    case = signal.state.case(thresholds.settings.targets)
    labels, healthy, failing = case.labels, case.healthy, case.failing
    others = [
        {"series": other, "values": fixtures.gauge_values([(healthy, n_fire + n_rest)])}
        for other in case.others
    ]
    selector = fixtures.selector(case.metric, case.series_labels)
    expected = [_expected(rules[0], labels, 1.0)]

    def group(name: str, phases: list[tuple[Fraction | None, int]], evals: list[Eval]) -> Test:
        return {
            "name": f"{signal.alert}: {name}",
            "interval": _dur(clock.step),
            "input_series": [
                {"series": selector, "values": fixtures.gauge_values(phases)},
                *others,
            ],
            "alert_rule_test": [
                {"eval_time": _dur(t), "alertname": signal.alert, "exp_alerts": exp}
                for t, exp in evals
            ],
        }

    return [
        group("silent while healthy", [(healthy, n_fire + n_rest)], [(fire_at, [])]),
        group(
            "fires after for, resolved on recovery",
            [(failing, n_fire), (healthy, n_rest)],
            [*early, (fire_at, expected), (end, [])],
        ),
    ]


def _watchdog_tests(thresholds: Thresholds) -> list[Test]:
    rule = alerting.watchdog_rule(thresholds)
    return [
        {
            "name": "Watchdog always fires",
            "interval": _dur(thresholds.settings.scrape_interval),
            "input_series": [],
            "alert_rule_test": [
                {
                    "eval_time": t,
                    "alertname": alerting.WATCHDOG,
                    "exp_alerts": [_expected(rule, {}, 1.0)],
                }
                for t in ("0s", "1h")
            ],
        }
    ]


# --- SLO burn rates ----------------------------------------------------------------------------


def _burn_tests(thresholds: Thresholds) -> list[Test]:
    clock = _Clock(thresholds)
    labels = {"job": "inferwatch-api"}
    tests: list[Test] = []
    for sli in slo.SLIS:
        rules = {r["expr"]: r for r in _rules_for(thresholds, sli.alert)}
        for rate in thresholds.slo.burn_rates:
            limit = slo.burn_threshold(thresholds, sli, rate)
            above, below = limit * (1 + NEAR), limit * (1 - NEAR)
            rule = rules[slo.expression(thresholds, sli, rate)]
            fire_at = rate.for_ + clock.eval
            n = clock.samples(fire_at + clock.step)
            early: list[Eval] = [(rate.for_ - clock.eval, [])] if rate.for_ >= clock.eval else []
            pair = f"{_dur(rate.long)}/{_dur(rate.short)} at {promql.number(rate.factor)}x"
            fired = [_expected(rule, labels, float(above))]
            cases: list[tuple[str, Fraction, Fraction, list[Eval]]] = [
                ("both windows just above", above, above, [*early, (fire_at, fired)]),
                ("long window just below", below, above, [(fire_at, [])]),
                ("short window just below", above, below, [(fire_at, [])]),
            ]  # fmt: skip
            for name, long_value, short_value, evals in cases:
                values = {rate.long: long_value, rate.short: short_value}
                series = [
                    {
                        "series": f'{sli.ratio}{_dur(w)}{{job="{labels["job"]}"}}',
                        "values": fixtures.gauge_values([(values.get(w, Fraction(0)), n)]),
                    }
                    for w in thresholds.slo.windows
                ]
                tests.append({
                    "name": f"{sli.alert} {pair} ({rate.severity}): {name}",
                    "interval": _dur(clock.step),
                    "input_series": series,
                    "alert_rule_test": [
                        {"eval_time": _dur(t), "alertname": sli.alert, "exp_alerts": exp}
                        for t, exp in evals
                    ],
                })  # fmt: skip
    return tests


def _sli_tests(thresholds: Thresholds) -> list[Test]:
    """The SLI recording rules on raw counters: one request in eight fails and is slow."""
    clock = _Clock(thresholds)
    n = clock.samples(Fraction(600))
    base = 'job="inferwatch-api", http_route="/v1/generate", http_request_method="POST"'
    good_le = promql.le(thresholds.slo.latency_threshold)
    series = []
    for status, failure, total in (("200", "", 70), ("500", "500", 10)):
        fast = total - 10 if status == "200" else total  # 10 slow requests among the 200s
        counts = {"count": total, f'bucket{{le="{good_le}"}}': fast, 'bucket{le="+Inf"}': total}
        for suffix, slope in counts.items():
            name, _, le_part = suffix.partition("{")
            labels = f'{base}, http_response_status_code="{status}"'
            if failure:  # a success has no error_type at all once Prometheus stored it
                labels += f', error_type="{failure}"'
            if le_part:
                labels += f", {le_part[:-1]}"
            series.append({
                "series": f"http_server_request_duration_seconds_{name}{{{labels}}}",
                "values": fixtures.counter_values([(Fraction(slope), n)]),
            })  # fmt: skip
    checks = []
    for w in thresholds.slo.windows:
        for sli in slo.SLIS:
            checks.append({
                "expr": f"round({sli.ratio}{_dur(w)} * 1000)",
                "eval_time": "10m",
                "exp_samples": [{"labels": '{job="inferwatch-api"}', "value": 125}],
            })  # fmt: skip
    return [{
        "name": "SLI ratios over every window: 1 in 8 requests fails, 1 in 8 is slow",
        "interval": _dur(clock.step),
        "input_series": series,
        "promql_expr_test": checks,
    }]  # fmt: skip


# --- cost and recovery: recorded figures from raw series ---------------------------------------

# The cost fixture: one service process keeping half a core busy in 2 GiB, two GPUs on the
# exporter, 12 jobs a minute (720 an hour).
COST_QUANTITIES = {
    "cpu": Fraction(1, 2),
    "memory_gib": Fraction(2),
    "gpu": Fraction(2),
    "instance": Fraction(1),
}
JOBS_PER_SECOND = Fraction(1, 5)
SCALE = 10**9  # recorded values are compared as round(value * SCALE)


def expected_cost(thresholds: Thresholds) -> dict[str, Fraction]:
    """What the cost rules must record for the fixture, per second, by resource."""
    return {r: COST_QUANTITIES[r] * p / 3600 for r, p in thresholds.cost.priced().items()}


def _cost_tests(thresholds: Thresholds) -> list[Test]:
    per_resource = expected_cost(thresholds)
    if not per_resource:
        return []
    clock = _Clock(thresholds)
    n = clock.samples(Fraction(7200))
    step = clock.step
    service = 'job="inferwatch-api", instance="api-1:8000"'
    gpu = 'job="inferwatch-exporter", instance="gpu-node-1:9400"'
    series = [
        {"series": f"process_cpu_seconds_total{{{service}}}",
         "values": fixtures.counter_values([(COST_QUANTITIES["cpu"] * step, n)])},
        {"series": f"process_resident_memory_bytes{{{service}}}",
         "values": fixtures.gauge_values([(COST_QUANTITIES["memory_gib"] * 2**30, n)])},
        {"series": f'http_server_active_requests{{{service}, http_request_method="POST"}}',
         "values": fixtures.gauge_values([(Fraction(0), n)])},
        {"series": f'inferwatch_jobs_total{{{service}, kind="video", outcome="complete"}}',
         "values": fixtures.counter_values([(JOBS_PER_SECOND * step, n)])},
    ]  # fmt: skip
    for index in range(int(COST_QUANTITIES["gpu"])):
        series.append({
            "series": f'inferwatch_gpu_memory_total_bytes{{{gpu}, gpu="{index}"}}',
            "values": fixtures.gauge_values([(Fraction(24 * 2**30), n)]),
        })  # fmt: skip
    total = sum(per_resource.values(), Fraction(0))

    def check(expr: str, value: Fraction, labels: str = '{job="inferwatch-api"}') -> Test:
        return {
            "expr": f"round({expr} * {SCALE})",
            "eval_time": _dur(Fraction(7200)),
            "exp_samples": [{"labels": labels, "value": round(value * SCALE)}],
        }

    checks = [
        check(
            f'job_resource:inferwatch_cost:rate1h{{resource="{resource}"}}',
            value,
            f'{{job="inferwatch-api", resource="{resource}"}}',
        )
        for resource, value in per_resource.items()
    ]
    checks += [
        check("job:inferwatch_cost:rate1h", total),
        check("job:inferwatch_cost_per_job:ratio_rate1h", total / JOBS_PER_SECOND),
        check("job:inferwatch_cost_per_1000_jobs:ratio_rate1h", 1000 * total / JOBS_PER_SECOND),
    ]
    return [{
        "name": "cost per resource, per job and per 1000 jobs from the thresholds' prices",
        "interval": _dur(step),
        "input_series": series,
        "promql_expr_test": checks,
    }]  # fmt: skip


def _recovery_tests(thresholds: Thresholds) -> list[Test]:
    """Recovery from raw counters: 12 calls a minute, 3 of them recovered by a retry and 1
    failed (recovery 75 %); one breaker outage of 90 s every 20 minutes (MTTR 90 s)."""
    clock = _Clock(thresholds)
    step = clock.step
    n = clock.samples(Fraction(7200))
    peer = 'job="inferwatch-api", peer="tts"'
    calls = {"success": 8, "recovered": 3, "failed": 1}
    series = [
        {"series": f'inferwatch_upstream_calls_total{{{peer}, outcome="{outcome}"}}',
         "values": fixtures.counter_values([(Fraction(per_minute) * step / 60, n)])}
        for outcome, per_minute in calls.items()
    ]  # fmt: skip
    recovery = "inferwatch_upstream_circuit_recovery_seconds"
    for suffix, per_20_minutes in (("sum", 90), ("count", 1)):
        series.append({
            "series": f"{recovery}_{suffix}{{{peer}}}",
            "values": fixtures.counter_values([(Fraction(per_20_minutes) * step / 1200, n)]),
        })  # fmt: skip
    labels = f"{{{peer}}}"
    return [{
        "name": "retry recovery ratio and breaker MTTR from raw counters",
        "interval": _dur(step),
        "input_series": series,
        "promql_expr_test": [
            {"expr": "round(job_peer:inferwatch_upstream_retry_recovery:ratio_rate5m * 1000)",
             "eval_time": "1h", "exp_samples": [{"labels": labels, "value": 750}]},
            {"expr": f"round(job_peer:{recovery}:mean1h * 1000)",
             "eval_time": "2h", "exp_samples": [{"labels": labels, "value": 90000}]},
        ],
    }]  # fmt: skip


# --- saturation scores: the bottleneck ranking ---------------------------------------------------


def _pressure_regions(pressure: Pressure, unit: Fraction) -> dict[str, Region]:
    """Where the pressure's value puts its component's score: short of 1, and past it."""
    judge = pressure.judged_by
    if judge.direction == "below":  # a hit ratio: the level is 1 - unit
        level = 1 - unit
        return {"short": (level + unit / 5, Fraction(1)), "past": (level / 2, level * 9 / 10)}
    past = (unit, (1 + unit) / 2) if judge.kind == "ratio" else (unit * 11 / 10, unit * 2)
    return {"short": (unit / 2, unit * 9 / 10), "past": past}


def _pressure_score(pressure: Pressure, value: Fraction, unit: Fraction) -> Fraction:
    shortfall = pressure.judged_by.direction == "below"
    return (1 - value) / unit if shortfall else value / unit


def _saturation_tests(thresholds: Thresholds, saturation: Saturation) -> list[Test]:
    """Each pressure alone: its component scores a little under 1 (not likely), then past it
    (likely), with the score worked out from the judging signal's level."""
    clock = _Clock(thresholds)
    selected = f'{signals.SATURATION}{{component="{saturation.component}"}}'
    tests = []
    for pressure in saturation.pressures:
        unit = recording.pressure_unit(pressure, thresholds)
        if unit is None:
            continue
        fixture, window, quantile = pressure.made_by()
        samples = clock.samples(window + Fraction(600))
        eval_time = _dur(window + Fraction(300))
        for region in _pressure_regions(pressure, unit).values():
            value = fixtures.value_in(region, quantile, pressure.judged_by.direction)
            target = Target(((region, samples),), ((value, samples),), clock.step, window)
            score = _pressure_score(pressure, value, unit)
            likely = score >= 1
            checks = [
                {"expr": f"round({selected} * 1000)", "eval_time": eval_time,
                 "exp_samples": [{"labels": _score_labels(saturation, fixture.labels),
                                  "value": math.floor(score * 1000 + Fraction(1, 2))}]},
                {"expr": f"count({selected} >= 1)", "eval_time": eval_time,
                 "exp_samples": [{"labels": "{}", "value": 1}] if likely else []},
            ]  # fmt: skip
            tests.append(
                {
                    "name": f"{saturation.component} {pressure.name} judged by "
                    f"{pressure.judged_by.key}: {'past' if likely else 'short of'} 1",
                    "interval": _dur(clock.step),
                    "input_series": fixture.series(dict(fixture.labels), target),
                    "promql_expr_test": checks,
                }
            )
    return tests


def _score_labels(saturation: Saturation, labels: Labels) -> str:
    own = {k: v for k, v in labels.items() if k in saturation.labels}
    resource = "/".join(own.get(k, "") for k in saturation.resource)
    everything = {**own, "component": saturation.component, "resource": resource}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in everything.items()) + "}"


def _bottleneck_tests(thresholds: Thresholds) -> list[Test]:
    return [t for s in signals.SATURATIONS for t in _saturation_tests(thresholds, s)]


# --- files --------------------------------------------------------------------------------------


def _document(thresholds: Thresholds, tests: list[Test]) -> dict[str, Any]:
    return {
        "rule_files": RULE_FILES,
        "evaluation_interval": _dur(thresholds.settings.evaluation_interval),
        "tests": tests,
    }


def documents(thresholds: Thresholds) -> dict[str, dict[str, Any]]:
    """File name (under ``alerts/tests/``) -> promtool test document."""
    files: dict[str, dict[str, Any]] = {}
    for signal in signals.SIGNALS:
        if signal.kind == "state":
            tests = _state_tests(thresholds, signal)
        else:
            tests = _threshold_tests(thresholds, signal)
        if tests:
            files[f"{signal.key}.yaml"] = _document(thresholds, tests)
    files["slo_burn_rates.yaml"] = _document(thresholds, _burn_tests(thresholds))
    files["slo_sli_ratios.yaml"] = _document(thresholds, _sli_tests(thresholds))
    files["watchdog.yaml"] = _document(thresholds, _watchdog_tests(thresholds))
    cost = _cost_tests(thresholds)
    if cost:
        files["cost.yaml"] = _document(thresholds, cost)
    files["upstream_recovery.yaml"] = _document(thresholds, _recovery_tests(thresholds))
    bottleneck = _bottleneck_tests(thresholds)
    if bottleneck:
        files["bottleneck.yaml"] = _document(thresholds, bottleneck)
    return files
