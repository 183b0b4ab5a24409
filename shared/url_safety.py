"""Checks on URLs that callers hand us to fetch (csvUrl) or to call back (webhookUrl), against SSRF.

:func:`check_url` checks the URL's form (https, a host name DNS takes as written, port 443 unless another
is allowed, no user name or password) and refuses a literal address that is not public;
:func:`resolve_checked` resolves a host name and refuses it if *any* of its addresses is not public;
:func:`check_target` does both.  :func:`pinned_stream` sends a request to one of the addresses that were
checked, so that DNS cannot answer the check with a public address and the connection with a private one.
``allow_private`` (tests, closed networks) lifts the address and port checks and allows http; nothing
else: where internal addresses may be named at all, which of their ports answer is no secret to keep.

Reasons never quote the URL itself: its path or query may carry a credential (a signed link, a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

MAX_URL_LENGTH = 2048
MAX_NAME_LENGTH = 253  # DNS's limits, as RFC 1035 sets them
MAX_LABEL_LENGTH = 63
_DEFAULT_PORTS = {"https": 443, "http": 80}
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")  # urlsplit lower-cases the host
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")
# What makes an address one a caller must not make us reach; the first that matches is named, so the
# narrow ones come before is_private, which covers most of them.
_NOT_PUBLIC = (
    "is_unspecified",
    "is_loopback",
    "is_link_local",
    "is_multicast",
    "is_private",
    "is_reserved",
)
# Where a local-use NAT64 prefix puts the IPv4 address is each network's choice (RFC 8215): refused whole.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
# IPv6 prefixes whose last 32 bits are an IPv4 address: mapped, compatible, translated (SIIT), NAT64
# (and local-use NAT64's usual /96, so that a refusal names the IPv4 address where it can).
_LOW_32_BITS_IPV4 = (
    *map(ipaddress.IPv6Network, ("::ffff:0:0/96", "::/96", "::ffff:0:0:0/96", "64:ff9b::/96")),
    _LOCAL_NAT64,
)


class UnsafeUrl(ValueError):
    """The URL is malformed or not allowed; ``reason`` says why, without quoting the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HostNotAllowed(UnsafeUrl):
    """The URL is well formed but its host (a name not allowed, or a non-public address) is refused."""


class NotPublicAddress(HostNotAllowed):
    """The host name resolves to an address that is not public: what DNS answered, not what the URL says."""


class UnresolvedHost(OSError):
    """The host name does not resolve (not a refusal: the name may resolve later)."""


def check_url(
    url: str,
    *,
    allow_private: bool,
    allowed_hosts: Collection[str] = (),
    allowed_ports: Collection[int] = (),
) -> SplitResult:
    """The parts of ``url`` if it is an absolute https URL with a host and no user name or password.

    ``allowed_hosts`` (names, any case; empty: any host) limits the host; a host written as an address
    must be public.  A host name must be one DNS and TLS take as it is written (see :func:`_check_name`);
    its addresses are checked by :func:`resolve_checked` when it is resolved.  The port must be 443 or
    one of ``allowed_ports``, so that a URL cannot probe which ports answer; ``allow_private`` (a
    closed network, or tests on loopback) lifts that too.
    """
    parts = _split(url, allow_private=allow_private)
    host = parts.hostname or ""
    _check_port(parts.port, allow_private=allow_private, allowed_ports=allowed_ports)
    if allowed_hosts and host.rstrip(".") not in {name.lower().rstrip(".") for name in allowed_hosts}:
        raise HostNotAllowed(f"host {host} is not one of the allowed hosts")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        _check_name(host)
        return parts
    if not allow_private and (refusal := _not_public(address)):
        raise HostNotAllowed(f"host {host} is {refusal}")
    return parts


def _split(url: str, *, allow_private: bool) -> SplitResult:
    """The parts of ``url`` if it is absolute, of an allowed scheme, with a host and no user name."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"longer than {MAX_URL_LENGTH} characters")
    if any(char <= " " or char == "\x7f" for char in url):
        # urlsplit would silently drop tabs and newlines: the URL checked must be the URL fetched.
        raise UnsafeUrl("contains spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number from 0 to 65535)
    except ValueError:
        raise UnsafeUrl("not a valid URL (bad host or port)") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise UnsafeUrl(f"must be an {' or '.join(schemes)} URL")
    if "@" in parts.netloc:
        raise UnsafeUrl("must not carry a user name or password")
    if not parts.hostname:
        raise UnsafeUrl("has no host")
    return parts


def _check_port(port: int | None, *, allow_private: bool, allowed_ports: Collection[int]) -> None:
    if port == 0:
        raise UnsafeUrl("port: must not be 0")
    # No port is https's own, 443: only allow_private lets a URL be http.
    if allow_private or port in (None, 443) or port in allowed_ports:
        return
    allowed = ", ".join(str(number) for number in sorted({443, *allowed_ports}))
    raise UnsafeUrl(f"port: {port} is not allowed (allowed: {allowed})")


def _check_name(host: str) -> None:
    """Refuse a host name that DNS, TLS or an HTTP client would refuse, or read as another host.

    A name refused only when it is resolved, or sent, would pass the check and fail later, where the
    caller is no longer there to be told.
    """
    if not host.isascii():
        raise UnsafeUrl("host: must be ASCII (write an international name in its xn-- form)")
    name = host.removesuffix(".")  # one trailing dot: the name written fully qualified
    if len(name) > MAX_NAME_LENGTH:
        raise UnsafeUrl(f"host: longer than {MAX_NAME_LENGTH} characters")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise UnsafeUrl("host: has an empty label (two dots in a row, or a dot at the start)")
        if len(label) > MAX_LABEL_LENGTH:
            raise UnsafeUrl(f"host: has a label longer than {MAX_LABEL_LENGTH} characters")
        if not _LABEL.fullmatch(label):
            # e.g. a backslash, which other URL parsers read as a slash: another host than the one checked
            raise UnsafeUrl("host: must be letters, digits, dots and hyphens (- not first or last)")
    if _NUMBER.fullmatch(labels[-1]):
        # 2130706433 or 127.1: resolvers read a name ending in a number as an address in a short form.
        raise UnsafeUrl("host: ends in a number, so it is no name; write an address as four dotted numbers")


async def resolve_checked(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses ``host`` resolves to, refused (:class:`NotPublicAddress`) if any one is not public.

    Any, not all: a name that also resolves to an internal address must not be reachable by retrying.
    Raises :class:`UnresolvedHost` when the name does not resolve.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnresolvedHost(f"host {host} does not resolve ({exc.strerror})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnresolvedHost(f"host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            if refusal := _not_public(ipaddress.ip_address(address)):
                raise NotPublicAddress(f"host {host} resolves to {address}, which is {refusal}")
    return addresses


@dataclass(frozen=True)
class CheckedUrl:
    """A URL :func:`check_url` passed, with the addresses of its host :func:`resolve_checked` passed."""

    url: str
    parts: SplitResult
    port: int
    addresses: tuple[str, ...]


async def check_target(
    url: str,
    *,
    allow_private: bool,
    allowed_hosts: Collection[str] = (),
    allowed_ports: Collection[int] = (),
) -> CheckedUrl:
    """:func:`check_url` then :func:`resolve_checked`: everything to check before a request to ``url``."""
    parts = check_url(
        url, allow_private=allow_private, allowed_hosts=allowed_hosts, allowed_ports=allowed_ports
    )
    port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
    addresses = await resolve_checked(parts.hostname or "", port, allow_private=allow_private)
    return CheckedUrl(url, parts, port, tuple(addresses))


@contextlib.asynccontextmanager
async def pinned_stream(
    http: httpx.AsyncClient,
    method: str,
    target: CheckedUrl,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> AsyncIterator[httpx.Response]:
    """Send a request to ``target`` at one of the addresses that were checked, not one DNS gives later.

    The addresses are tried in order until one connects.  The Host header and TLS (SNI and the
    certificate check) still use the URL's host name.  Redirects are never followed, and the
    connection is closed after the answer: a pooled connection, verified for another host name on the
    same address, must not carry this request.  The answer's body is left to the caller to read; the
    client's timeouts apply (callers keep an overall deadline with ``asyncio.timeout``).
    """
    parts = target.parts
    extensions = {"sni_hostname": parts.hostname} if parts.scheme.lower() == "https" else {}
    request_headers = {**(headers or {}), "Host": parts.netloc, "Connection": "close"}
    refused: httpx.ConnectError | None = None
    for address in target.addresses:
        literal = f"[{address}]" if ":" in address else address
        url = urlunsplit((parts.scheme, f"{literal}:{target.port}", parts.path or "/", parts.query, ""))
        request = http.build_request(
            method, url, headers=request_headers, content=content, extensions=extensions
        )
        try:
            response = await http.send(request, stream=True, follow_redirects=False)
        except httpx.ConnectError as exc:
            refused = exc
            continue
        try:
            yield response
        finally:
            await response.aclose()
        return
    assert refused is not None  # resolve_checked never returns no address
    raise refused


def _not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` is not a public one (e.g. "loopback"), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        for inner in _carried_ipv4(address):
            if refusal := _not_public(inner):
                return f"{refusal} (IPv4 {inner} inside)"
        if address in _LOCAL_NAT64:
            return "a local-use NAT64 address"
    for flag in _NOT_PUBLIC:
        if getattr(address, flag):
            return flag.removeprefix("is_").replace("_", "-")
    if not address.is_global:  # e.g. 100.64.0.0/10, shared address space used inside clouds
        return "not a public address"
    return None


def _carried_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses that packets to ``address`` are relayed or translated to, read by each form's RFC.

    ``ipaddress`` alone will not do: which of these forms its flags call private differs between Python
    versions (none calls 6to4 private).
    """
    if address.teredo is not None:
        return list(address.teredo)  # the server, and the client (ipaddress undoes its obfuscation)
    if address.sixtofour is not None:
        return [address.sixtofour]
    if int(address) > 1 and any(address in prefix for prefix in _LOW_32_BITS_IPV4):  # not :: nor ::1
        return [ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)]
    return []
