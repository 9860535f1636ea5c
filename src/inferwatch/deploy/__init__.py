"""Deployment artefacts generated from the project's own sources.

``compose``: the Prometheus and Alertmanager configuration docker-compose mounts.
``kubernetes``: manifests for kube-prometheus-stack (ServiceMonitors, PrometheusRule,
AlertmanagerConfig, dashboard ConfigMaps). ``launch`` and ``healthcheck`` run inside the
inferwatch container image. ``inferwatch generate`` writes and checks the generated files.
"""
