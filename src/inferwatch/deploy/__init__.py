"""Deployment artefacts generated from the project's own sources.

``compose``: the Prometheus and Alertmanager configuration docker-compose mounts.
``kubernetes``: manifests for kube-prometheus-stack (ServiceMonitors, PrometheusRule,
AlertmanagerConfig, dashboard ConfigMaps). ``healthcheck`` runs inside the inferwatch
container image (as does ``inferwatch.cli.launch``, which starts its commands with passwords
read from secret files). ``inferwatch generate`` writes and checks the generated files.
"""
