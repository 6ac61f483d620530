"""A real OpenID Provider for the oidc policy's tests, and a browser-less user who logs in at it.

The provider is panva's ``oidc-provider`` (OpenID Certified) on Node.js, installed by
``scripts/provision``; ``tests/support/oidc_provider.mjs`` configures it with the clients and
accounts a test gives, a login form that checks passwords, and automatic consent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.support.servers import Server, free_port, require, tcp_open

SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
SECRET = "op-client-secret-0123456789"
ACCOUNTS: dict[str, Any] = {
    "alice": {
        "password": "alice-pw",
        "claims": {
            "email": "alice@example.test",
            "email_verified": True,
            "name": "Alice Liddell",
            "roles": ["admin", "orders"],
        },
    },
}


def client(
    client_id: str,
    redirect_uri: str,
    *,
    auth_method: str = "client_secret_basic",
    post_logout: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_secret": SECRET,
        "redirect_uris": [redirect_uri],
        "post_logout_redirect_uris": list(post_logout),
        "token_endpoint_auth_method": auth_method,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }


def oidc_provider(
    workdir: Path,
    clients: Sequence[Mapping[str, Any]],
    accounts: Mapping[str, Any] | None = None,
    port: int | None = None,
) -> Server:
    """The provider on a free loopback port; its issuer is ``http://127.0.0.1:<port>``.
    ``ServerMissing`` when it is not provisioned."""
    modules = require("OIDC_PROVIDER_MODULES")
    node = require("NODE_BIN")
    port = port or free_port()
    env = {
        "OIDC_PROVIDER_MODULES": modules,
        "OIDC_PORT": str(port),
        "OIDC_CLIENTS": json.dumps(list(clients)),
        "OIDC_ACCOUNTS": json.dumps(dict(accounts if accounts is not None else ACCOUNTS)),
    }
    return Server(
        "oidc-provider",
        [node, str(SCRIPT)],
        port,
        workdir,
        lambda s: tcp_open(s.port),
        env=env,
        startup_timeout=30,
    )


def issuer(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def log_in(
    op: httpx.Client, authorize_url: str, login: str = "alice", password: str = "alice-pw"
) -> str:
    """Follow the provider's redirects as a browser would, fill in its login form, and return
    the URL the provider finally sends the browser to (the relying party's callback).

    ``op`` keeps the provider's cookies (its own jar, so they never reach the gateway)."""
    url = authorize_url
    for _ in range(10):
        response = op.get(url)
        if response.status_code in (302, 303):
            location = urljoin(url, response.headers["location"])
            if not location.startswith(str(op.base_url).rstrip("/")):
                return location  # left the provider: back to the relying party
            url = location
            continue
        assert response.status_code == 200, (response.status_code, response.text[:300])
        found = _FORM_ACTION.search(response.text)
        assert found is not None, response.text[:300]
        posted = op.post(urljoin(url, found.group(1)), data={"login": login, "password": password})
        if posted.status_code != 303 and posted.status_code != 302:
            raise LoginRefused(posted.status_code, posted.text[:200])
        url = urljoin(url, posted.headers["location"])
    raise AssertionError("the provider kept redirecting")


class LoginRefused(AssertionError):
    """The provider did not accept the login."""
