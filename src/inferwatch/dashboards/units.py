"""Format values the way Grafana's units do, for the renderer's axes and stat panels."""

from __future__ import annotations

import math

_BIN = ("B", "KiB", "MiB", "GiB", "TiB")
_SI = ("", "k", "M", "G", "T")
_SUFFIX = {
    "reqps": " req/s",
    "cps": " /s",
    "ops": " ops/s",
    "pps": " p/s",
    "watt": " W",
    "celsius": " °C",
    "x": "x",
}


def _si(value: float) -> str:
    magnitude = 0
    while abs(value) >= 1000 and magnitude < len(_SI) - 1:
        value /= 1000
        magnitude += 1
    return f"{_trim(value)}{_SI[magnitude]}"


def _trim(value: float) -> str:
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{min(digits, 4)}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"


def _bytes(value: float) -> str:
    magnitude = 0
    while abs(value) >= 1024 and magnitude < len(_BIN) - 1:
        value /= 1024
        magnitude += 1
    return f"{_trim(value)} {_BIN[magnitude]}"


def _seconds(value: float) -> str:
    if value == 0:
        return "0 s"
    if abs(value) < 1e-3:
        return f"{_trim(value * 1e6)} µs"
    if abs(value) < 1:
        return f"{_trim(value * 1e3)} ms"
    if abs(value) < 120:
        return f"{_trim(value)} s"
    return f"{_trim(value / 60)} min"


def format_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if unit == "percentunit":
        return f"{_trim(value * 100)}%"
    if unit == "s":
        return _seconds(value)
    if unit == "bytes":
        return _bytes(value)
    if unit == "Bps":
        return f"{_bytes(value)}/s"
    return f"{_si(value)}{_SUFFIX.get(unit, '')}"
