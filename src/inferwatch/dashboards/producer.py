"""The dashboards' artefact producer for ``inferwatch generate``."""

from __future__ import annotations

from inferwatch.alerts.generate import Producer
from inferwatch.dashboards import OUT_DIR, files

PRODUCER = Producer("dashboards", (OUT_DIR,), files)
