"""Fetching the CSV a batch check names by ``csvUrl``, with CarsXE's error codes for every way it can fail.

Every hop (the URL and each redirect, followed by hand) is checked as the first one is: https, a public
address (see :mod:`recalls.shared.url_safety`), a host in ``csv_url_allowed_hosts`` when that is set; and the
request goes to the address that was checked.  The size cap counts the bytes as they come off the wire,
and a body the server compressed is refused unread (``Accept-Encoding: identity`` is only a request, and
a decoder inflates a chunk a thousandfold before any cap could see it).  The timeout covers the whole
fetch, redirects included.

What the caller learns is what its URL and the server's answers say (a malformed URL, a status, a type,
a size), never what the network did: a name that does not resolve or resolves to an internal address,
a refused connection, a TLS failure, an encoding refused are all one :data:`FETCH_FAILED`, so a csvUrl
cannot map the network around the API; the log says which.  Messages never quote the URL: a signed
link's query is a credential.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urljoin, urlsplit

import httpx

from recalls.shared.settings import Settings
from recalls.shared.url_safety import (
    CheckedUrl,
    HostNotAllowed,
    NotPublicAddress,
    UnresolvedHost,
    UnsafeUrl,
    check_target,
    pinned_stream,
)

log = logging.getLogger(__name__)

INVALID = "BULK_RECALL_BATCH_CSV_URL_INVALID"
HOST_NOT_ALLOWED = "BULK_RECALL_BATCH_CSV_URL_HOST_NOT_ALLOWED"
TOO_LARGE = "BULK_RECALL_BATCH_CSV_URL_TOO_LARGE"
NOT_TEXT = "BULK_RECALL_BATCH_CSV_URL_NOT_TEXT"
HTTP_ERROR = "BULK_RECALL_BATCH_CSV_URL_HTTP_ERROR"
REDIRECT_ERROR = "BULK_RECALL_BATCH_CSV_URL_REDIRECT_ERROR"
TIMEOUT = "BULK_RECALL_BATCH_CSV_URL_TIMEOUT"
FETCH_FAILED = "BULK_RECALL_BATCH_CSV_URL_FETCH_FAILED"

NOT_FETCHED = "csvUrl: could not be fetched"
_FOLLOWED = frozenset({301, 302, 303, 307, 308})
_TEXT_TYPES = ("text/", "application/csv")
_HEADERS = {
    "Accept": "text/csv, text/plain;q=0.9, text/*;q=0.8",
    "Accept-Encoding": "identity",  # a server may compress all the same: such a body is refused
    "User-Agent": "recalls-fleet-batch-api",
}


class CsvUrlError(Exception):
    """The CSV could not be had: ``code`` is CarsXE's error name, ``status`` the HTTP status to answer."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _not_fetched(url: str, why: str) -> CsvUrlError:
    """The one error for every failure the network caused; ``why`` goes to the log, with the host only."""
    log.info("csvUrl not fetched: %s", why, extra={"host": urlsplit(url).hostname})
    return CsvUrlError(FETCH_FAILED, NOT_FETCHED, 502)


async def fetch_csv(url: str, settings: Settings) -> str:
    """The text at ``url`` (UTF-8, a BOM dropped); raises :class:`CsvUrlError` naming the reason."""
    deadline = settings.csv_url_timeout
    try:
        async with asyncio.timeout(deadline):
            target = await check_hop(url, settings)
            # Loading the CA bundle takes a few tens of milliseconds of CPU: not on the event loop.  It
            # honours SSL_CERT_FILE; the client ignores proxy variables (a proxy would pick the address).
            ssl_context = await asyncio.to_thread(httpx.create_ssl_context)
            async with httpx.AsyncClient(
                verify=ssl_context,
                trust_env=False,
                follow_redirects=False,
                timeout=deadline,
                headers=_HEADERS,
            ) as http:
                return await _follow(http, target, settings)
    except (TimeoutError, httpx.TimeoutException):
        # Said apart from the other failures: the caller sees the time it took anyway.
        raise CsvUrlError(TIMEOUT, f"csvUrl: not fetched within {deadline:g} s") from None
    except httpx.HTTPError as exc:
        # httpx's messages name the address and the socket error, never the URL's path or query.
        raise _not_fetched(url, _describe(exc)) from None


async def check_hop(url: str, settings: Settings, *, redirected_from: str | None = None) -> CheckedUrl:
    """Check one hop: ``url``, or the Location (maybe relative) that ``redirected_from`` answered with."""
    if redirected_from is not None:
        url = urljoin(redirected_from, url)
    where = "csvUrl" if redirected_from is None else "csvUrl: redirect"
    try:
        return await check_target(
            url,
            allow_private=settings.allow_private_urls,
            allowed_hosts=settings.csv_url_allowed_hosts,
            allowed_ports=settings.allowed_ports,
        )
    except NotPublicAddress as exc:
        raise _not_fetched(url, f"{where}: {exc.reason}") from None
    except UnsafeUrl as exc:
        if redirected_from is not None:
            raise CsvUrlError(REDIRECT_ERROR, f"{where}: {exc.reason}") from None
        code = HOST_NOT_ALLOWED if isinstance(exc, HostNotAllowed) else INVALID
        raise CsvUrlError(code, f"{where}: {exc.reason}") from None
    except UnresolvedHost as exc:
        raise _not_fetched(url, f"{where}: {exc}") from None


async def _follow(http: httpx.AsyncClient, target: CheckedUrl, settings: Settings) -> str:
    redirects = 0
    while True:
        async with pinned_stream(http, "GET", target) as response:
            status = response.status_code
            if 300 <= status < 400:
                location = response.headers.get("location")
                if status not in _FOLLOWED or not location:
                    raise CsvUrlError(REDIRECT_ERROR, f"csvUrl: HTTP {status} without a redirect to follow")
                if redirects == settings.csv_url_max_redirects:
                    message = f"csvUrl: more than {settings.csv_url_max_redirects} redirects"
                    raise CsvUrlError(REDIRECT_ERROR, message)
                redirects += 1
                target = await check_hop(location, settings, redirected_from=target.url)
                continue
            if not 200 <= status < 300:
                raise CsvUrlError(HTTP_ERROR, f"csvUrl: the server answered HTTP {status}")
            encoding = response.headers.get("content-encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                raise _not_fetched(target.url, f"the body came with Content-Encoding {encoding[:40]}")
            return await _read_text(response, settings.csv_url_max_bytes)


async def _read_text(response: httpx.Response, limit: int) -> str:
    """The body as text; read raw (the encoding is identity), so the cap counts the bytes received."""
    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not media_type.startswith(_TEXT_TYPES):
        shown = media_type[:100] or "none"
        raise CsvUrlError(NOT_TEXT, f"csvUrl: content type {shown}, not text/* or application/csv")
    too_large = CsvUrlError(TOO_LARGE, f"csvUrl: larger than {limit} bytes")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvUrlError(NOT_TEXT, "csvUrl: the body is not UTF-8 text") from None
    if "\x00" in text:
        raise CsvUrlError(NOT_TEXT, "csvUrl: the body holds NUL characters, so it is not text")
    return text


def _describe(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
