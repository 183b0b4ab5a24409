"""libpq's TLS parameters in a PostgreSQL URL, turned into what asyncpg takes.

Operators write ``?sslmode=require`` or ``?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem`` as libpq
documents them; asyncpg takes neither as a keyword, so they are taken out of the URL here and handed
to it as its ``ssl`` argument.  ``verify-ca`` and ``verify-full`` check the server's certificate against
``sslrootcert`` (or the system's roots), ``verify-full`` its host name too; ``require`` encrypts without
checking, as libpq does when no root certificate is given.  ``sslcert``/``sslkey`` present a client
certificate.
"""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy.engine import URL

MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TLS_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


class TlsSettingError(ValueError):
    """A TLS parameter of the URL is unusable; the message names it and never holds the URL."""


def split_tls(url: URL) -> tuple[URL, dict[str, Any]]:
    """``url`` without libpq's TLS parameters, and the connect arguments that say the same to asyncpg."""
    given = {key: _one(url, key) for key in _TLS_KEYS if key in url.query}
    plain = url.difference_update_query(_TLS_KEYS)
    mode = given.get("sslmode")
    if mode is None:
        if len(given) > 0:
            raise TlsSettingError("sslmode: must be set with sslrootcert, sslcert or sslkey")
        return plain, {}
    if mode not in MODES:
        raise TlsSettingError(f"sslmode: must be one of {', '.join(MODES)}")
    if not mode.startswith("verify-"):
        if "sslrootcert" in given:
            raise TlsSettingError("sslrootcert: needs sslmode=verify-ca or verify-full")
        return plain, {"ssl": mode} if "sslcert" not in given else {"ssl": _unverified(given)}
    return plain, {"ssl": _verifying(given, check_host=mode == "verify-full")}


def _one(url: URL, key: str) -> str:
    value = url.query[key]
    if not isinstance(value, str):
        raise TlsSettingError(f"{key}: given more than once")
    return value


def _verifying(given: dict[str, str], *, check_host: bool) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=given.get("sslrootcert"))
    except (OSError, ssl.SSLError):
        raise TlsSettingError("sslrootcert: not a readable PEM file of certificates") from None
    context.check_hostname = check_host
    _client_certificate(context, given)
    return context


def _unverified(given: dict[str, str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # libpq's require: encrypted, the server not checked
    _client_certificate(context, given)
    return context


def _client_certificate(context: ssl.SSLContext, given: dict[str, str]) -> None:
    if "sslcert" not in given:
        if "sslkey" in given:
            raise TlsSettingError("sslkey: needs sslcert")
        return
    try:
        context.load_cert_chain(given["sslcert"], given.get("sslkey"))
    except (OSError, ssl.SSLError):
        raise TlsSettingError("sslcert: not a readable certificate and key") from None
