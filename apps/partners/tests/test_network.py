"""The network guard on its own: which addresses are internal, the trusted-target setting, and the
bounds of one exchange (deadline, size) against small servers on loopback."""

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.partners import network


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to classify, not to bind
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a9fe:a9fe::", "cloud metadata"),  # 6to4 of 169.254.169.254
        ("198.18.0.1", "private"),  # benchmarking
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
        ("64:ff9b::808:808", None),  # NAT64 of a public address
    ],
)
def test_address_kinds(address, kind):
    assert network.address_kind(ipaddress.ip_address(address)) == kind


def test_trusted_targets_are_names_domains_addresses_and_networks(settings):
    settings.NETWORK_TRUSTED_TARGETS = ["wms.corp.example", ".erp.example", "http://10.20.0.0/16", "[fd00::1]"]
    wms, erp, net, one = network.trusted_targets()

    assert [wms.names(host) for host in ("WMS.corp.example.", "x.wms.corp.example")] == [True, False]
    assert [erp.names(host) for host in ("erp.example", "a.b.erp.example", "evilerp.example")] == [True, True, False]
    assert [net.contains(ipaddress.ip_address(a)) for a in ("10.20.3.4", "10.21.0.1")] == [True, False]
    assert (net.http, one.http, one.contains(ipaddress.ip_address("fd00::1"))) == (True, False, True)


@pytest.mark.parametrize("entry", ["ftp://10.0.0.1", "10.0.0.1/8", "host:8080", "a b"])
def test_a_malformed_entry_is_named_by_the_system_check_and_trusts_nothing(settings, entry):
    settings.NETWORK_TRUSTED_TARGETS = ["10.0.0.0/8", entry]

    with pytest.raises(ImproperlyConfigured, match="NETWORK_TRUSTED_TARGETS"):
        network.trusted_targets()
    [error] = network.check_trusted_targets()
    assert repr(entry) in error.msg
    assert "10.0.0.1 is a private address" in network.url_refusal("https://10.0.0.1/")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/in",  # does not resolve here: the connection decides
        "https://8.8.8.8/in",
        "https://[2606:4700::1111]:8443/in",
    ],
)
def test_public_urls_pass_before_connecting(url):
    assert network.url_refusal(url, resolve_name=True) is None


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("ftp://example.com/", "only http:// and https:// URLs with a host can be called"),
        ("https:///path", "only http:// and https:// URLs with a host can be called"),
        ("https://exämple.com/", "the URL must be ASCII"),
        ("https://example.com:99999/", "the URL is malformed"),
        ("https://2130706433/", "2130706433 resolves to 127.0.0.1, a loopback address"),
        ("https://0x7f.1/", "0x7f.1 resolves to 127.0.0.1, a loopback address"),
        ("https://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a cloud metadata address"),
    ],
)
def test_url_refusals_before_connecting(url, refusal):
    assert network.url_refusal(url, resolve_name=True).startswith(refusal)


# --- one exchange, against servers on loopback -----------------------------------------------------


def serve_once(answer) -> Iterator[str]:
    """A one-connection server on loopback that reads the request head, then calls ``answer``."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def run() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            with contextlib.suppress(OSError):  # the client hung up, as it should at its deadline
                answer(connection, done)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    done.set()
    server.close()
    thread.join(timeout=5)


@pytest.fixture
def trickling_head(trust_loopback) -> Iterator[str]:
    """A status line, then a header that goes on for 5 s: one byte every 50 ms."""

    def answer(connection: socket.socket, done: threading.Event) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        until = time.monotonic() + 5
        while not done.wait(0.05) and time.monotonic() < until:
            connection.sendall(b"z")

    yield from serve_once(answer)


@pytest.fixture
def large_answer(trust_loopback) -> Iterator[str]:
    def answer(connection: socket.socket, done: threading.Event) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000)

    yield from serve_once(answer)


@pytest.mark.serial
def test_a_reply_head_that_never_ends_is_cut_by_the_deadline(trickling_head):
    started = time.monotonic()

    with pytest.raises(network.TimedOut, match="timed out after 0.5 s"):
        network.request("GET", trickling_head, headers={}, timeout=0.5, max_bytes=1000)

    assert time.monotonic() - started < 0.9


def test_at_most_max_bytes_of_a_reply_are_read(large_answer):
    reply = network.request("GET", large_answer, headers={}, timeout=5, max_bytes=10_000)

    assert (reply.status, len(reply.body), reply.truncated) == (200, 10_000, True)


@pytest.mark.serial
def test_a_resolver_that_hangs_is_cut_by_the_deadline(monkeypatch):
    monkeypatch.setattr(network, "resolve", lambda host, port: time.sleep(3) or [])
    started = time.monotonic()

    with pytest.raises(network.TimedOut):
        network.request("GET", "https://slow-dns.example/", headers={}, timeout=0.3, max_bytes=1000)

    assert time.monotonic() - started < 0.8


def test_a_name_that_does_not_resolve_is_a_connect_failure():
    with pytest.raises(network.ConnectFailed, match="nowhere.example does not resolve"):
        network.request("GET", "https://nowhere.example/", headers={}, timeout=1, max_bytes=1000)
