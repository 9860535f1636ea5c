"""Alertmanager's webhook payload (version "4"), validated before anything is recorded."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# RFC 3339 as Alertmanager writes it (Go's time.Time: up to nanoseconds, "Z" or an offset).
# Kept as text so records show exactly what was sent; Python < 3.11 cannot parse nanoseconds.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def _timestamp(value: str) -> str:
    if not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 timestamp")
    return value


Timestamp = Annotated[str, AfterValidator(_timestamp)]
Status = Literal["firing", "resolved"]


class _Model(BaseModel):
    # Unknown fields are ignored: a newer Alertmanager may add some.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(_Model):
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: Timestamp  # Alertmanager's field names
    endsAt: Timestamp = "0001-01-01T00:00:00Z"  # Go's zero time: "not yet"
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1)


class WebhookPayload(_Model):
    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Status
    receiver: str = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[Alert] = Field(min_length=1)
