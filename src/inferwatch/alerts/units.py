"""Quantities with explicit units, parsed exactly (``Fraction``) and rendered back.

Thresholds are compared and multiplied (burn-rate factors) before they reach PromQL, so they
are kept as fractions: ``0.005 * 14.4`` must render as ``0.072``, never as a float artefact.

Durations have one grammar in the whole project (thresholds, ``for:``, the stack's intervals,
the Alertmanager timings, the range selectors the window scaling rewrites): Prometheus's, its
units ``y w d h m s ms`` in that order, each at most once (``1h30m``, ``500ms``, ``2d``), with
one extension for thresholds, a decimal count (``1.5s``), which :func:`format_duration`
writes back as Prometheus spells it (``1500ms``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

_NUMBER = r"(\d+(?:\.\d+)?)"
# Prometheus's duration units, largest first: the order a duration writes them in.
_DURATION_UNITS = {
    "y": Fraction(31_536_000),
    "w": Fraction(604_800),
    "d": Fraction(86_400),
    "h": Fraction(3600),
    "m": Fraction(60),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
}
# A duration, for embedding in a larger pattern (a PromQL range selector): at least one
# part, starting with a digit, each unit at most once and in order.
DURATION = "(?=\\d)" + "".join(f"(?:{_NUMBER[1:-1]}{unit})?" for unit in _DURATION_UNITS)
_DURATION = re.compile("(?=\\d)" + "".join(f"(?:{_NUMBER}{unit})?" for unit in _DURATION_UNITS))
_PERCENT = re.compile(rf"{_NUMBER}\s*%")
_CELSIUS = re.compile(rf"{_NUMBER}\s*(?:°C|C|celsius)")
_BYTES = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_BYTE_RATE = re.compile(rf"{_NUMBER}\s*({'|'.join(_BYTES)})/s")
_COUNT = re.compile(r"\d+")
_FACTOR = re.compile(rf"{_NUMBER}x?")


class UnitError(ValueError):
    """A quantity that does not parse; the message says what was expected."""


def parse_duration(text: str) -> Fraction:
    """``500ms``, ``5m``, ``1h30m``, ``1.5s`` -> seconds (the grammar above)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise UnitError(f"expected a duration like 500ms, 5m or 1h30m, got {text!r}")
    parts = zip(match.groups(), _DURATION_UNITS.values(), strict=True)
    return sum((Fraction(n) * size for n, size in parts if n is not None), Fraction(0))


def parse_percent(text: str) -> Fraction:
    """``5%`` -> 1/20; at most 100 %."""
    match = _PERCENT.fullmatch(text.strip())
    if not match:
        raise UnitError(f"expected a percentage like 5% or 99.5%, got {text!r}")
    value = Fraction(match.group(1)) / 100
    if value > 1:
        raise UnitError(f"a percentage cannot exceed 100%, got {text!r}")
    return value


def parse_celsius(text: str) -> Fraction:
    match = _CELSIUS.fullmatch(text.strip())
    if not match:
        raise UnitError(f"expected a temperature like 85C or 85°C, got {text!r}")
    return Fraction(match.group(1))


def parse_byte_rate(text: str) -> Fraction:
    """``512KiB/s`` -> bytes per second."""
    match = _BYTE_RATE.fullmatch(text.strip())
    if not match:
        raise UnitError(f"expected a byte rate like 512KiB/s or 1MB/s, got {text!r}")
    return Fraction(match.group(1)) * _BYTES[match.group(2)]


_BYTE_SIZE = re.compile(rf"{_NUMBER}\s*({'|'.join(_BYTES)})")


def parse_bytes(text: str) -> Fraction:
    """``100MB`` -> bytes (decimal MB, binary MiB)."""
    match = _BYTE_SIZE.fullmatch(text.strip())
    if not match:
        raise UnitError(f"expected a size like 100MB or 512MiB, got {text!r}")
    return Fraction(match.group(1)) * _BYTES[match.group(2)]


def parse_count(text: str) -> Fraction:
    if not _COUNT.fullmatch(text.strip()):
        raise UnitError(f"expected a whole number of events like 0 or 3, got {text!r}")
    return Fraction(int(text))


def parse_factor(text: str) -> Fraction:
    """A burn-rate multiplier: ``14.4`` or ``14.4x``."""
    match = _FACTOR.fullmatch(text.strip())
    if not match or Fraction(match.group(1)) <= 0:
        raise UnitError(f"expected a positive multiplier like 14.4 or 14.4x, got {text!r}")
    return Fraction(match.group(1))


def decimal_text(value: Fraction) -> str:
    """Exact decimal rendering: ``Fraction(9, 125)`` -> ``0.072``; no exponent, no float noise."""
    if value.denominator == 1:
        return str(value.numerator)
    # Terminating decimals only: every quantity here was written in decimal to begin with.
    scaled = Decimal(value.numerator) / Decimal(value.denominator)
    text = format(scaled.normalize(), "f")
    if Fraction(text) != value:
        raise ValueError(f"{value} has no short exact decimal form")
    return text


def format_duration(seconds: Fraction) -> str:
    """Prometheus duration syntax (``5m``, ``1h30m``, ``500ms``, ``0s``)."""
    if seconds == 0:
        return "0s"
    millis = seconds * 1000
    if millis.denominator != 1:
        raise ValueError(f"{seconds}s is not a whole number of milliseconds")
    remaining = int(millis)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    if remaining % 1000 == 0 and remaining:
        parts.append(f"{remaining // 1000}s")
    elif remaining:
        parts.append(f"{remaining}ms")
    return "".join(parts)


def format_percent(value: Fraction) -> str:
    return f"{decimal_text(value * 100)}%"
