"""Panel colours from the alerts' thresholds file, so a panel turns amber where the warning
alert fires and red where the critical one does.

Values come from :func:`inferwatch.alerts.thresholds.load_thresholds` (the same loader, file
and overlays as the generated alert rules); nothing here holds a number of its own. Panels
show the default levels; per-route or per-model overrides in the file apply to the alerts
only, which each panel's description says.

A Grafana step colours values *from* its value upwards, while a threshold alert fires
strictly past its value. For continuous signals the two agree except on a single point. For
event counts the boundary matters (``warning: 0`` means "any timeout"): there the step sits
at the next float above the threshold, so a clean 0 stays green.
"""

from __future__ import annotations

import math
from fractions import Fraction

from inferwatch.alerts.signals import BY_KEY
from inferwatch.alerts.thresholds import Levels, Thresholds
from inferwatch.dashboards.model import Step

GREEN = "#73BF69"
AMBER = "#EAB839"
RED = "#F2495C"


def levels(thresholds: Thresholds, key: str) -> Levels:
    found = thresholds.signals[key]
    if not isinstance(found, Levels):
        raise KeyError(f"{key} is a yes/no signal without levels")
    return found


def step_value(thresholds: Thresholds, key: str, value: Fraction) -> float:
    """Where the colour changes for ``value`` of signal ``key``."""
    signal = BY_KEY[key]
    if signal.kind == "count" and signal.direction == "above":
        return math.nextafter(float(value), math.inf)
    return float(value)


def steps(thresholds: Thresholds, key: str) -> tuple[Step, ...]:
    """Green, then amber from the warning level, then red from the critical level.

    For signals that alert *below* their thresholds (hit rates, success rates) the order is
    reversed: red at the bottom, amber from the critical level, green from the warning level.
    """
    signal = BY_KEY[key]
    lv = levels(thresholds, key)
    warning = None if lv.warning is None else step_value(thresholds, key, lv.warning)
    critical = None if lv.critical is None else step_value(thresholds, key, lv.critical)
    if signal.direction == "above":
        result = [Step(GREEN, None)]
        if warning is not None:
            result.append(Step(AMBER, warning))
        if critical is not None:
            result.append(Step(RED, critical))
        return tuple(result)
    # below: value < critical is red, critical <= value < warning amber, above warning green
    if critical is not None and warning is not None:
        return (Step(RED, None), Step(AMBER, critical), Step(GREEN, warning))
    if warning is not None:
        return (Step(AMBER, None), Step(GREEN, warning))
    assert critical is not None
    return (Step(RED, None), Step(GREEN, critical))


def plain() -> tuple[Step, ...]:
    """A panel without alert levels: one neutral colour."""
    return (Step(GREEN, None),)
