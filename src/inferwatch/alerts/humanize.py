"""Python twins of Prometheus' template functions, to predict annotations in promtool tests.

Both sides print four significant digits (Go's ``%.4g`` equals Python's here), so a test
value only has to be away from a rounding boundary, not bit-exact.
"""

from __future__ import annotations

import math


def go_g4(value: float) -> str:
    return f"{value:.4g}"


def humanize_duration(value: float) -> str:
    """Prometheus ``humanizeDuration``."""
    if math.isnan(value) or math.isinf(value):
        return go_g4(value)
    if value == 0:
        return f"{go_g4(value)}s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        whole = int(abs(value))
        seconds, minutes = whole % 60, (whole // 60) % 60
        hours, days = (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{go_g4(abs(value))}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = p
        value *= 1000
    return f"{go_g4(value)}{prefix}s"


def humanize_percentage(value: float) -> str:
    """Prometheus ``humanizePercentage``."""
    return f"{go_g4(value * 100)}%"


def humanize_1024(value: float) -> str:
    """Prometheus ``humanize1024`` (binary prefixes, no unit)."""
    if abs(value) <= 1:
        return go_g4(value)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix = p
        value /= 1024
    return f"{go_g4(value)}{prefix}"


def printf_1f(value: float) -> str:
    """``printf "%.1f"``."""
    return f"{value:.1f}"
