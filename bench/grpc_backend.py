"""A grpcio server for the gRPC bench rows: ``python -m bench.grpc_backend PORT``.

``/bench.Echo/Unary`` answers each request with its own bytes (no protobuf: grpcio passes raw
bytes through when a method has no serializers)."""

from __future__ import annotations

import sys
from concurrent import futures
from typing import Any

import grpc


def unary(request: bytes, context: Any) -> bytes:
    return request


def main() -> None:
    port = int(sys.argv[1])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(unary)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
