"""The thresholds file: schema, loading (defaults + overlay) and the validated model.

The schema is checked by hand rather than with a JSON-Schema library so that every error
names the file, line and dotted key (``signals.api_error_rate.warning``) and says what was
expected, and so that cross-field rules (warning milder than critical) read like the others.
Every mistake of a file is reported in one run (see "collecting every error" below).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from inferwatch.alerts import units
from inferwatch.alerts.signals import BY_KEY, Signal
from inferwatch.alerts.source import Node, ThresholdsError, load, merge, parse, plain
from inferwatch.config import check_http_url
from inferwatch.metrics.buckets import DURATION_SECONDS

DEFAULTS = "thresholds.yaml"
SEVERITIES = ("warning", "critical")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_JOB = re.compile(r"[^\"\\]+")
_BUCKETS = [units.format_duration(Fraction(str(b))) for b in DURATION_SECONDS]

Severity = Literal["warning", "critical"]

_PARSERS: dict[str, Callable[[str], Fraction]] = {
    "duration": units.parse_duration,
    "ratio": units.parse_percent,
    "celsius": units.parse_celsius,
    "byte_rate": units.parse_byte_rate,
    "count": units.parse_count,
}


@dataclass(frozen=True)
class Levels:
    """One signal's thresholds for one set of series; ``None`` means no alert at that level."""

    warning: Fraction | None
    critical: Fraction | None
    for_: Fraction  # seconds

    def level(self, severity: Severity) -> Fraction | None:
        return self.warning if severity == "warning" else self.critical


@dataclass(frozen=True)
class StateLevel:
    """A yes/no signal (target down, collector failing): one severity, one ``for:``."""

    severity: Severity
    for_: Fraction


@dataclass(frozen=True)
class Matcher:
    label: str
    op: Literal["=", "=~"]
    value: str

    def promql(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Override:
    matchers: tuple[Matcher, ...]
    signals: Mapping[str, Levels]  # fully resolved, per signal it changes
    profile: str | None
    name: str  # `override-N`, N counting from 1 in file order: stable, path-free


@dataclass(frozen=True)
class BurnRate:
    long: Fraction
    short: Fraction
    factor: Fraction
    severity: Severity
    for_: Fraction


@dataclass(frozen=True)
class Slo:
    window: Fraction
    availability: Fraction  # objective, e.g. 199/200
    latency: Fraction
    latency_threshold: Fraction  # seconds; a bucket bound
    burn_rates: tuple[BurnRate, ...]

    @property
    def windows(self) -> tuple[Fraction, ...]:
        """Every window a burn-rate alert reads, shortest first."""
        return tuple(sorted({w for b in self.burn_rates for w in (b.long, b.short)}))


@dataclass(frozen=True)
class Settings:
    docs_base_url: str
    grafana_base_url: str
    targets: tuple[str, ...]
    evaluation_interval: Fraction
    scrape_interval: Fraction


# What one hour of each resource costs (see the thresholds file's `cost` section).
RESOURCES = ("cpu", "memory_gib", "gpu", "instance")


@dataclass(frozen=True)
class Cost:
    currency: str = "USD"
    # resource -> price of one hour of it, exact; a resource priced 0 is left out.
    prices: Mapping[str, Fraction] = field(default_factory=dict)

    def priced(self) -> dict[str, Fraction]:
        """The resources with a price above 0, in :data:`RESOURCES` order."""
        return {r: self.prices[r] for r in RESOURCES if self.prices.get(r, 0) > 0}


@dataclass(frozen=True)
class Thresholds:
    settings: Settings
    slo: Slo
    signals: Mapping[str, Levels | StateLevel]
    profiles: Mapping[str, Mapping[str, Node]]
    overrides: tuple[Override, ...]
    production_readiness: Mapping[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)


# --- collecting every error ------------------------------------------------------------------
#
# A file is checked whole: each value that fails is recorded and the check goes on with the
# next one, so that one run names every mistake. What depends on a failed value (a warning
# compared with a critical that did not parse, an override of a signal that failed) is not
# checked, so that no error is reported that fixing another would not leave.

_found: ContextVar[list[ThresholdsError] | None] = ContextVar("thresholds_errors", default=None)
T = TypeVar("T")


class _Failed:
    """The result of a check whose errors are recorded."""

    def __repr__(self) -> str:
        return "FAILED"


FAILED = _Failed()


class _Abandoned(Exception):  # a signal, not an error: nothing is reported
    """Raised once a value's errors are recorded: that value is given up, not the file."""


def _report(error: ThresholdsError) -> None:
    """Record ``error`` and go on; outside :func:`build` nothing collects, so raise it."""
    found = _found.get()
    if found is None:
        raise error
    found.append(error)


def _attempt(check: Callable[..., T], *args: Any) -> T | _Failed:
    """``check(*args)``, or :data:`FAILED` with the error recorded."""
    try:
        return check(*args)
    except ThresholdsError as exc:
        _report(exc)
    except _Abandoned:
        pass
    return FAILED


def _failed(*values: object) -> bool:
    return any(isinstance(v, _Failed) for v in values)


# --- node helpers ---------------------------------------------------------------------------


def _mapping(node: Node, key: str, allowed: tuple[str, ...] | None = None) -> dict[str, Node]:
    """``node``'s entries; each unknown key is reported and left out, so that the known
    ones are still checked."""
    if node.tag != "map":
        raise ThresholdsError(node, key, "expected a mapping")
    items: dict[str, Node] = node.value
    if allowed is None:
        return items
    for name, child in items.items():
        if name not in allowed:
            _report(ThresholdsError(
                child, f"{key}.{name}" if key else name,
                f"unknown key; expected one of: {', '.join(allowed)}",
            ))  # fmt: skip
    return {name: child for name, child in items.items() if name in allowed}


def _required(items: dict[str, Node], parent: Node, key: str, name: str) -> Node:
    if name not in items:
        raise ThresholdsError(parent, f"{key}.{name}", "missing required key")
    return items[name]


def _text(node: Node, key: str) -> str:
    if node.tag in ("map", "seq") or node.value is None:
        raise ThresholdsError(node, key, "expected a single value")
    return str(node.value)


_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# The unit a bare number most likely lacks, per kind of quantity.
_UNIT_OF: dict[Callable[[str], Fraction], str] = {
    units.parse_duration: "s",
    units.parse_percent: "%",
    units.parse_celsius: "C",
    units.parse_byte_rate: "B/s",
}
_UNITLESS = (units.parse_count, units.parse_factor)


def _unit_hint(text: str, parse_value: Callable[[str], Fraction]) -> str:
    """What to write instead of the bare number ``text``: ``did you mean `70%`?``."""
    unit = _UNIT_OF.get(parse_value)
    if unit is None or not _BARE_NUMBER.fullmatch(text):
        return "write it with its unit, e.g. " + {"%": "5%", "C": "85C", "B/s": "1MB/s"}.get(
            unit or "", "500ms"
        )
    if unit != "%":
        return f"did you mean `{text}{unit}`?"
    value = Fraction(text)
    if value > 100:
        return "write a percentage like 5% or 99.5%"
    if value < 1 and "." in text:  # 0.7 may be a ratio: say both readings
        return f"did you mean `{text}%`, or `{units.format_percent(value)}` for a ratio of {text}?"
    return f"did you mean `{text}%`?"


def _quantity(node: Node, key: str, parse_value: Callable[[str], Fraction]) -> Fraction:
    text = _text(node, key).strip()
    if parse_value not in _UNITLESS and (
        node.tag in ("int", "float") or _BARE_NUMBER.fullmatch(text)
    ):
        raise ThresholdsError(node, key, f"{text} has no unit; {_unit_hint(text, parse_value)}")
    try:
        return parse_value(text)
    except units.UnitError as exc:
        raise ThresholdsError(node, key, str(exc)) from None


def _duration(node: Node, key: str, *, positive: bool = False) -> Fraction:
    value = _quantity(node, key, units.parse_duration)
    if (value * 1000).denominator != 1:
        raise ThresholdsError(node, key, "durations are whole milliseconds")
    if positive and value <= 0:
        raise ThresholdsError(node, key, "must be longer than 0s")
    return value


def _severity(node: Node, key: str) -> Severity:
    value = _text(node, key)
    if value not in SEVERITIES:
        raise ThresholdsError(node, key, f"expected warning or critical, got {value!r}")
    return value  # type: ignore[return-value]


def _required_duration(
    items: dict[str, Node], parent: Node, key: str, name: str, *, positive: bool = False
) -> Fraction:
    return _duration(_required(items, parent, key, name), f"{key}.{name}", positive=positive)


# --- sections --------------------------------------------------------------------------------


def _base_url(items: dict[str, Node], node: Node, name: str) -> str:
    value = _text(_required(items, node, "settings", name), f"settings.{name}")
    try:
        check_http_url(value)
    except ValueError as exc:
        raise ThresholdsError(items[name], f"settings.{name}", str(exc)) from None
    return value.rstrip("/")


def _target(t_node: Node) -> str:
    target = _text(t_node, "settings.targets")
    if not _JOB.fullmatch(target):
        raise ThresholdsError(t_node, "settings.targets", f"invalid job name {target!r}")
    return target


def _targets(items: dict[str, Node], node: Node) -> tuple[str, ...]:
    targets_node = _required(items, node, "settings", "targets")
    if targets_node.tag != "seq":
        raise ThresholdsError(targets_node, "settings.targets", "expected a list of job names")
    targets = [_attempt(_target, t) for t in targets_node.value]
    if _failed(*targets):
        raise _Abandoned
    return tuple(targets)  # type: ignore[arg-type]


def _settings(node: Node) -> Settings:
    names = ("docs_base_url", "grafana_base_url", "targets", "evaluation_interval")
    items = _mapping(node, "settings", (*names, "scrape_interval"))
    docs, grafana = (_attempt(_base_url, items, node, name) for name in names[:2])
    targets = _attempt(_targets, items, node)
    evaluation, scrape = (
        _attempt(lambda n=name: _required_duration(items, node, "settings", n, positive=True))
        for name in ("evaluation_interval", "scrape_interval")
    )
    if _failed(docs, grafana, targets, evaluation, scrape):
        raise _Abandoned
    return Settings(
        docs_base_url=docs, grafana_base_url=grafana, targets=targets,  # type: ignore[arg-type]
        evaluation_interval=evaluation, scrape_interval=scrape,  # type: ignore[arg-type]
    )  # fmt: skip


def _objective(items: dict[str, Node], parent: Node, key: str) -> Fraction:
    node = _required(items, parent, key, "objective")
    value = _quantity(node, f"{key}.objective", units.parse_percent)
    if not 0 < value < 1:
        raise ThresholdsError(node, f"{key}.objective", "must be above 0% and below 100%")
    return value


def _latency_threshold(items: dict[str, Node], parent: Node) -> Fraction:
    t_node = _required(items, parent, "slo.latency", "threshold")
    threshold = _duration(t_node, "slo.latency.threshold", positive=True)
    if float(threshold) not in DURATION_SECONDS:
        raise ThresholdsError(
            t_node, "slo.latency.threshold",
            "must be a bucket bound of http_server_request_duration_seconds "
            f"(one of {', '.join(_BUCKETS)})",
        )  # fmt: skip
    return threshold


def _burn_rate(i: int, entry: Node, window: Fraction | _Failed) -> BurnRate:
    key = f"slo.burn_rates[{i}]"
    fields = ("long", "short", "factor", "severity", "for")
    b = _mapping(entry, key, fields)
    for name in fields:
        if name not in b:
            _report(ThresholdsError(entry, f"{key}.{name}", "missing required key"))
    parsers: dict[str, Callable[[Node, str], Any]] = {
        "long": lambda n, k: _duration(n, k, positive=True),
        "short": lambda n, k: _duration(n, k, positive=True),
        "factor": lambda n, k: _quantity(n, k, units.parse_factor),
        "severity": _severity,
        "for": _duration,
    }
    values: dict[str, Any] = {n: _attempt(parsers[n], b[n], f"{key}.{n}") for n in b}
    if len(values) < len(fields) or _failed(*values.values()):
        raise _Abandoned
    rate = BurnRate(
        values["long"], values["short"], values["factor"], values["severity"], values["for"]
    )
    ok = True
    if rate.short >= rate.long:
        _report(ThresholdsError(b["short"], f"{key}.short", "must be shorter than long"))
        ok = False
    if not isinstance(window, _Failed) and rate.long > window:
        _report(ThresholdsError(b["long"], f"{key}.long", "must not exceed slo.window"))
        ok = False
    if not ok:
        raise _Abandoned
    return rate


def _burn_rates(items: dict[str, Node], node: Node, window: Fraction | _Failed) -> tuple:
    rates_node = _required(items, node, "slo", "burn_rates")
    if rates_node.tag != "seq" or not rates_node.value:
        raise ThresholdsError(rates_node, "slo.burn_rates", "expected a non-empty list")
    rates = [_attempt(_burn_rate, i, entry, window) for i, entry in enumerate(rates_node.value)]
    if _failed(*rates):
        raise _Abandoned
    return tuple(rates)


def _slo(node: Node) -> Slo:
    items = _mapping(node, "slo", ("window", "availability", "latency", "burn_rates"))
    window = _attempt(lambda: _required_duration(items, node, "slo", "window", positive=True))

    def availability() -> Fraction:
        a_node = _required(items, node, "slo", "availability")
        return _objective(
            _mapping(a_node, "slo.availability", ("objective",)), a_node, "slo.availability"
        )

    def latency() -> tuple[Fraction, Fraction]:
        l_node = _required(items, node, "slo", "latency")
        l_items = _mapping(l_node, "slo.latency", ("objective", "threshold"))
        objective = _attempt(_objective, l_items, l_node, "slo.latency")
        threshold = _attempt(_latency_threshold, l_items, l_node)
        if isinstance(objective, _Failed) or isinstance(threshold, _Failed):
            raise _Abandoned
        return objective, threshold

    available = _attempt(availability)
    latency_parts = _attempt(latency)
    rates = _attempt(_burn_rates, items, node, window)
    if _failed(window, available, latency_parts, rates):
        raise _Abandoned
    objective, threshold = latency_parts  # type: ignore[misc]  # not FAILED, checked above
    return Slo(window, available, objective, threshold, rates)  # type: ignore[arg-type]


def _check_order(signal: Signal, levels: Levels, node: Node, key: str) -> None:
    if levels.warning is None or levels.critical is None:
        return
    above = signal.direction == "above"
    milder = levels.warning < levels.critical if above else levels.warning > levels.critical
    if not milder:
        side = "below" if above else "above"
        raise ThresholdsError(
            node, key,
            f"warning ({_show(signal, levels.warning)}) must be strictly milder than critical "
            f"({_show(signal, levels.critical)}): {signal.key} alerts {signal.direction} "
            f"its thresholds, so warning must lie {side} critical",
        )  # fmt: skip


def _show(signal: Signal, value: Fraction) -> str:
    if signal.kind == "ratio":
        return units.format_percent(value)
    if signal.kind == "duration":
        return units.format_duration(value)
    return units.decimal_text(value)


def _level(signal: Signal, child: Node, key: str) -> Fraction | None:
    if child.value is None:
        return None
    value = _quantity(child, key, _PARSERS[signal.kind])
    if signal.kind == "ratio" and value in (0, 1):
        bound = "0%" if value == 0 else "100%"
        raise ThresholdsError(child, key, f"a ratio alert at {bound} is moot")
    return value


def _levels(signal: Signal, node: Node, key: str, base: Levels | None) -> Levels:
    """Parse ``{warning, critical, for}``; missing keys come from ``base``."""
    items = _mapping(node, key, ("warning", "critical", "for"))
    values: dict[str, Fraction | _Failed | None] = {
        name: (base.level(name) if base else None)
        for name in SEVERITIES  # type: ignore[arg-type]
    }
    for name in SEVERITIES:
        if name in items:
            values[name] = _attempt(_level, signal, items[name], f"{key}.{name}")
    for_: Fraction | _Failed
    if "for" in items:
        for_ = _attempt(_duration, items["for"], f"{key}.for")
    elif base is not None:
        for_ = base.for_
    else:
        _report(ThresholdsError(node, f"{key}.for", "missing required key"))
        for_ = FAILED
    if _failed(for_, *values.values()):
        raise _Abandoned
    levels = Levels(values["warning"], values["critical"], for_)  # type: ignore[arg-type]
    # Blame the value the user wrote in this entry: the warning, else the critical.
    blamed = next((n for n in SEVERITIES if n in items), None)
    _check_order(
        signal, levels, items[blamed] if blamed else node, f"{key}.{blamed}" if blamed else key
    )
    return levels


def _state(signal: Signal, node: Node, key: str) -> StateLevel:
    items = _mapping(node, key, ("severity", "for"))
    severity = _attempt(
        lambda: _severity(_required(items, node, key, "severity"), f"{key}.severity")
    )
    for_ = _attempt(lambda: _duration(_required(items, node, key, "for"), f"{key}.for"))
    if _failed(severity, for_):
        raise _Abandoned
    return StateLevel(severity=severity, for_=for_)  # type: ignore[arg-type]


def _signal(signal_key: str, items: dict[str, Node], node: Node) -> Levels | StateLevel:
    signal, key = BY_KEY[signal_key], f"signals.{signal_key}"
    child = _required(items, node, "signals", signal_key)
    if signal.kind == "state":
        return _state(signal, child, key)
    return _levels(signal, child, key, None)


def _signals(node: Node) -> dict[str, Levels | StateLevel]:
    """The signals that passed their checks; a failed one is left out (and recorded)."""
    items = _mapping(node, "signals", tuple(BY_KEY))
    parsed = {key: _attempt(_signal, key, items, node) for key in BY_KEY}
    return {key: value for key, value in parsed.items() if not isinstance(value, _Failed)}


def _threshold_signal(name: str, node: Node, key: str) -> Signal:
    signal = BY_KEY.get(name)
    if signal is None or signal.kind == "state":
        choices = ", ".join(k for k, s in BY_KEY.items() if s.kind != "state")
        raise ThresholdsError(node, key, f"unknown threshold signal; expected one of: {choices}")
    return signal


def _profile_entry(
    name: str, signal_key: str, entry: Node, signals: Mapping[str, Levels | StateLevel]
) -> Levels:
    key = f"profiles.{name}.{signal_key}"
    signal = _threshold_signal(signal_key, entry, key)
    base = signals.get(signal_key)
    if not isinstance(base, Levels):  # the signal failed its own checks
        raise _Abandoned
    return _levels(signal, entry, key, Levels(None, None, base.for_))


@dataclass(frozen=True)
class _Profiles:
    valid: dict[str, dict[str, Node]]
    broken: frozenset[str]  # defined, but with an error: an override using one is not checked


def _profiles(node: Node, signals: Mapping[str, Levels | StateLevel]) -> _Profiles:
    valid: dict[str, dict[str, Node]] = {}
    broken: set[str] = set()
    for name, profile in _mapping(node, "profiles").items():
        entries = _attempt(_mapping, profile, f"profiles.{name}")
        if isinstance(entries, _Failed):
            broken.add(name)
            continue
        checked = [_attempt(_profile_entry, name, k, e, signals) for k, e in entries.items()]
        if _failed(*checked):
            broken.add(name)
        else:
            valid[name] = entries
    return _Profiles(valid, frozenset(broken))


def _matcher(label: str, value: Node, label_key: str, op: str) -> Matcher:
    text = _text(value, label_key)
    name = "job" if label == "service" else label
    if not _LABEL.fullmatch(name):
        raise ThresholdsError(value, label_key, "invalid label name")
    if op == "=~":
        try:
            re.compile(text)
        except re.error as exc:
            raise ThresholdsError(value, label_key, f"invalid regex: {exc}") from None
    return Matcher(name, op, text)  # type: ignore[arg-type]


def _matchers(items: dict[str, Node], node: Node, key: str) -> tuple[Matcher, ...]:
    matchers: list[Matcher | _Failed] = []
    for field_name, op in (("match", "="), ("match_re", "=~")):
        if field_name not in items:
            continue
        labels = _attempt(_mapping, items[field_name], f"{key}.{field_name}")
        if isinstance(labels, _Failed):
            matchers.append(labels)
            continue
        for label, value in labels.items():
            label_key = f"{key}.{field_name}.{label}"
            matchers.append(_attempt(_matcher, label, value, label_key, op))
    if _failed(*matchers):
        raise _Abandoned
    if not matchers:
        raise ThresholdsError(node, key, "needs `match` or `match_re` with at least one label")
    checked = [m for m in matchers if isinstance(m, Matcher)]
    return tuple(sorted(checked, key=lambda m: (m.label, m.op, m.value)))


def _profile_name(items: dict[str, Node], key: str, profiles: _Profiles | _Failed) -> str:
    profile = _text(items["profile"], f"{key}.profile")
    if isinstance(profiles, _Failed) or profile in profiles.broken:
        raise _Abandoned  # its errors are already recorded
    if profile not in profiles.valid:
        defined = ", ".join(sorted([*profiles.valid, *profiles.broken])) or "none"
        raise ThresholdsError(
            items["profile"], f"{key}.profile", f"unknown profile {profile!r}; defined: {defined}"
        )
    return profile


def _override_signal(
    signal_key: str, entry: Node, s_key: str, base: Levels | StateLevel | None
) -> Levels:
    signal = _threshold_signal(signal_key, entry, s_key)
    if not isinstance(base, Levels):  # the signal failed its own checks
        raise _Abandoned
    return _levels(signal, entry, s_key, base)


def _override(
    index: int,
    node: Node,
    signals: Mapping[str, Levels | StateLevel],
    profiles: _Profiles | _Failed,
) -> Override:
    key = f"overrides[{index}]"
    items = _mapping(node, key, ("match", "match_re", "profile", "signals"))
    matchers = _attempt(_matchers, items, node, key)
    entries: dict[str, tuple[Node, str]] = {}  # signal -> (entry, key) applied in order
    resolved: dict[str, Levels] = {}
    profile = None
    parts: list[object] = [matchers]
    if "profile" in items:
        profile = _attempt(_profile_name, items, key, profiles)
        parts.append(profile)
        if isinstance(profile, str):
            assert not isinstance(profiles, _Failed)
            for signal_key, entry in profiles.valid[profile].items():
                base = signals[signal_key]
                assert isinstance(base, Levels)
                p_key = f"profiles.{profile}.{signal_key}"
                resolved[signal_key] = _levels(
                    BY_KEY[signal_key], entry, p_key, Levels(None, None, base.for_)
                )
                entries[signal_key] = (entry, p_key)
    # On a failed profile the signals' levels would be checked against the wrong base.
    if "signals" in items and not _failed(*parts[1:]):
        own = _attempt(_mapping, items["signals"], f"{key}.signals")
        parts.append(own)
        for signal_key, entry in {} if isinstance(own, _Failed) else own.items():
            s_key = f"{key}.signals.{signal_key}"
            under = resolved.get(signal_key) or signals.get(signal_key)
            levels = _attempt(_override_signal, signal_key, entry, s_key, under)
            parts.append(levels)
            if isinstance(levels, Levels):
                resolved[signal_key] = levels
                entries[signal_key] = (entry, s_key)
    if not resolved and not _failed(*parts[1:]):
        _report(ThresholdsError(node, key, "needs `profile` or `signals`"))
        parts.append(FAILED)
    if not isinstance(matchers, _Failed):
        for signal_key, (entry, s_key) in entries.items():
            labels = BY_KEY[signal_key].labels
            for m in matchers:
                if m.label not in labels:
                    _report(ThresholdsError(
                        entry, s_key,
                        f"cannot match on {m.label!r}: {signal_key} series carry only "
                        f"{', '.join(labels)}",
                    ))  # fmt: skip
                    parts.append(FAILED)
    if _failed(*parts):
        raise _Abandoned
    return Override(matchers, resolved, profile, f"override-{index + 1}")  # type: ignore[arg-type]


_PRICE = re.compile(r"\d+(?:\.\d+)?")
_CURRENCY = re.compile(r"[A-Za-z$€£¥]{1,8}")


def _currency(node: Node) -> str:
    currency = _text(node, "cost.currency")
    if not _CURRENCY.fullmatch(currency):
        raise ThresholdsError(node, "cost.currency", "expected a code like USD")
    return currency


def _price(node: Node, key: str) -> Fraction:
    text = _text(node, f"cost.{key}")
    if not _PRICE.fullmatch(text):
        raise ThresholdsError(
            node, f"cost.{key}", f"expected a price like 0.04 or 2.5, got {text!r}"
        )
    return Fraction(text)


def _cost(node: Node) -> Cost:
    fields = ("currency", *(f"{r}_hour" for r in RESOURCES))
    items = _mapping(node, "cost", fields)
    currency = _attempt(_currency, items["currency"]) if "currency" in items else "USD"
    prices = {
        resource: _attempt(_price, items[f"{resource}_hour"], f"{resource}_hour")
        for resource in RESOURCES
        if f"{resource}_hour" in items
    }
    if _failed(currency, *prices.values()):
        raise _Abandoned
    return Cost(currency, prices)  # type: ignore[arg-type]


def _version(items: dict[str, Node], root: Node) -> str:
    version = _text(_required(items, root, "(top)", "version"), "version")
    if version != "1":
        raise ThresholdsError(items["version"], "version", f"unsupported version {version!r}")
    return version


def _readiness(node: Node) -> dict[str, Any]:
    readiness = plain(node)
    if not isinstance(readiness, dict):
        raise ThresholdsError(node, "production_readiness", "expected a mapping")
    return readiness


def _overrides(
    node: Node, signals: Mapping[str, Levels | StateLevel], profiles: _Profiles | _Failed
) -> tuple[Override, ...]:
    if node.tag != "seq":
        raise ThresholdsError(node, "overrides", "expected a list")
    overrides = [_attempt(_override, i, n, signals, profiles) for i, n in enumerate(node.value)]
    if _failed(*overrides):
        raise _Abandoned
    return tuple(overrides)  # type: ignore[arg-type]


def _build(root: Node) -> Thresholds:
    top = ("version", "settings", "slo", "signals", "profiles", "overrides")
    items = _mapping(root, "", (*top, "production_readiness", "cost"))

    def section(name: str, check: Callable[[Node], T]) -> T | _Failed:
        return _attempt(lambda: check(_required(items, root, "(top)", name)))

    version = _attempt(_version, items, root)
    signals = section("signals", _signals)
    known = {} if isinstance(signals, _Failed) else signals
    profiles = (
        _attempt(_profiles, items["profiles"], known)
        if "profiles" in items
        else _Profiles({}, frozenset())
    )
    overrides = (
        _attempt(_overrides, items["overrides"], known, profiles) if "overrides" in items else ()
    )
    readiness = (
        _attempt(_readiness, items["production_readiness"])
        if "production_readiness" in items
        else {}
    )
    settings = section("settings", _settings)
    slo = section("slo", _slo)
    cost = _attempt(_cost, items["cost"]) if "cost" in items else Cost()
    if _failed(version, signals, profiles, overrides, readiness, settings, slo, cost):
        raise _Abandoned
    return Thresholds(
        settings=settings,  # type: ignore[arg-type]
        slo=slo,  # type: ignore[arg-type]
        signals=signals,  # type: ignore[arg-type]
        profiles=profiles.valid,  # type: ignore[union-attr]
        overrides=overrides,  # type: ignore[arg-type]
        production_readiness=readiness,  # type: ignore[arg-type]
        cost=cost,  # type: ignore[arg-type]
    )


def build(root: Node, errors: Sequence[ThresholdsError] = ()) -> Thresholds:
    """The validated thresholds of ``root``, or one :class:`ThresholdsError` naming every
    mistake in it, with ``errors`` (those found while reading the files) first."""
    found = list(errors)
    token = _found.set(found)
    try:
        thresholds = _attempt(_build, root)
    finally:
        _found.reset(token)
    if found or isinstance(thresholds, _Failed):
        raise ThresholdsError.of(found)
    return thresholds


def default_text() -> str:
    return resources.files("inferwatch.alerts").joinpath(DEFAULTS).read_text(encoding="utf-8")


def load_thresholds(*overlays: Path | str) -> Thresholds:
    """The shipped defaults with each overlay (a path, or YAML text) merged on top in order."""
    errors: list[ThresholdsError] = []
    try:
        root = parse(default_text(), f"inferwatch/alerts/{DEFAULTS}", errors)
        for overlay in overlays:
            if isinstance(overlay, Path):
                root = merge(root, load(overlay, errors))
            else:
                root = merge(root, parse(overlay, "<text>", errors))
    except ThresholdsError as exc:  # unreadable: nothing more can be checked
        raise ThresholdsError.of([*errors, *exc.errors]) from None
    return build(root, errors)
