"""What the worker and the manager share to expose their own telemetry, below both of them:
``listener.MetricsListener`` serves Prometheus metrics on a listener of its own (never the
public or management port). Imports nothing else of Portway."""
