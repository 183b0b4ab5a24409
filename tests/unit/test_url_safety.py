"""recalls.shared.url_safety's checks that need no network: host names, ports, and IPv6 addresses that
carry an IPv4 one, as a submit meets them and again as a connection does (a literal address resolves to
itself).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest

from recalls.shared.url_safety import HostNotAllowed, NotPublicAddress, UnsafeUrl, check_url, resolve_checked

LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("a..example.com", "empty label"),
        (".example.com", "empty label"),
        ("example.com..", "empty label"),
        ("a" * 64 + ".example.com", "label longer than 63 characters"),
        (LONGEST_NAME + "d", "longer than 253 characters"),
        ("-a.example.com", "letters, digits, dots and hyphens"),
        ("a-.example.com", "letters, digits, dots and hyphens"),
        ("a!b.example.com", "letters, digits, dots and hyphens"),
        ("2130706433", "ends in a number"),  # 127.0.0.1 as resolvers read it
        ("127.1", "ends in a number"),
        ("0x7f000001", "ends in a number"),
        ("files.example.0x7f", "ends in a number"),
    ],
)
def test_a_host_name_dns_would_not_take_as_written_is_refused(host: str, reason: str) -> None:
    for allow_private in (False, True):  # allow_private lifts the address checks, not this one
        with pytest.raises(UnsafeUrl) as caught:
            check_url(f"https://{host}/vins.csv", allow_private=allow_private)
        assert caught.value.reason.startswith("host: ")
        assert reason in caught.value.reason
        assert not isinstance(caught.value, HostNotAllowed)


@pytest.mark.parametrize(
    "host",
    [
        "files.example.com",
        "files.example.com.",  # fully qualified
        "my-bucket.s3.eu-west-2.amazonaws.com",
        "a_b.example.com",
        "a" * 63 + ".example.com",
        LONGEST_NAME,
        "xn--bcher-kva.example",
        "123.example.com",
    ],
)
def test_a_host_name_dns_takes_passes(host: str) -> None:
    assert check_url(f"https://{host}/vins.csv", allow_private=False).hostname == host


@pytest.mark.parametrize("port", [8443, 80, 22, 6379, 1])
def test_a_port_other_than_443_is_refused_unless_allowed(port: int) -> None:
    url = f"https://files.example.com:{port}/vins.csv"
    with pytest.raises(UnsafeUrl) as caught:
        check_url(url, allow_private=False)
    assert caught.value.reason == f"port: {port} is not allowed (allowed: 443)"
    with pytest.raises(UnsafeUrl) as caught:
        check_url(url, allow_private=False, allowed_ports=(9443, 8080))
    assert caught.value.reason == f"port: {port} is not allowed (allowed: 443, 8080, 9443)"
    assert check_url(url, allow_private=False, allowed_ports=(port,)).port == port
    with pytest.raises(UnsafeUrl, match=f"port: {port} is not allowed"):
        check_url(f"https://8.8.8.8:{port}/vins.csv", allow_private=False)  # an address: the same rule


def test_port_443_passes_written_or_not_and_allow_private_allows_any() -> None:
    assert check_url("https://files.example.com/vins.csv", allow_private=False).port is None
    assert check_url("https://files.example.com:443/vins.csv", allow_private=False).port == 443
    assert check_url("http://127.0.0.1:6379/vins.csv", allow_private=True).port == 6379
    with pytest.raises(UnsafeUrl, match="port: must not be 0"):
        check_url("http://127.0.0.1:0/vins.csv", allow_private=True)


# The IPv6 forms that carry an IPv4 address a relay or translator sends the packets on to, each built
# from its RFC's layout rather than from what ipaddress makes of it (which differs between versions).
PUBLIC_V4 = IPv4Address("8.8.8.8")


def teredo(server: IPv4Address, client: IPv4Address) -> IPv6Address:
    """2001::/32, the server's IPv4 address, flags and port, and the client's with its bits flipped."""
    return IPv6Address(0x2001_0000 << 96 | int(server) << 64 | 0xFFFF << 32 | ~int(client) & 0xFFFF_FFFF)


def low_32_bits(prefix: str) -> Callable[[IPv4Address], IPv6Address]:
    """The form that writes the IPv4 address as the last 32 bits after ``prefix``."""
    return lambda v4: IPv6Address(int(IPv6Address(prefix)) | int(v4))


EMBEDDINGS: dict[str, Callable[[IPv4Address], IPv6Address]] = {
    "IPv4-mapped ::ffff:a.b.c.d": low_32_bits("::ffff:0:0"),
    "IPv4-compatible ::a.b.c.d": low_32_bits("::"),
    "IPv4-translated ::ffff:0:a.b.c.d": low_32_bits("::ffff:0:0:0"),
    "6to4 2002::/16": lambda v4: IPv6Address(0x2002 << 112 | int(v4) << 80 | 1),
    "Teredo server": lambda v4: teredo(v4, PUBLIC_V4),
    "Teredo client (obfuscated)": lambda v4: teredo(PUBLIC_V4, v4),
    "NAT64 64:ff9b::/96": low_32_bits("64:ff9b::"),
    "NAT64 local-use 64:ff9b:1::/48": low_32_bits("64:ff9b:1::"),
}
NOT_PUBLIC_V4 = [
    "127.0.0.1",
    "10.1.2.3",
    "192.168.0.10",
    "169.254.169.254",
    "100.100.100.200",  # shared address space, used inside clouds
    "0.1.2.3",  # "this network" (0.0.0.0 itself would make the compatible form ::, not one carrying it)
    "240.0.0.1",
]


@pytest.mark.parametrize("v4", NOT_PUBLIC_V4)
@pytest.mark.parametrize("form", EMBEDDINGS)
async def test_an_ipv6_address_carrying_a_private_ipv4_is_refused(form: str, v4: str) -> None:
    """Refused for the IPv4 address inside, named in the reason, whatever ipaddress thinks of the IPv6."""
    address = EMBEDDINGS[form](IPv4Address(v4))
    with pytest.raises(HostNotAllowed) as caught:
        check_url(f"https://[{address}]/vins.csv", allow_private=False)
    assert caught.value.reason.endswith(f"(IPv4 {v4} inside)")
    with pytest.raises(NotPublicAddress) as resolved:  # at connect time: what a name resolved to
        await resolve_checked(str(address), 443, allow_private=False)
    assert resolved.value.reason.endswith(f"(IPv4 {v4} inside)")


def test_the_refusal_says_what_the_ipv4_inside_is() -> None:
    with pytest.raises(HostNotAllowed, match=r"is loopback \(IPv4 127\.0\.0\.1 inside\)"):
        check_url("https://[2002:7f00:1::1]/vins.csv", allow_private=False)


def test_an_address_of_local_use_nat64_is_refused_whatever_it_carries() -> None:
    with pytest.raises(HostNotAllowed, match="local-use NAT64"):
        check_url("https://[64:ff9b:1:0:8:800:808:0]/vins.csv", allow_private=False)


def test_a_6to4_address_of_a_public_ipv4_passes() -> None:
    address = EMBEDDINGS["6to4 2002::/16"](PUBLIC_V4)
    assert check_url(f"https://[{address}]/vins.csv", allow_private=False).hostname == str(address)
