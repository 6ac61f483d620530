"""The management API's contract (``/api/v1``): the request and response models of every operation.

The manager declares them on its routes (so the OpenAPI document carries every request and
response schema) and the CLI client parses the answers with the same classes. This package sits
in ``config``: it imports neither FastAPI nor the manager, so a client imports it alone.

Response models refuse unknown fields (``Answer``): an answer that drifts from its model fails in
the tests (FastAPI validates every answer) instead of silently changing the contract. Fields an
answer may omit have defaults and the routes leave unset fields out, so an answer's JSON is
exactly what the handler produced.
"""
