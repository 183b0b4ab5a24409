"""csvUrl fetching and the URL checks behind it, against a real HTTP server on loopback started by each test.

The server is on loopback, so the fetches that reach it run with ``allow_private_urls``; the refusals of
private addresses run without it and need no server.  No public server is reachable here, so a redirect
to a private address is shown on the hop check itself (the same check every redirect goes through).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from recalls.producers.csv_url import (
    FETCH_FAILED,
    HOST_NOT_ALLOWED,
    HTTP_ERROR,
    INVALID,
    NOT_TEXT,
    REDIRECT_ERROR,
    TIMEOUT,
    TOO_LARGE,
    CsvUrlError,
    check_hop,
    fetch_csv,
)
from recalls.shared.settings import Settings, load_settings
from recalls.shared.url_safety import HostNotAllowed, UnsafeUrl, check_url, resolve_checked
from tests.support.aiohttp_app import serving
from tests.support.certificates import self_signed

pytestmark = pytest.mark.integration

CSV = "vin\nSALGA2EV5HA123456\nWDD2050041R123456\n"
MAX_BYTES = 1000
NOT_FETCHED = "csvUrl: could not be fetched"
BOMB_BYTES = 100_000_000  # what the gzip bomb inflates to; it is about 100 KB on the wire
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def private(**overrides: Any) -> Settings:
    """Settings that let a fetch reach the test's server on loopback."""
    return load_settings(**{"allow_private_urls": True, "csv_url_max_bytes": MAX_BYTES, **overrides})


def public(**overrides: Any) -> Settings:
    return load_settings(allow_private_urls=False, **overrides)


def text(body: str | bytes, content_type: str = "text/csv") -> Handler:
    """A handler that answers ``body`` as ``content_type``."""

    async def handler(request: web.Request) -> web.Response:
        raw = body.encode() if isinstance(body, str) else body
        return web.Response(body=raw, headers={"Content-Type": content_type})

    return handler


def gzip_bomb(size: int) -> bytes:
    """``size`` newlines, gzipped: made a megabyte at a time, so making it costs no memory to speak of."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    megabyte = b"\n" * 1_000_000
    return b"".join(packer.compress(megabyte) for _ in range(size // len(megabyte))) + packer.flush()


def encoded(body: bytes, encoding: str) -> Handler:
    """A handler that answers ``body`` as text/csv with the Content-Encoding ``encoding``, sent as it is."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": "text/csv", "Content-Encoding": encoding})

    return handler


def peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM) since it was last reset, in kB."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:", 1)[1].split()[0])


def reset_peak_rss() -> None:
    """Make the peak resident memory the current one (Linux: 5 in clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


async def endless(request: web.Request) -> web.StreamResponse:
    """A body without Content-Length that never ends: only a reader that stops can finish."""
    response = web.StreamResponse(headers={"Content-Type": "text/csv"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        while True:
            await response.write(b"SALGA2EV5HA123456\n" * 100)
    return response


@pytest.fixture
async def files() -> AsyncIterator[str]:
    """A file server with a route for each way a csvUrl can go wrong; yields its base URL."""
    released = asyncio.Event()  # set only once the test is over, so the server can stop at once
    base = ""

    async def redirect(request: web.Request) -> web.Response:
        hops = int(request.match_info["hops"])
        location = "../vins.csv" if hops == 0 else f"{hops - 1}"  # relative, as servers often answer
        raise web.HTTPFound(location) if hops else web.HTTPMovedPermanently(location)

    async def hang(request: web.Request) -> web.Response:
        await released.wait()  # the fetch's deadline passes first
        return web.Response(text=CSV)

    async def host(request: web.Request) -> web.Response:
        return web.Response(text=request.headers["Host"], content_type="text/plain")

    async def forbidden(request: web.Request) -> web.Response:
        return web.Response(status=403, text="Request has expired")

    async def to(request: web.Request) -> web.Response:
        target = {"ftp": "ftp://127.0.0.1/vins.csv", "localhost": base.replace("127.0.0.1", "localhost")}
        raise web.HTTPFound(target[request.match_info["where"]])

    async def no_location(request: web.Request) -> web.Response:
        return web.Response(status=302)

    app = web.Application()
    app.router.add_get("/vins.csv", text(CSV))
    app.router.add_get("/bom.csv", text("\ufeff" + CSV, "text/plain; charset=utf-8"))
    app.router.add_get("/app.csv", text(CSV, "application/csv"))
    app.router.add_get("/redirect/{hops}", redirect)
    app.router.add_get("/to/{where}", to)
    app.router.add_get("/no-location", no_location)
    app.router.add_get("/binary", text(b"\x89PNG\r\n", "application/octet-stream"))
    app.router.add_get("/latin1.csv", text("vin\nSALGA2EV5HA123456 café\n".encode("latin-1")))
    app.router.add_get("/nul.csv", text(b"vin\x00\n"))
    app.router.add_get("/big.csv", text(b"x" * (MAX_BYTES + 1)))
    app.router.add_get("/exact.csv", text(b"x" * MAX_BYTES))
    app.router.add_get("/endless.csv", endless)
    app.router.add_get("/forbidden.csv", forbidden)
    app.router.add_get("/hang.csv", hang)
    app.router.add_get("/host", host)
    app.router.add_get("/identity.csv", encoded(CSV.encode(), "identity"))
    async with serving(app) as url:
        base = url
        try:
            yield url
        finally:
            released.set()


async def refused(url: str, settings: Settings) -> CsvUrlError:
    with pytest.raises(CsvUrlError) as caught:
        await fetch_csv(url, settings)
    return caught.value


# --- the URL checks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://files.example.com/vins.csv",
        "HTTPS://Files.Example.com:443/a/b.csv?X-Amz-Signature=abc#frag",
        "https://8.8.8.8/vins.csv",
        "https://[2001:4860:4860::8888]/vins.csv",
    ],
)
def test_check_url_passes_public_https_urls(url: str) -> None:
    parts = check_url(url, allow_private=False)
    assert parts.hostname is not None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://files.example.com/vins.csv", "must be an https URL"),
        ("ftp://files.example.com/vins.csv", "must be an https URL"),
        ("files.example.com/vins.csv", "must be an https URL"),
        ("https:///vins.csv", "has no host"),
        ("https://user:hunter2@files.example.com/vins.csv", "user name or password"),
        ("https://files.example.com@10.0.0.1/vins.csv", "user name or password"),
        ("https://files.example.com:99999/vins.csv", "bad host or port"),
        ("https://[::1/vins.csv", "bad host or port"),
        ("https://files.example.com/a b.csv", "spaces or control characters"),
        ("https://files.example.com\\evil.example/vins.csv", "letters, digits, dots and hyphens"),
        ("https://bücher.example/vins.csv", "must be ASCII"),
        ("https://files.example.com/" + "a" * 3000, "longer than 2048"),
    ],
)
def test_check_url_refuses_malformed_urls(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url(url, allow_private=False)
    assert reason in caught.value.reason
    assert not isinstance(caught.value, HostNotAllowed)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "what"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("100.100.100.200", "not a public address"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address refused, not one bound)
        ("224.0.0.1", "multicast"),
        ("[::1]", "loopback"),
        ("[fe80::1]", "link-local"),
        ("[fd00::5]", "private"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:a9fe:a9fe]", "link-local"),
    ],
)
def test_check_url_refuses_non_public_addresses(host: str, what: str) -> None:
    with pytest.raises(HostNotAllowed) as caught:
        check_url(f"https://{host}/vins.csv", allow_private=False)
    assert what in caught.value.reason
    # allow_private lifts the address check and allows http, nothing else
    assert check_url(f"http://{host}/vins.csv", allow_private=True).scheme == "http"
    with pytest.raises(UnsafeUrl, match="user name"):
        check_url(f"http://user@{host}/vins.csv", allow_private=True)


def test_check_url_keeps_to_the_allowed_hosts() -> None:
    allowed = ("Files.Example.com", "storage.example.net.")
    assert check_url("https://files.example.com/a.csv", allow_private=False, allowed_hosts=allowed)
    assert check_url("https://storage.example.net/a.csv", allow_private=False, allowed_hosts=allowed)
    with pytest.raises(HostNotAllowed, match="not one of the allowed hosts"):
        check_url("https://evil.example.com/a.csv", allow_private=False, allowed_hosts=allowed)


async def test_resolve_checked_refuses_a_name_of_a_loopback_address() -> None:
    with pytest.raises(HostNotAllowed, match=r"resolves to 127\.0\.0\.1, which is loopback"):
        await resolve_checked("localhost", 443, allow_private=False)
    assert await resolve_checked("localhost", 443, allow_private=True) == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://files.example.com/vins.csv", INVALID),
        ("https://user:hunter2@files.example.com/vins.csv", INVALID),
        ("https://127.0.0.1/vins.csv", HOST_NOT_ALLOWED),
        ("https://10.0.0.8/vins.csv", HOST_NOT_ALLOWED),
        ("https://169.254.169.254/latest/meta-data/", HOST_NOT_ALLOWED),
        ("https://[::1]/vins.csv", HOST_NOT_ALLOWED),
        ("https://2130706433/vins.csv", INVALID),  # 127.0.0.1 written as a number
        ("https://files.example.com:6379/vins.csv", INVALID),  # a port not allowed
    ],
)
async def test_fetch_refuses_unsafe_urls_before_connecting(url: str, code: str) -> None:
    error = await refused(url, public())
    assert (error.code, error.status) == (code, 400)
    assert error.message.startswith("csvUrl: ")
    assert "hunter2" not in error.message


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/vins.csv",  # a name of an internal address: refused once resolved
        "https://nothing.invalid/vins.csv",  # a name that does not resolve
    ],
)
async def test_what_dns_answers_is_not_told_apart(url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Internal or unknown, a name fails alike: the answer cannot tell which internal names exist."""
    caplog.set_level(logging.INFO)
    error = await refused(url, public())
    assert (error.code, error.status, error.message) == (FETCH_FAILED, 502, NOT_FETCHED)
    assert "resolve" in caplog.text  # the operator's log says which


async def test_a_redirect_to_a_private_address_is_refused() -> None:
    settings = public()
    source = "https://files.example.com/exports/vins.csv"
    for location, reason in [
        ("https://10.0.0.7/vins.csv", "host 10.0.0.7 is private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://files.example.com/vins.csv", "must be an https URL"),
    ]:
        with pytest.raises(CsvUrlError) as caught:
            await check_hop(location, settings, redirected_from=source)
        assert caught.value.code == REDIRECT_ERROR
        assert caught.value.message.startswith("csvUrl: redirect: ")
        assert reason in caught.value.message
    with pytest.raises(CsvUrlError) as caught:  # a name of an internal address, as the first hop's
        await check_hop("//localhost/vins.csv", settings, redirected_from=source)
    assert (caught.value.code, caught.value.message) == (FETCH_FAILED, NOT_FETCHED)


async def test_a_relative_redirect_is_resolved_against_the_url_that_answered_it() -> None:
    hop = await check_hop("../c.csv", private(), redirected_from="http://127.0.0.1:8000/a/b/c.csv?sig=1")
    assert hop.url == "http://127.0.0.1:8000/a/c.csv"
    assert (hop.port, hop.addresses) == (8000, ("127.0.0.1",))


# --- fetching from a real server ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/vins.csv", "/bom.csv", "/app.csv", "/redirect/2"])
async def test_fetch_returns_the_text(files: str, path: str) -> None:
    assert await fetch_csv(files + path, private()) == CSV


async def test_fetch_sends_the_urls_own_host_name(files: str) -> None:
    url = files.replace("127.0.0.1", "localhost")
    assert await fetch_csv(f"{url}/host", private()) == url.removeprefix("http://")


async def test_fetch_keeps_to_the_allowed_hosts_on_every_hop(files: str) -> None:
    settings = private(csv_url_allowed_hosts=("127.0.0.1",))
    assert await fetch_csv(f"{files}/vins.csv", settings) == CSV
    error = await refused(f"{files}/to/localhost", settings)
    assert error.code == REDIRECT_ERROR
    assert "host localhost is not one of the allowed hosts" in error.message
    error = await refused(f"{files}/vins.csv", private(csv_url_allowed_hosts=("files.example.com",)))
    assert error.code == HOST_NOT_ALLOWED


async def test_too_many_redirects(files: str) -> None:
    error = await refused(f"{files}/redirect/3", private())  # four redirects
    assert (error.code, error.message) == (REDIRECT_ERROR, "csvUrl: more than 3 redirects")
    error = await refused(f"{files}/redirect/0", private(csv_url_max_redirects=0))
    assert (error.code, error.message) == (REDIRECT_ERROR, "csvUrl: more than 0 redirects")


async def test_a_redirect_to_another_scheme_or_nowhere(files: str) -> None:
    error = await refused(f"{files}/to/ftp", private())
    assert (error.code, error.message) == (REDIRECT_ERROR, "csvUrl: redirect: must be an https or http URL")
    error = await refused(f"{files}/no-location", private())
    assert (error.code, error.message) == (REDIRECT_ERROR, "csvUrl: HTTP 302 without a redirect to follow")


@pytest.mark.parametrize("path", ["/big.csv", "/endless.csv"])
async def test_a_body_over_the_cap_is_refused(files: str, path: str) -> None:
    error = await refused(files + path, private())
    assert (error.code, error.status) == (TOO_LARGE, 400)
    assert error.message == f"csvUrl: larger than {MAX_BYTES} bytes"


async def test_a_compressed_body_is_refused_before_it_is_read() -> None:
    """A gzip bomb: 100 KB on the wire, 100 MB inflated; refused unread, so memory does not grow."""
    settings = private(csv_url_max_bytes=1_000_000)  # the compressed body is well under the cap
    app = web.Application()
    app.router.add_get("/bomb.csv", encoded(gzip_bomb(BOMB_BYTES), "gzip"))  # made before measuring
    async with serving(app) as url:
        reset_peak_rss()
        before = peak_rss_kb()
        error = await refused(f"{url}/bomb.csv", settings)
        grown = peak_rss_kb() - before
    assert grown < 20_000, f"the fetch's peak memory grew by {grown} kB"
    assert (error.code, error.status, error.message) == (FETCH_FAILED, 502, NOT_FETCHED)


async def test_a_body_sent_as_identity_is_fetched(files: str) -> None:
    assert await fetch_csv(f"{files}/identity.csv", private()) == CSV


async def test_a_body_at_the_cap_is_fetched(files: str) -> None:
    assert await fetch_csv(f"{files}/exact.csv", private()) == "x" * MAX_BYTES


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/binary", "content type application/octet-stream"),
        ("/latin1.csv", "not UTF-8 text"),
        ("/nul.csv", "NUL characters"),
    ],
)
async def test_a_body_that_is_not_text_is_refused(files: str, path: str, reason: str) -> None:
    error = await refused(files + path, private())
    assert error.code == NOT_TEXT
    assert reason in error.message


async def test_an_http_error_names_its_status_but_not_the_url(files: str) -> None:
    error = await refused(f"{files}/forbidden.csv?X-Amz-Signature=s3cr3tsig", private())
    assert (error.code, error.status) == (HTTP_ERROR, 400)
    assert error.message == "csvUrl: the server answered HTTP 403"


async def test_a_server_that_does_not_answer_in_time(files: str) -> None:
    error = await refused(f"{files}/hang.csv", private(csv_url_timeout=0.5))
    assert (error.code, error.status) == (TIMEOUT, 400)
    assert error.message == "csvUrl: not fetched within 0.5 s"


async def test_a_refused_connection_is_a_failed_fetch() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await refused(f"http://127.0.0.1:{port}/vins.csv", private())
    assert (error.code, error.status, error.message) == (FETCH_FAILED, 502, NOT_FETCHED)


async def test_tls_is_checked_against_the_urls_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection goes to the address that was checked, but the certificate must be the host name's."""
    caplog.set_level(logging.INFO)
    made = self_signed(tmp_path, "localhost")  # the host name only, no address
    cert, key = made.certfile, made.keyfile
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the fetch's only trusted certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/vins.csv", text(CSV))
    async with serving(app, tls) as url:
        assert await fetch_csv(f"{url.replace('127.0.0.1', 'localhost')}/vins.csv", private()) == CSV
        error = await refused(f"{url}/vins.csv", private())  # the certificate does not name 127.0.0.1
        assert (error.code, error.status, error.message) == (FETCH_FAILED, 502, NOT_FETCHED)
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text  # the operator's log says why
