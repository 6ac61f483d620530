"""OpenID Connect login through a real manager and worker, at a real provider (panva's
oidc-provider), driven over plain HTTP as a browser would; then the attacks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.e2e.conftest import Platform
from tests.support import oidc
from tests.support.processes import free_port, wait_until
from tests.support.servers import Server, ServerMissing, skip_or_fail

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
COOKIE_SECRET = "e2e-cookie-secret-0123456789abcdef"


@pytest.fixture
def worker_port() -> int:
    return free_port()


@pytest.fixture
def op(platform: Platform, worker_port: int) -> Iterator[Server]:
    gateway = f"http://127.0.0.1:{worker_port}"
    clients = [oidc.client("shop", gateway + "/app/callback", post_logout=[gateway + "/app/bye"])]
    try:
        server = oidc.oidc_provider(platform.root, clients)
    except ServerMissing as exc:
        skip_or_fail(exc)
    with server:
        yield server


def app_api(platform: Platform, op: Server, gateway: str) -> dict[str, Any]:
    return {
        "name": "app",
        "base_path": "/app",
        "backends": [{"url": platform.backend_url}],
        "policies": {
            "request": [
                {
                    "name": "login",
                    "type": "oidc",
                    "config": {
                        "issuer": oidc.issuer(op),
                        "client_id": "shop",
                        "client_secret": oidc.SECRET,
                        "app_path": "/app",
                        "redirect_uri": gateway + "/app/callback",
                        "logout_path": "/app/logout",
                        "post_logout_redirect_uri": gateway + "/app/bye",
                        "scopes": ["openid", "email", "profile", "roles"],
                        "cookie_secret": COOKIE_SECRET,
                        "claims_to_headers": {"email": "X-User-Email", "name": "X-User-Name"},
                        "roles_claim": "roles",
                        "roles_header": "X-User-Roles",
                    },
                }
            ]
        },
    }


def cookie_of(response: httpx.Response, name: str) -> str:
    for line in response.headers.get_list("set-cookie"):
        if line.startswith(name + "="):
            return line
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")


def value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]


class Gateway(httpx.Client):
    """The gateway as a test sees it: every cookie is sent by hand (none kept between calls)."""

    def __init__(self, gateway: str) -> None:
        super().__init__(base_url=gateway, trust_env=False, timeout=10.0)

    def fetch(self, path: str, headers: dict[str, str]) -> httpx.Response:
        self.cookies.clear()
        return self.get(path, headers=headers)


class Browser:
    """A browser without JavaScript: cookies for the gateway kept by hand, the provider's in
    the provider client's own jar."""

    def __init__(self, gw: Gateway, op: httpx.Client) -> None:
        self.gw = gw
        self.op = op

    def start(self, path: str) -> tuple[str, str]:
        """(authorization URL, login cookie) for a page asked without a session."""
        response = self.gw.fetch(path, BROWSER)
        assert response.status_code == 302, response.text
        return response.headers["location"], value(cookie_of(response, "portway_session_login"))

    def callback(self, url: str, login_cookie: str) -> httpx.Response:
        parts = urlsplit(url)
        return self.gw.fetch(
            parts.path + "?" + parts.query,
            {**BROWSER, "Cookie": f"portway_session_login={login_cookie}"},
        )

    def log_in(self, path: str) -> tuple[str, httpx.Response]:
        auth_url, login_cookie = self.start(path)
        back = oidc.log_in(self.op, auth_url)
        done = self.callback(back, login_cookie)
        assert done.status_code == 302, done.text
        return value(cookie_of(done, "portway_session")), done


def test_login_claims_logout_and_attacks(platform: Platform, op: Server, worker_port: int) -> None:
    gateway = f"http://127.0.0.1:{worker_port}"
    platform.start_worker("w1", port=worker_port)
    platform.call("POST", "/projects/default/apis", app_api(platform, op, gateway), expect=201)
    stored = platform.call("GET", "/projects/default/apis/app")
    shown = stored["policies"]["request"][0]["config"]
    assert (shown["client_secret"], shown["cookie_secret"]) == ("***", "***")
    assert platform.deploy("app")["results"][0]["success"]

    with (
        httpx.Client(base_url=oidc.issuer(op), trust_env=False, timeout=10.0) as op_client,
        Gateway(gateway) as api,
    ):
        wait_until(
            lambda: api.fetch("/app/orders", {"Accept": "application/json"}).status_code == 401,
            "the oidc policy is deployed",
        )
        browser = Browser(api, op_client)

        # an API call without a session: 401 with a correlation id, no redirect
        refused = api.fetch("/app/orders", {"Accept": "application/json"})
        assert refused.json()["error"] == "login_required"
        assert refused.json()["correlation_id"] == refused.headers["X-Correlation-ID"]

        # the browser: 302 to the provider, log in there, back through the callback
        auth_url, login_cookie = browser.start("/app/orders?tab=open")
        asked = parse_qs(urlsplit(auth_url).query)
        assert auth_url.startswith(oidc.issuer(op) + "/auth?")
        assert asked["code_challenge_method"] == ["S256"]
        back = oidc.log_in(op_client, auth_url)
        assert back.startswith(gateway + "/app/callback?")
        done = browser.callback(back, login_cookie)
        assert done.status_code == 302, done.text
        assert done.headers["location"] == "/app/orders?tab=open"
        session_line = cookie_of(done, "portway_session")
        assert "HttpOnly" in session_line
        assert "SameSite=Lax" in session_line
        assert "Secure" not in session_line  # plain HTTP here; https:// redirect_uri sets it
        session = value(session_line)

        forged_email = {"X-User-Email": "forged@evil.test"}
        page = api.fetch(
            "/app/orders", {"Cookie": f"lang=fr; portway_session={session}", **forged_email}
        )
        assert page.status_code == 200, page.text
        seen = page.json()["headers"]
        assert seen["x-user-email"] == "alice@example.test"
        assert seen["x-user-name"] == "Alice Liddell"
        assert seen["x-consumer"] == "alice"
        assert seen["x-user-roles"] == "admin,orders"
        assert seen["cookie"] == "lang=fr"  # the session cookie never reaches the backend

        # replayed code: the same callback again, then the code with a fresh transaction
        assert browser.callback(back, login_cookie).json()["error"] == "invalid_login_state"
        fresh_url, fresh_cookie = browser.start("/app/orders")
        state = parse_qs(urlsplit(fresh_url).query)["state"][0]
        code = parse_qs(urlsplit(back).query)["code"][0]
        replay = f"{gateway}/app/callback?" + urlencode({"code": code, "state": state})
        replayed = browser.callback(replay, fresh_cookie)
        assert (replayed.status_code, replayed.json()["error"]) == (401, "login_failed")

        # tampered state
        auth_url, login_cookie = browser.start("/app/orders")
        back = oidc.log_in(op_client, auth_url)
        query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
        tampered = f"{gateway}/app/callback?" + urlencode({**query, "state": "A" * 43})
        answer = browser.callback(tampered, login_cookie)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_login_state")

        # forged session cookies
        for forged in (session.split(".")[0] + "." + "B" * 43, "x.y", session[::-1]):
            cookie = {"Cookie": f"portway_session={forged}"}
            assert (
                api.fetch("/app/orders", {"Accept": "application/json", **cookie}).json()["error"]
                == "login_required"
            )
            assert api.fetch("/app/orders", {**BROWSER, **cookie}).status_code == 302

        # open redirects: the return target is the canonical request path, never another host
        _, done = browser.log_in("/app//evil.example/x")
        assert done.headers["location"] == "/app/evil.example/x"
        encoded = api.fetch("/app/%2F%2Fevil.example", BROWSER)
        assert encoded.status_code == 400  # an encoded slash never reaches the policy
        sneaky = f"{gateway}/app/callback?" + urlencode({**query, "return_to": "https://evil"})
        assert browser.callback(sneaky, login_cookie).status_code == 400  # used, and ignored

        # logout: the session is deleted, the browser goes to the provider's end_session
        out = api.fetch("/app/logout", {**BROWSER, "Cookie": f"portway_session={session}"})
        assert out.status_code == 302
        end = out.headers["location"]
        assert end.startswith(oidc.issuer(op) + "/session/end?")
        assert parse_qs(urlsplit(end).query)["post_logout_redirect_uri"] == [gateway + "/app/bye"]
        assert "Max-Age=0" in cookie_of(out, "portway_session")
        # the provider accepts it and asks the user to confirm
        assert op_client.get(end).status_code == 200
        again = api.fetch("/app/orders", {**BROWSER, "Cookie": f"portway_session={session}"})
        assert again.status_code == 302
        assert again.headers["location"].startswith(oidc.issuer(op) + "/auth?")
