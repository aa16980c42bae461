"""Download a CSV from a user-supplied URL without letting the URL reach inside our network.

The URL comes from a user (often a presigned link), so it is a server-side request forgery
vector: the host is resolved once, every address is checked, and the connection goes to the
checked address (with the original Host header and TLS name), so a DNS answer cannot change
between check and use. Redirects are followed by hand and each hop is checked the same way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.settings import (
    ALLOW_PRIVATE_URLS_ENV,
    URL_DEADLINE_SECONDS,
    URL_MAX_REDIRECTS,
    URL_TIMEOUT_SECONDS,
)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64 well-known prefix).
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


class UrlSourceError(ImportFileError):
    """The file could not be downloaded from its URL; says which URL (without query) and why."""


def allow_private_urls_from_env() -> bool:
    """Whether private and loopback addresses are allowed (tests, on-premise file servers)."""
    return os.environ.get(ALLOW_PRIVATE_URLS_ENV, "").strip().lower() in ("1", "true", "yes")


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: presigned URLs carry secrets there."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


def is_public_address(address: str) -> bool:
    """Whether an IP address is on the public internet (not loopback, private, link-local...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:  # ::ffff:a.b.c.d reaches a.b.c.d and nothing else
            return is_public_address(str(ip.ipv4_mapped))
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if ip in NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local or ip.is_unspecified
    )


def _host_and_port(url: str) -> tuple[str, int] | None:
    """Host and port of an http(s) URL, or None when it is not one (other scheme, bad port)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, port


def _checked_address(url: str, shown: str, allow_private: bool) -> tuple[str, int]:
    """Resolve the URL's host and return an address to connect to, refusing non-public ones."""
    host_and_port = _host_and_port(url)
    if host_and_port is None:
        raise UrlSourceError(f"{shown}: redirected to a URL that is not http(s) with a host")
    host, port = host_and_port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlSourceError(f"{shown}: cannot resolve host {host!r} ({exc})") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        for address in addresses:
            if not is_public_address(address):
                raise UrlSourceError(
                    f"{shown}: refused, host {host!r} resolves to {address}, which is "
                    f"not a public internet address (set {ALLOW_PRIVATE_URLS_ENV}=1 to allow "
                    "private file servers)"
                )
    return addresses[0], port


@contextlib.contextmanager
def _get(url: str, shown: str, timeout: float, allow_private: bool) -> Iterator[urllib3.BaseHTTPResponse]:
    """One GET to the checked address of ``url``, without following redirects."""
    address, port = _checked_address(url, shown, allow_private)
    parts = urlsplit(url)
    options: dict[str, Any] = {
        "timeout": urllib3.Timeout(connect=timeout, read=timeout),
        "retries": False,
        "maxsize": 1,
    }
    if parts.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            **options,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **options)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": "contact-import"}
    with pool:
        response = pool.urlopen(
            "GET",
            target,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            yield response
        finally:
            response.release_conn()


def _read_capped(response: urllib3.BaseHTTPResponse, shown: str, max_bytes: int, deadline: float) -> bytes:
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise UrlSourceError(f"{shown}: file is {length} bytes, over the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.stream(CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise UrlSourceError(f"{shown}: file is over the limit of {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise UrlSourceError(f"{shown}: download took longer than {URL_DEADLINE_SECONDS} s")
        chunks.append(chunk)
    return b"".join(chunks)


def _transport_error(exc: Exception, shown: str, url: str, timeout: float) -> UrlSourceError:
    # urllib3's NewConnectionError (refused, unreachable) subclasses its timeout error.
    if isinstance(exc, (Urllib3Timeout, socket.timeout)) and not isinstance(exc, NewConnectionError):
        return UrlSourceError(f"{shown}: no response within {timeout} s")
    query = urlsplit(url).query
    reason = str(exc).replace(query, "...") if query else str(exc)
    return UrlSourceError(f"{shown}: download failed ({reason})")


def _status_error(shown: str, status: int) -> UrlSourceError:
    hints = {
        401: "access denied; the link may have expired, ask for a fresh one",
        403: "access denied; the link may have expired, ask for a fresh one",
        404: "not found",
    }
    return UrlSourceError(f"{shown}: server answered HTTP {status} ({hints.get(status, 'not a file')})")


def fetch_url(
    url: str,
    *,
    max_bytes: int,
    timeout: float = URL_TIMEOUT_SECONDS,
    allow_private: bool = False,
) -> bytes:
    """Download ``url`` (http/https only), at most ``max_bytes``, checking every redirect hop.

    ``timeout`` is how long the server may stay silent (connect or between reads).
    """
    if _host_and_port(url) is None:
        raise OptionsError(f"{redact_url(url)}: only http:// and https:// URLs with a host can be imported")
    deadline = time.monotonic() + URL_DEADLINE_SECONDS
    current = url
    for _ in range(URL_MAX_REDIRECTS + 1):
        shown = redact_url(url) if current == url else f"{redact_url(url)} (redirected to {redact_url(current)})"
        try:
            with _get(current, shown, timeout, allow_private) as response:
                if response.status not in REDIRECT_STATUSES:
                    if response.status != 200:
                        raise _status_error(shown, response.status)
                    return _read_capped(response, shown, max_bytes, deadline)
                location = response.headers.get("Location")
        except (Urllib3Error, OSError) as exc:
            raise _transport_error(exc, shown, current, timeout) from exc
        if not location:
            raise UrlSourceError(f"{shown}: redirect without a Location header")
        current = urljoin(current, location)
    raise UrlSourceError(f"{redact_url(url)}: more than {URL_MAX_REDIRECTS} redirects")
