"""Opt-in OpenTelemetry tracing and exemplars."""
