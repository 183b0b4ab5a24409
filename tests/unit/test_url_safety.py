"""shared.url_safety's checks that need no network: host names and ports, as a submit meets them."""

from __future__ import annotations

import pytest

from shared.url_safety import HostNotAllowed, UnsafeUrl, check_url

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
