"""The broker's addresses: ``RECALLS_AMQP_URL`` names one RabbitMQ node, or a cluster's nodes, by commas.

``amqp://recalls-worker:pw@rabbit-1:5672/,amqp://recalls-worker:pw@rabbit-2:5672/`` lists two nodes of one
cluster.  Every connection the fleet makes (:func:`recalls.shared.amqp.connect`) starts at the first node
that answers and, once connected, moves to the next node in turn whenever it loses the one it is on.

The nodes of a cluster share their users and virtual hosts, so every entry must name the same user and
vhost: a list that mixes them is two brokers, not one, and is refused.  A comma inside a password is
written ``%2C``, as any reserved character of a URL.  Nothing here ever shows a password: errors name an
entry by its position and host, :meth:`BrokerUrls.masked` replaces each password with ``***``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit, urlunsplit

SCHEMES = ("amqp", "amqps")
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
# aiormq's own default (60 s) notices a hung connection only after about three minutes; with 10 s it
# takes about half a minute.  A URL that names its own ``heartbeat`` keeps it.
DEFAULT_HEARTBEAT_S = 10


class BrokerUrlError(ValueError):
    """``RECALLS_AMQP_URL`` is not one amqp(s) URL or a list of them; the text never holds the value."""


@dataclass(frozen=True)
class BrokerUrls:
    """The URLs of one broker's nodes, in the order they are tried; parsed by :meth:`parse`."""

    urls: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> BrokerUrls:
        """The URLs of ``text``; :class:`BrokerUrlError` saying which entry is wrong and why."""
        entries = [entry.strip() for entry in text.split(",")]
        if not any(entries):
            raise BrokerUrlError("must be an amqp:// or amqps:// URL, or several separated by commas")
        parts = [_checked(entry, index, len(entries)) for index, entry in enumerate(entries, 1)]
        first = parts[0]
        for index, other in enumerate(parts[1:], 2):
            if (other.username, _vhost(other)) != (first.username, _vhost(first)):
                raise BrokerUrlError(
                    f"entry {index}: names another user or virtual host than entry 1 (the nodes of one "
                    "cluster share both)"
                )
        return cls(tuple(entries))

    @property
    def addresses(self) -> str:
        """``host:port`` of every node, comma-separated: safe to print."""
        return ", ".join(address(url) for url in self.urls)

    @property
    def user(self) -> str | None:
        """The broker user the connections log in as (the same on every node); see :func:`broker_user`."""
        return broker_user(self.urls[0])

    def masked(self) -> str:
        """The list with every password replaced by ``***``: safe to log or print."""
        return ",".join(masked_url(url) for url in self.urls)

    def redact(self, text: str) -> str:
        """``text`` with every password of the list masked, for messages quoting a library's error."""
        for password in self.passwords():
            text = text.replace(password, "***")
        return text

    def passwords(self) -> list[str]:
        """Each password, raw and decoded, longest first (so that no part of one is left showing)."""
        found = {form for url in self.urls if (p := urlsplit(url).password) for form in (p, unquote(p))}
        return sorted(found, key=len, reverse=True)

    def with_heartbeat(self) -> tuple[str, ...]:
        """Each URL with the default heartbeat unless it sets one."""
        return tuple(with_heartbeat(url) for url in self.urls)


def address(url: str) -> str:
    """``host:port`` of the node ``url`` names, safe to print."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 5672)
    except ValueError:  # a port that is not a number: show the host alone
        return parts.hostname or "?"
    return f"{parts.hostname or '?'}:{port}"


def with_heartbeat(url: str) -> str:
    """``url`` with the default heartbeat unless it sets one."""
    parts = urlsplit(url)
    if "heartbeat" in parse_qs(parts.query):
        return url
    query = "&".join(filter(None, [parts.query, f"heartbeat={DEFAULT_HEARTBEAT_S}"]))
    return urlunsplit(parts._replace(query=query))


def broker_user(url: str) -> str | None:
    """The broker user a connection to ``url`` logs in as: the URL's user, or aiormq's default, guest.

    None with ``auth=external`` (TLS client certificates): then the broker, not the URL, names the user.
    """
    parts = urlsplit(url)
    if parse_qs(parts.query).get("auth", ["plain"])[-1].upper() == "EXTERNAL":
        return None
    return unquote(parts.username) if parts.username else "guest"


def masked_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: safe to log or print."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<not a URL>"
    if password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}").geturl()


def _checked(entry: str, index: int, count: int) -> SplitResult:
    which = f"entry {index}: " if count > 1 else ""  # one URL: the reason alone, as for any setting
    try:
        parts = urlsplit(entry)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise BrokerUrlError(f"{which}must be an amqp:// or amqps:// URL with a valid port") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise BrokerUrlError(f"{which}must be an amqp:// or amqps:// URL naming a host")
    return parts


def _vhost(parts: SplitResult) -> str:
    return unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
