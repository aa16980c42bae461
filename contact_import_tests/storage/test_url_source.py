"""storage.url_source: URL downloads: private addresses refused (also after redirects), size cap, timeout, schemes."""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from typing import ClassVar

import pytest

from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.storage import url_source
from contact_import_pipeline.storage.url_source import (
    UrlSourceError,
    allow_private_urls_from_env,
    fetch_url,
    is_public_address,
)

BODY = b"name,phone\nAda,+14155550100\n"


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /ok, /big (1,000 bytes, with or without Content-Length), /slow (answers once
    ``release`` is set), /redirect, /hops/<n>, /denied."""

    requests: ClassVar[list[str]] = []
    release = threading.Event()

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        Handler.requests.append(self.path)
        path, _, query = self.path.partition("?")
        if path == "/ok":
            self._send(200, BODY)
        elif path == "/big":
            self._send(200, b"x" * 1000, length="no-length" not in query)
        elif path == "/slow":
            Handler.release.wait(timeout=60)
            self._send(200, BODY)
        elif path == "/redirect":  # /redirect?to=<quoted url>
            self._redirect(urllib.parse.unquote(query.removeprefix("to=")))
        elif path.startswith("/hops/"):  # /hops/<n> redirects n times, then /ok
            left = int(path.rsplit("/", 1)[1])
            self._redirect(f"/hops/{left - 1}" if left > 1 else "/ok")
        else:
            self._send(403, b"denied")

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, body: bytes, length: bool = True) -> None:
        self.send_response(status)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up (timeout test)
            self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def clear_requests() -> None:
    Handler.requests.clear()


def test_loopback_is_refused_by_default_without_connecting(server: str) -> None:
    with pytest.raises(UrlSourceError) as caught:
        fetch_url(f"{server}/ok", max_bytes=1000)
    assert str(caught.value) == (
        f"{server}/ok: refused, host '127.0.0.1' resolves to 127.0.0.1, which is not a public "
        "internet address (set CONTACT_IMPORT_ALLOW_PRIVATE_URLS=1 to allow private file servers)"
    )
    assert isinstance(caught.value, ImportFileError)
    assert Handler.requests == []


def test_allowed_with_allow_private(server: str) -> None:
    assert fetch_url(f"{server}/ok", max_bytes=1000, allow_private=True) == BODY
    assert Handler.requests == ["/ok"]


def test_redirect_to_a_private_address_is_refused(server: str, monkeypatch) -> None:
    # Pretend the test server is on the internet; the redirect targets stay private.
    real = url_source.is_public_address
    monkeypatch.setattr(url_source, "is_public_address", lambda a: a == "127.0.0.1" or real(a))
    port = server.rsplit(":", 1)[1]
    for target in ["http://169.254.169.254/latest/meta-data/", f"http://[::1]:{port}/ok", "http://10.0.0.1/x"]:
        with pytest.raises(UrlSourceError, match=r"\(redirected to .*\): refused, host"):
            fetch_url(f"{server}/redirect?to={urllib.parse.quote(target, safe='')}", max_bytes=1000)
    assert fetch_url(f"{server}/redirect?to=/ok", max_bytes=1000) == BODY
    assert [p.split("?")[0] for p in Handler.requests] == ["/redirect"] * 4 + ["/ok"]


def test_redirects_are_limited_to_five(server: str) -> None:
    assert fetch_url(f"{server}/hops/5", max_bytes=1000, allow_private=True) == BODY
    with pytest.raises(UrlSourceError, match=r"/hops/6: more than 5 redirects"):
        fetch_url(f"{server}/hops/6", max_bytes=1000, allow_private=True)


def test_redirect_to_another_scheme_is_refused(server: str) -> None:
    with pytest.raises(UrlSourceError, match="redirected to a URL that is not http"):
        fetch_url(f"{server}/redirect?to=file:///etc/passwd", max_bytes=1000, allow_private=True)


@pytest.mark.parametrize("query", ["", "?no-length"])
def test_size_cap_with_and_without_content_length(server: str, query: str) -> None:
    assert len(fetch_url(f"{server}/big{query}", max_bytes=1000, allow_private=True)) == 1000
    with pytest.raises(UrlSourceError, match=r"/big: file is .*over the limit of 999 bytes"):
        fetch_url(f"{server}/big{query}", max_bytes=999, allow_private=True)


def test_timeout(server: str) -> None:
    """The download gives up, once and without retrying, while the server still holds its answer back."""
    Handler.release.clear()
    try:
        with pytest.raises(UrlSourceError, match=r"/slow: no response within 0\.3 s"):
            fetch_url(f"{server}/slow", max_bytes=1000, timeout=0.3, allow_private=True)
        assert Handler.requests == ["/slow"]
    finally:
        Handler.release.set()


def test_error_messages_leave_out_query_and_credentials(server: str) -> None:
    secret = "X-Amz-Signature=deadbeefsecret"
    with pytest.raises(UrlSourceError) as caught:
        fetch_url(f"http://user:pw@{server[7:]}/denied?{secret}", max_bytes=1000, allow_private=True)
    assert str(caught.value) == (
        f"{server}/denied: server answered HTTP 403 (access denied; the link may have expired, ask for a fresh one)"
    )


def test_connection_refused_is_reported(server: str) -> None:
    with pytest.raises(UrlSourceError, match=r"http://127\.0\.0\.1:9/x: download failed \(.*refused"):
        fetch_url("http://127.0.0.1:9/x?token=s3cret", max_bytes=10, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.csv",
        "gopher://x/",
        "/local/path.csv",
        "http:///nohost",
        "http://h:port/",
    ],
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(OptionsError, match="only http:// and https:// URLs"):
        fetch_url(url, max_bytes=10)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "239.1.1.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1%eth0",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",
        "64:ff9b::a00:1",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert is_public_address(address)


def test_allow_private_from_env(monkeypatch) -> None:
    monkeypatch.delenv("CONTACT_IMPORT_ALLOW_PRIVATE_URLS", raising=False)
    assert allow_private_urls_from_env() is False
    monkeypatch.setenv("CONTACT_IMPORT_ALLOW_PRIVATE_URLS", "1")
    assert allow_private_urls_from_env() is True
    monkeypatch.setenv("CONTACT_IMPORT_ALLOW_PRIVATE_URLS", "0")
    assert allow_private_urls_from_env() is False
