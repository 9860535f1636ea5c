"""The ``Page`` of a runbook: what an alert means for an AI model-serving backend, its likely
causes and first checks.

Each alert's page sits in its own definition (a signal in ``signals.py``, an SLI in
``slo.py``); only the Watchdog, which measures nothing, keeps its page here. ``runbooks.py``
renders one page per alert from :func:`pages`, and a test insists that every alert the rules
can produce has one.
"""

from __future__ import annotations

from typing import NamedTuple


class Page(NamedTuple):
    meaning: str
    causes: tuple[str, ...]
    checks: tuple[str, ...]


WATCHDOG = Page(
    "Always firing, by design: the dead-man's switch. Alertmanager sends it to a "
    "heartbeat receiver, which raises the alarm when it stops arriving.",
    (
        "If the heartbeat stops: Prometheus is down, rule evaluation fails, or the "
        "Prometheus-to-Alertmanager-to-receiver path is broken.",
    ),
    (
        "Check that Prometheus is up and its rule evaluations succeed.",
        "Check Alertmanager's status page and the heartbeat receiver.",
    ),
)


def pages() -> dict[str, Page]:
    """Alert name -> its page: every signal's, every SLI's and the Watchdog's."""
    from inferwatch.alerts import alerting, signals, slo  # they import Page from here

    found = {s.alert: s.runbook for s in signals.SIGNALS}
    found.update({sli.alert: sli.runbook for sli in slo.SLIS})
    found[alerting.WATCHDOG] = WATCHDOG
    return found
