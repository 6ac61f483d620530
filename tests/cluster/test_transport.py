from __future__ import annotations

import pytest

from portway.cluster.transport import plain_http_refusal


@pytest.mark.parametrize(
    "url",
    [
        "https://manager.example.com:8080",
        "http://127.0.0.1:8080",
        "http://127.8.9.10",
        "http://localhost:8080",
        "http://LOCALHOST:8080",
        "http://[::1]:8080",
    ],
)
def test_https_and_loopback_are_allowed(url: str) -> None:
    assert plain_http_refusal(url, insecure=False) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://manager.example.com:8080",
        "http://10.0.0.5:8080",
        "http://localhost.evil.example:8080",
        "http://127.0.0.1.nip.io",
        "http://[::ffff:10.0.0.5]",
        "HTTP://10.0.0.5",
    ],
)
def test_plain_http_elsewhere_needs_the_flag(url: str) -> None:
    refusal = plain_http_refusal(url, insecure=False)
    assert refusal is not None
    assert "--insecure-cluster" in refusal
    assert plain_http_refusal(url, insecure=True) is None


@pytest.mark.parametrize("url", ["ftp://manager", "manager:8080", "http://"])
def test_not_a_cluster_url(url: str) -> None:
    assert "must be http(s)" in (plain_http_refusal(url, insecure=True) or "")
