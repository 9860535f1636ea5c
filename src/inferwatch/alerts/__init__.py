"""Prometheus rules generated from one thresholds file.

``thresholds.yaml`` (shipped here, overridable with a user overlay) holds every alert
threshold, ``for:`` duration and SLO objective. ``inferwatch generate`` turns it into the
recording rules, alerting rules, runbooks and ``promtool test rules`` files under ``alerts/``.
"""
