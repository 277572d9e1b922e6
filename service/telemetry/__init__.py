"""Seeing the service at work: Prometheus metrics, OpenTelemetry traces and JSON log lines."""
