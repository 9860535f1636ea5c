"""The thresholds file: schema, loading (defaults + overlay) and the validated model.

The schema is checked by hand rather than with a JSON-Schema library so that every error
names the file, line and dotted key (``signals.api_error_rate.warning``) and says what was
expected, and so that cross-field rules (warning milder than critical) read like the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from inferwatch.alerts import units
from inferwatch.alerts.signals import BY_KEY, Signal
from inferwatch.alerts.source import Node, ThresholdsError, load, merge, parse, plain
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


# --- node helpers ---------------------------------------------------------------------------


def _mapping(node: Node, key: str, allowed: tuple[str, ...] | None = None) -> dict[str, Node]:
    if node.tag != "map":
        raise ThresholdsError(node, key, "expected a mapping")
    items: dict[str, Node] = node.value
    if allowed is not None:
        for name, child in items.items():
            if name not in allowed:
                raise ThresholdsError(
                    child, f"{key}.{name}" if key else name,
                    f"unknown key; expected one of: {', '.join(allowed)}",
                )  # fmt: skip
    return items


def _required(items: dict[str, Node], parent: Node, key: str, name: str) -> Node:
    if name not in items:
        raise ThresholdsError(parent, f"{key}.{name}", "missing required key")
    return items[name]


def _text(node: Node, key: str) -> str:
    if node.tag in ("map", "seq") or node.value is None:
        raise ThresholdsError(node, key, "expected a single value")
    return str(node.value)


def _quantity(node: Node, key: str, parse_value: Callable[[str], Fraction]) -> Fraction:
    unitless = (units.parse_count, units.parse_factor)
    if node.tag in ("int", "float") and parse_value not in unitless:
        raise ThresholdsError(node, key, f"{node.value} has no unit; write e.g. {node.value}s")
    try:
        return parse_value(_text(node, key))
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


# --- sections --------------------------------------------------------------------------------


def _settings(node: Node) -> Settings:
    names = ("docs_base_url", "grafana_base_url", "targets", "evaluation_interval")
    items = _mapping(node, "settings", (*names, "scrape_interval"))
    for name in names[:2]:
        value = _text(_required(items, node, "settings", name), f"settings.{name}")
        if not re.match(r"https?://", value):
            raise ThresholdsError(items[name], f"settings.{name}", "expected an http(s) URL")
    targets_node = _required(items, node, "settings", "targets")
    if targets_node.tag != "seq":
        raise ThresholdsError(targets_node, "settings.targets", "expected a list of job names")
    targets = tuple(_text(t, "settings.targets") for t in targets_node.value)
    for target, t_node in zip(targets, targets_node.value, strict=True):
        if not _JOB.fullmatch(target):
            raise ThresholdsError(t_node, "settings.targets", f"invalid job name {target!r}")
    return Settings(
        docs_base_url=_text(items["docs_base_url"], "").rstrip("/"),
        grafana_base_url=_text(items["grafana_base_url"], "").rstrip("/"),
        targets=targets,
        evaluation_interval=_duration(
            _required(items, node, "settings", "evaluation_interval"),
            "settings.evaluation_interval", positive=True,
        ),
        scrape_interval=_duration(
            _required(items, node, "settings", "scrape_interval"),
            "settings.scrape_interval", positive=True,
        ),
    )  # fmt: skip


def _objective(parent: Node, key: str, allowed: tuple[str, ...]) -> tuple[Fraction, dict]:
    items = _mapping(parent, key, allowed)
    node = _required(items, parent, key, "objective")
    value = _quantity(node, f"{key}.objective", units.parse_percent)
    if not 0 < value < 1:
        raise ThresholdsError(node, f"{key}.objective", "must be above 0% and below 100%")
    return value, items


def _slo(node: Node) -> Slo:
    items = _mapping(node, "slo", ("window", "availability", "latency", "burn_rates"))
    window = _duration(_required(items, node, "slo", "window"), "slo.window", positive=True)
    availability, _ = _objective(
        _required(items, node, "slo", "availability"), "slo.availability", ("objective",)
    )
    latency_node = _required(items, node, "slo", "latency")
    latency, lat_items = _objective(latency_node, "slo.latency", ("objective", "threshold"))
    t_node = _required(lat_items, latency_node, "slo.latency", "threshold")
    threshold = _duration(t_node, "slo.latency.threshold", positive=True)
    if float(threshold) not in DURATION_SECONDS:
        raise ThresholdsError(
            t_node, "slo.latency.threshold",
            "must be a bucket bound of http_server_request_duration_seconds "
            f"(one of {', '.join(_BUCKETS)})",
        )  # fmt: skip
    rates_node = _required(items, node, "slo", "burn_rates")
    if rates_node.tag != "seq" or not rates_node.value:
        raise ThresholdsError(rates_node, "slo.burn_rates", "expected a non-empty list")
    burn_rates = []
    for i, entry in enumerate(rates_node.value):
        key = f"slo.burn_rates[{i}]"
        fields = ("long", "short", "factor", "severity", "for")
        b = _mapping(entry, key, fields)
        for name in fields:
            _required(b, entry, key, name)
        rate = BurnRate(
            long=_duration(b["long"], f"{key}.long", positive=True),
            short=_duration(b["short"], f"{key}.short", positive=True),
            factor=_quantity(b["factor"], f"{key}.factor", units.parse_factor),
            severity=_severity(b["severity"], f"{key}.severity"),
            for_=_duration(b["for"], f"{key}.for"),
        )
        if rate.short >= rate.long:
            raise ThresholdsError(b["short"], f"{key}.short", "must be shorter than long")
        if rate.long > window:
            raise ThresholdsError(b["long"], f"{key}.long", "must not exceed slo.window")
        burn_rates.append(rate)
    return Slo(window, availability, latency, threshold, tuple(burn_rates))


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


def _levels(signal: Signal, node: Node, key: str, base: Levels | None) -> Levels:
    """Parse ``{warning, critical, for}``; missing keys come from ``base``."""
    items = _mapping(node, key, ("warning", "critical", "for"))
    parse_value = _PARSERS[signal.kind]
    values: dict[str, Fraction | None] = {
        name: (base.level(name) if base else None)
        for name in SEVERITIES  # type: ignore[arg-type]
    }
    for name in SEVERITIES:
        if name in items:
            child = items[name]
            values[name] = (
                None if child.value is None else _quantity(child, f"{key}.{name}", parse_value)
            )
            if signal.kind == "ratio" and values[name] in (0, 1):
                bound = "0%" if values[name] == 0 else "100%"
                raise ThresholdsError(child, f"{key}.{name}", f"a ratio alert at {bound} is moot")
    if "for" in items:
        for_ = _duration(items["for"], f"{key}.for")
    elif base is not None:
        for_ = base.for_
    else:
        raise ThresholdsError(node, f"{key}.for", "missing required key")
    levels = Levels(values["warning"], values["critical"], for_)
    # Blame the value the user wrote in this entry: the warning, else the critical.
    blamed = next((n for n in SEVERITIES if n in items), None)
    _check_order(
        signal, levels, items[blamed] if blamed else node, f"{key}.{blamed}" if blamed else key
    )
    return levels


def _state(signal: Signal, node: Node, key: str) -> StateLevel:
    items = _mapping(node, key, ("severity", "for"))
    return StateLevel(
        severity=_severity(_required(items, node, key, "severity"), f"{key}.severity"),
        for_=_duration(_required(items, node, key, "for"), f"{key}.for"),
    )


def _signals(node: Node) -> dict[str, Levels | StateLevel]:
    items = _mapping(node, "signals", tuple(BY_KEY))
    result: dict[str, Levels | StateLevel] = {}
    for signal_key, signal in BY_KEY.items():
        key = f"signals.{signal_key}"
        child = _required(items, node, "signals", signal_key)
        if signal.kind == "state":
            result[signal_key] = _state(signal, child, key)
        else:
            result[signal_key] = _levels(signal, child, key, None)
    return result


def _threshold_signal(name: str, node: Node, key: str) -> Signal:
    signal = BY_KEY.get(name)
    if signal is None or signal.kind == "state":
        choices = ", ".join(k for k, s in BY_KEY.items() if s.kind != "state")
        raise ThresholdsError(node, key, f"unknown threshold signal; expected one of: {choices}")
    return signal


def _profiles(node: Node, signals: Mapping[str, Levels | StateLevel]) -> dict[str, dict]:
    result: dict[str, dict[str, Node]] = {}
    for name, profile in _mapping(node, "profiles").items():
        entries = _mapping(profile, f"profiles.{name}")
        for signal_key, entry in entries.items():
            key = f"profiles.{name}.{signal_key}"
            signal = _threshold_signal(signal_key, entry, key)
            base = signals[signal_key]
            assert isinstance(base, Levels)
            _levels(signal, entry, key, Levels(None, None, base.for_))  # validate early
        result[name] = entries
    return result


def _matchers(items: dict[str, Node], key: str) -> tuple[Matcher, ...]:
    matchers: list[Matcher] = []
    for field_name, op in (("match", "="), ("match_re", "=~")):
        if field_name not in items:
            continue
        for label, value in _mapping(items[field_name], f"{key}.{field_name}").items():
            label_key = f"{key}.{field_name}.{label}"
            text = _text(value, label_key)
            name = "job" if label == "service" else label
            if not _LABEL.fullmatch(name):
                raise ThresholdsError(value, label_key, "invalid label name")
            if op == "=~":
                try:
                    re.compile(text)
                except re.error as exc:
                    raise ThresholdsError(value, label_key, f"invalid regex: {exc}") from None
            matchers.append(Matcher(name, op, text))  # type: ignore[arg-type]
    if not matchers:
        raise ThresholdsError(None, key, "needs `match` or `match_re` with at least one label")
    return tuple(sorted(matchers, key=lambda m: (m.label, m.op, m.value)))


def _override(
    index: int,
    node: Node,
    signals: Mapping[str, Levels | StateLevel],
    profiles: Mapping[str, Mapping[str, Node]],
) -> Override:
    key = f"overrides[{index}]"
    items = _mapping(node, key, ("match", "match_re", "profile", "signals"))
    try:
        matchers = _matchers(items, key)
    except ThresholdsError as exc:
        if exc.node is None:
            raise ThresholdsError(node, exc.key, exc.message) from None
        raise
    entries: dict[str, tuple[Node, str]] = {}  # signal -> (entry, key) applied in order
    resolved: dict[str, Levels] = {}
    profile = None
    if "profile" in items:
        profile = _text(items["profile"], f"{key}.profile")
        if profile not in profiles:
            raise ThresholdsError(
                items["profile"], f"{key}.profile",
                f"unknown profile {profile!r}; defined: {', '.join(profiles) or 'none'}",
            )  # fmt: skip
        for signal_key, entry in profiles[profile].items():
            base = signals[signal_key]
            assert isinstance(base, Levels)
            signal = BY_KEY[signal_key]
            resolved[signal_key] = _levels(
                signal, entry, f"profiles.{profile}.{signal_key}", Levels(None, None, base.for_)
            )
            entries[signal_key] = (entry, f"profiles.{profile}.{signal_key}")
    if "signals" in items:
        for signal_key, entry in _mapping(items["signals"], f"{key}.signals").items():
            s_key = f"{key}.signals.{signal_key}"
            signal = _threshold_signal(signal_key, entry, s_key)
            base = resolved.get(signal_key) or signals[signal_key]
            assert isinstance(base, Levels)
            resolved[signal_key] = _levels(signal, entry, s_key, base)
            entries[signal_key] = (entry, s_key)
    if not resolved:
        raise ThresholdsError(node, key, "needs `profile` or `signals`")
    for signal_key, (entry, s_key) in entries.items():
        labels = BY_KEY[signal_key].labels
        for m in matchers:
            if m.label not in labels:
                raise ThresholdsError(
                    entry, s_key,
                    f"cannot match on {m.label!r}: {signal_key} series carry only "
                    f"{', '.join(labels)}",
                )  # fmt: skip
    return Override(matchers, resolved, profile, f"override-{index + 1}")


_PRICE = re.compile(r"\d+(?:\.\d+)?")
_CURRENCY = re.compile(r"[A-Za-z$€£¥]{1,8}")


def _cost(node: Node) -> Cost:
    fields = ("currency", *(f"{r}_hour" for r in RESOURCES))
    items = _mapping(node, "cost", fields)
    currency = "USD"
    if "currency" in items:
        currency = _text(items["currency"], "cost.currency")
        if not _CURRENCY.fullmatch(currency):
            raise ThresholdsError(items["currency"], "cost.currency", "expected a code like USD")
    prices: dict[str, Fraction] = {}
    for resource in RESOURCES:
        key = f"{resource}_hour"
        if key not in items:
            continue
        text = _text(items[key], f"cost.{key}")
        if not _PRICE.fullmatch(text):
            raise ThresholdsError(
                items[key], f"cost.{key}", f"expected a price like 0.04 or 2.5, got {text!r}"
            )
        prices[resource] = Fraction(text)
    return Cost(currency, prices)


def build(root: Node) -> Thresholds:
    top = ("version", "settings", "slo", "signals", "profiles", "overrides")
    items = _mapping(root, "", (*top, "production_readiness", "cost"))
    version = _text(_required(items, root, "(top)", "version"), "version")
    if version != "1":
        raise ThresholdsError(items["version"], "version", f"unsupported version {version!r}")
    signals = _signals(_required(items, root, "(top)", "signals"))
    profiles = _profiles(items["profiles"], signals) if "profiles" in items else {}
    overrides_node = items.get("overrides")
    overrides: list[Override] = []
    if overrides_node is not None:
        if overrides_node.tag != "seq":
            raise ThresholdsError(overrides_node, "overrides", "expected a list")
        overrides = [_override(i, n, signals, profiles) for i, n in enumerate(overrides_node.value)]
    readiness_node = items.get("production_readiness")
    readiness = plain(readiness_node) if readiness_node is not None else {}
    if not isinstance(readiness, dict):
        raise ThresholdsError(readiness_node, "production_readiness", "expected a mapping")
    return Thresholds(
        settings=_settings(_required(items, root, "(top)", "settings")),
        slo=_slo(_required(items, root, "(top)", "slo")),
        signals=signals,
        profiles=profiles,
        overrides=tuple(overrides),
        production_readiness=readiness,
        cost=_cost(items["cost"]) if "cost" in items else Cost(),
    )


def default_text() -> str:
    return resources.files("inferwatch.alerts").joinpath(DEFAULTS).read_text(encoding="utf-8")


def load_thresholds(*overlays: Path | str) -> Thresholds:
    """The shipped defaults with each overlay (a path, or YAML text) merged on top in order."""
    root = parse(default_text(), f"inferwatch/alerts/{DEFAULTS}")
    for overlay in overlays:
        root = merge(root, load(overlay) if isinstance(overlay, Path) else parse(overlay, "<text>"))
    return build(root)
