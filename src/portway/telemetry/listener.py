"""Prometheus metrics over HTTP on their own listener: prometheus_client's server, in a thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry


class MetricsListener:
    """Serves ``registry`` on ``host:port`` (port 0: any free one, then ``port``). Without
    ``registry``, the aggregate of every process's files under ``PROMETHEUS_MULTIPROC_DIR`` (the
    supervising process of a worker)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        if registry is None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        server, _ = start_http_server(port, host, registry)
        self._server: WSGIServer = server
        self.port: int = server.server_address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
