"""The network guard: how the control tower calls the URLs people configure.

Subscriptions and carrier tracking pulls call URLs that people type in. Unchecked, such a URL
reaches the cloud metadata service, a database or an admin port on loopback, and the answer is
shown back (server-side request forgery). ``request`` therefore:

- refuses loopback, private, link-local (the metadata address 169.254.169.254 among them),
  multicast, unspecified, reserved and shared (carrier-grade NAT) addresses, unless
  ``NETWORK_TRUSTED_TARGETS`` names the host or its network. The check is made when a
  connection is opened, on every address the name resolves to at that moment, and the
  connection goes to an address that passed: a name re-pointed between a check and the
  connection (DNS rebinding) gains nothing. The Host header, TLS SNI and certificate check stay
  on the name;
- sends plain ``http://`` only in development (``DEBUG``) or to a trusted entry written
  ``http://host``;
- never follows a redirect, reads at most ``max_bytes`` of the reply and ends the whole exchange
  (resolving, connecting, sending, reading) by one deadline, so a peer trickling an endless
  reply holds a worker for ``timeout`` seconds, not forever.

``url_refusal`` makes the same checks early, for forms and API input (a clear error when a target
is saved); the check at connect time is the one that counts.
"""

import ipaddress
import re
import socket
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from threading import Lock
from typing import Any
from urllib.parse import urlsplit

import httpcore
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
METADATA_ADDRESSES = frozenset(map(ipaddress.ip_address, ("169.254.169.254", "fd00:ec2::254")))
HOST_NAME = re.compile(r"^\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")
SETTING = "NETWORK_TRUSTED_TARGETS"

# The deadline (time.monotonic) of the exchange under way in this thread; every read and write on
# a guarded connection, pooled or new, waits at most until then.
_deadline: ContextVar[float | None] = ContextVar("network_deadline", default=None)
# getaddrinfo cannot be interrupted: it runs here, and a resolution past the deadline is abandoned.
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


class RequestFailed(Exception):
    """No usable reply; the message says why, for the person who set the target up."""


class TargetRefused(RequestFailed):
    """The guard will not send there (internal address, plain HTTP, not a web URL): nothing was sent."""


class ConnectFailed(RequestFailed):
    """The host did not resolve or the connection could not be opened: nothing was sent."""


class TimedOut(RequestFailed):
    """The exchange did not finish by its deadline."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    truncated: bool  # the body went on past ``max_bytes``; the rest was not read


# --- the trusted targets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedTarget:
    """One entry of ``NETWORK_TRUSTED_TARGETS``: a host name (``.example.com``: the domain and its
    subdomains) or an address or network; ``http`` when written ``http://...``."""

    host: str = ""
    network: IPNetwork | None = None
    http: bool = False

    def names(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if not self.host:
            return False
        if self.host.startswith("."):
            return host == self.host[1:] or host.endswith(self.host)
        return host == self.host

    def contains(self, address: IPAddress) -> bool:
        return self.network is not None and address.version == self.network.version and address in self.network


def trusted_targets() -> tuple[TrustedTarget, ...]:
    return _parse_targets(tuple(settings.NETWORK_TRUSTED_TARGETS))


@lru_cache(maxsize=4)
def _parse_targets(entries: tuple[str, ...]) -> tuple[TrustedTarget, ...]:
    return tuple(_parse_target(entry) for entry in entries if entry.strip())


def _parse_target(entry: str) -> TrustedTarget:
    text = entry.strip().lower()
    scheme, _, rest = text.rpartition("://")
    if scheme not in ("", "http", "https"):
        raise ImproperlyConfigured(f"{SETTING}: {entry!r} may start with http:// or https:// only")
    try:
        network = ipaddress.ip_network(rest.replace("[", "").replace("]", ""))
    except ValueError:
        if not HOST_NAME.match(rest):
            raise ImproperlyConfigured(
                f"{SETTING}: {entry!r} is neither a host name (erp.corp.example, .corp.example) "
                "nor an address or network (10.20.0.0/16, fd00::/8)"
            ) from None
        return TrustedTarget(host=rest.rstrip("."), http=scheme == "http")
    return TrustedTarget(network=network, http=scheme == "http")


@checks.register(checks.Tags.security)
def check_trusted_targets(**kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py check`` (and every server start) names a malformed entry."""
    try:
        trusted_targets()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="partners.E001")]
    return []


# --- addresses -------------------------------------------------------------------------------------


def address_kind(address: IPAddress) -> str | None:
    """What kind of internal address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    for kind, found in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (carrier-grade NAT)", address in SHARED_ADDRESS_SPACE),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    ):
        if found:
            return kind
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to now, in the resolver's order."""
    found: dict[IPAddress, None] = {}
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        found[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(found)


def check_addresses(host: str, addresses: Sequence[IPAddress]) -> None:
    """Raise TargetRefused unless every address is public or trusted (or the name itself is)."""
    targets, broken = _targets()
    if any(target.names(host) for target in targets):
        return
    for address in addresses:
        kind = address_kind(address)
        if kind and not any(target.contains(address) for target in targets):
            where = f"{host} is" if _literal(host) == address else f"{host} resolves to {address},"
            article = "an" if kind[0] in "aeiou" else "a"
            raise TargetRefused(f"{where} {article} {kind} address; only {SETTING} may allow it{broken}")


def _targets() -> tuple[tuple[TrustedTarget, ...], str]:
    """The trusted targets, and a note when the setting is malformed: then none is (fail closed)."""
    try:
        return trusted_targets(), ""
    except ImproperlyConfigured as exc:
        return (), f" ({exc})"


def url_refusal(url: str, *, resolve_name: bool = False) -> str | None:
    """Why the guard would refuse ``url``, or None. Checks the scheme, and the address when the host
    is one (or, with ``resolve_name``, resolves to internal ones now). A name that does not resolve
    passes: the check at connect time decides."""
    try:
        _check_url(url, resolve_name=resolve_name)
    except TargetRefused as exc:
        return str(exc)
    return None


def _check_url(url: str, *, resolve_name: bool) -> str:
    """The URL's host, once its scheme and (when it is one, or ``resolve_name``) addresses pass."""
    if not url.isascii():
        raise TargetRefused("the URL must be ASCII (write an international host name in its xn-- form)")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"the URL is malformed: {exc}") from exc
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("http", "https") or not host:
        raise TargetRefused("only http:// and https:// URLs with a host can be called")
    if parts.scheme == "http" and not settings.DEBUG and not _plain_http_allowed(host):
        raise TargetRefused(
            f"plain http is refused outside development: use https://, or trust the host with a {SETTING} "
            f"entry written http://{host}"
        )
    literal = _literal(host)
    if literal is not None:
        check_addresses(host, [literal])
    elif resolve_name:
        try:
            addresses = resolve(host, port)
        except OSError:
            return host
        check_addresses(host, addresses)
    return host


def _plain_http_allowed(host: str) -> bool:
    targets, _ = _targets()
    literal = _literal(host)
    return any(
        target.http and (target.names(host) or (literal is not None and target.contains(literal))) for target in targets
    )


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# --- the exchange ----------------------------------------------------------------------------------


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None = None,
    timeout: float,
    max_bytes: int,
) -> Reply:
    """Make one request under the guard; the whole exchange ends within ``timeout`` seconds.

    Raises TargetRefused, ConnectFailed, TimedOut or RequestFailed, each with a reason."""
    host = _check_url(url, resolve_name=False)
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    sent = [("Host", netloc), *((name, value) for name, value in headers.items() if name.lower() != "host")]
    token = _deadline.set(time.monotonic() + timeout)
    try:
        with _pool().stream(
            method,
            url,
            headers=sent,
            content=body,
            extensions={"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)},
        ) as response:
            content, truncated = _read(response, max_bytes)
            names = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
            return Reply(status=response.status, headers=names, body=content, truncated=truncated)
    except httpcore.TimeoutException as exc:
        raise TimedOut(f"timed out after {timeout:g} s") from exc
    except httpcore.ConnectError as exc:
        raise ConnectFailed(_connect_reason(exc, host)) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise RequestFailed(f"the exchange broke off: {exc or type(exc).__name__}") from exc
    finally:
        _deadline.reset(token)


def _read(response: httpcore.Response, max_bytes: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_stream():
        if size + len(chunk) > max_bytes:
            chunks.append(chunk[: max_bytes - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _connect_reason(exc: httpcore.ConnectError, host: str) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, socket.gaierror):
        return f"{host} does not resolve ({cause.strerror or cause})"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


_pool_lock = Lock()
_pools: dict[tuple[str, ...], httpcore.ConnectionPool] = {}


def _pool() -> httpcore.ConnectionPool:
    """One connection pool per process and trusted-target list: a kept-alive connection never
    outlives the list it was checked against."""
    key = tuple(settings.NETWORK_TRUSTED_TARGETS)
    with _pool_lock:
        if key not in _pools:
            for stale in _pools.values():
                stale.close()
            _pools.clear()
            _pools[key] = httpcore.ConnectionPool(network_backend=_GuardedBackend(), keepalive_expiry=30)
        return _pools[key]


def _within(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left of the exchange's deadline; ``error`` once it passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the exchange's deadline passed")
    return left if timeout is None else min(timeout, left)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to a checked one (never by name again)."""

    def __init__(self) -> None:
        self._plain = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        addresses = self._resolve(host, port, timeout)
        check_addresses(host, addresses)
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = self._plain.connect_tcp(
                    str(address),
                    port,
                    timeout=_within(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
            else:
                return _DeadlineStream(stream)
        raise failure or httpcore.ConnectError(f"{host} has no address")

    def _resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        literal = _literal(host)
        if literal is not None:
            return [literal]
        future = _resolver.submit(resolve, host, port)
        try:
            return future.result(timeout=_within(timeout, httpcore.ConnectTimeout))
        except FutureTimeout as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the current exchange's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _within(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _within(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _within(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)
