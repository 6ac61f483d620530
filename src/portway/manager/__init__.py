"""The manager: management API, access control, deployments and the worker registry (LAN, :8080)."""
