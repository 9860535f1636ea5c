"""The sink's own metrics, next to the HTTP metrics ``instrument_app`` records for it."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.registry import CollectorRegistry

from inferwatch.metrics import Counter, CounterChild
from inferwatch.metrics.labels import BoundedLabel

REJECT_REASONS = ("too_large", "malformed", "invalid")
FORWARD_RESULTS = ("ok", "error", "dropped")
DEFAULT_MAX_RECEIVERS = 32  # an Alertmanager configuration names a handful


@dataclass
class SinkMetrics:
    notifications: Counter
    alerts: Counter
    duplicates: CounterChild  # no labels: the one child, present (at 0) from the start
    rejected: Counter
    forwards: Counter
    # The receiver comes from the request body: whoever can post chooses it, so its values
    # are capped (the first ones seen are kept, later ones count as "_OTHER").
    receiver: BoundedLabel

    @classmethod
    def create(cls, registry: CollectorRegistry, *, max_receivers: int) -> SinkMetrics:
        metrics = cls(
            notifications=Counter(
                "inferwatch_alertsink_notifications_total",
                "Webhook notifications accepted, by receiver and notification status.",
                ("receiver", "status"),
                registry=registry,
            ),
            alerts=Counter(
                "inferwatch_alertsink_alerts_total",
                "Alerts recorded (repeats excluded), by receiver and alert status.",
                ("receiver", "status"),
                registry=registry,
            ),
            duplicates=Counter(
                "inferwatch_alertsink_duplicates_total",
                "Alerts received again (same receiver, fingerprint, status and startsAt).",
                registry=registry,
            ).labels(),
            rejected=Counter(
                "inferwatch_alertsink_rejected_total",
                "Webhook requests rejected: too_large (413), malformed (400), invalid (422).",
                ("reason",),
                registry=registry,
            ),
            forwards=Counter(
                "inferwatch_alertsink_forwards_total",
                "Notifications forwarded to another URL, by result (dropped: too many pending).",
                ("result",),
                registry=registry,
            ),
            receiver=BoundedLabel(
                "receiver",
                name="alertsink.receiver",
                max_values=max_receivers,
            ),
        )
        # Present from the start, so a rate() over them never begins with a missing series.
        for reason in REJECT_REASONS:
            metrics.rejected.labels(reason)
        for result in FORWARD_RESULTS:
            metrics.forwards.labels(result)
        return metrics
