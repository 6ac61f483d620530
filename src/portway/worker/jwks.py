"""``GET /.well-known/jwks.json`` (the path is ``WorkerSettings.jwks_path``): the public keys of
the environment's JWT signing keys, so clients and other services verify the tokens the token
endpoint issues without asking the manager. It lists the current key and each previous key until
its ``retire_at`` by this worker's clock; private keys never appear (the snapshot's ``public_jwk``
is all that is read). An environment without signing keys has no JWKS: the path is routed as any
other."""

from __future__ import annotations

import json
import time

from portway.config.revision import EnvironmentRevision
from portway.http import Request, Response
from portway.worker.errors import error_response

MAX_AGE = 60
"""seconds clients may cache the document: short, so a rotation is seen well within its overlap"""


def serves_jwks(revision: EnvironmentRevision, path: str | None, request: Request) -> bool:
    return path is not None and request.path == path and bool(revision.signing_keys)


def jwks_response(revision: EnvironmentRevision, request: Request, cid: str) -> Response:
    if request.method not in ("GET", "HEAD"):
        return error_response(
            405, "method_not_allowed", "method not allowed", cid, [(b"allow", b"GET, HEAD")]
        )
    now = time.time()
    keys = [
        k.public_jwk
        for k in revision.signing_keys
        if k.retire_at is None or now < k.retire_at.timestamp()
    ]
    body = json.dumps({"keys": keys}, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/jwk-set+json"),
        (b"cache-control", f"public, max-age={MAX_AGE}".encode()),
        (b"x-correlation-id", cid.encode("ascii")),
    ]
    return Response(200, headers, b"" if request.method == "HEAD" else body)
