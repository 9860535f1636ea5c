"""The alert sink: a webhook receiver that records Alertmanager's notifications.

``inferwatch alert-sink`` runs it; :func:`inferwatch.alertsink.app.create_app` builds it in
process; :class:`inferwatch.alertsink.client.AlertSinkClient` waits for notifications in
tests. Nothing is imported here, so the client works without the web framework installed.
"""
