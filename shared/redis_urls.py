"""What ``RECALLS_REDIS_URL`` may say: one Redis (``redis://``, ``rediss://``) or a Redis watched by Sentinel
(``redis+sentinel://``, see :mod:`recalls.shared.redis_client`).  Parsed here without redis-py, so that the
settings check the URL at load in every install, the publisher's included.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


class RedisUrlError(ValueError):
    """``RECALLS_REDIS_URL`` cannot be used; the text never holds the value."""


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_username: str | None
    sentinel_password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        rest = url.removeprefix(f"{SENTINEL_SCHEME}://")
        location, _, query = rest.partition("?")
        authority, _, path = location.partition("/")
        credentials, _, hosts = authority.rpartition("@")
        username, _, password = credentials.partition(":") if credentials else ("", "", "")
        sentinels = tuple(_host_port(entry) for entry in hosts.split(","))
        service, _, db = path.partition("/")
        if not service:
            raise RedisUrlError("a redis+sentinel:// URL must name the service its Sentinels monitor")
        if db and not db.isdigit():
            raise RedisUrlError("a redis+sentinel:// URL's database must be a number")
        options = {name: values[-1] for name, values in parse_qs(query).items()}
        return cls(
            sentinels,
            unquote(service),
            int(db or 0),
            unquote(username) or None,
            unquote(password) or None,
            options.get("sentinel_username"),
            options.get("sentinel_password"),
        )


def check_redis_url(url: str) -> None:
    """Raise :class:`RedisUrlError` when ``url`` is neither a Redis URL nor a Sentinel URL."""
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        SentinelUrl.parse(url)
        return
    if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
        raise RedisUrlError("must be a redis://, rediss:// or redis+sentinel:// URL")


def redis_passwords(url: str) -> list[str]:
    """The passwords ``url`` holds (Redis's, and the Sentinels' of a Sentinel URL), to keep out of text."""
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        parsed = SentinelUrl.parse(url)
        found = [parsed.password, parsed.sentinel_password]
    else:
        password = urlsplit(url).password
        found = [password, unquote(password) if password else None]
    return [password for password in found if password]


def _host_port(entry: str) -> tuple[str, int]:
    host, _, port = entry.strip().rpartition(":") if ":" in entry else (entry.strip(), "", "")
    if not host:
        raise RedisUrlError("a redis+sentinel:// URL must list its Sentinels as host:port, comma-separated")
    if port and not port.isdigit():
        raise RedisUrlError("a Sentinel's port must be a number")
    return host, int(port or DEFAULT_SENTINEL_PORT)
