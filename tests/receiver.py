"""A subscriber's endpoint on loopback, for outbound tests: it verifies signatures (with the
``standardwebhooks`` package, as a subscriber would), dedupes on Idempotency-Key like a careful
receiver, and fails on demand (status codes, slowness, a reply that trickles on and on)."""

import base64
import hashlib
import hmac
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def signature_valid(self, secret: str) -> bool:
        """The Standard Webhooks signature verifies with ``secret`` (a secret not written whsec_...
        is given to the package as the base64 of its bytes)."""
        if not secret.startswith("whsec_"):
            secret = base64.b64encode(secret.encode()).decode()
        try:
            Webhook(secret).verify(self.body, self.headers, json_parse=False)
        except WebhookVerificationError:
            return False
        return True

    def legacy_signature_valid(self, secret: str) -> bool:
        """``X-Signature`` is the HMAC of ``X-Timestamp`` + "." + the body."""
        signed = self.headers["X-Timestamp"].encode() + b"." + self.body
        expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers["X-Signature"])


@dataclass
class Receiver:
    """Answers each request with the next scripted behaviour, then with ``default``.

    A behaviour is a status code, ``(status, headers)``, ``("slow", seconds)`` to hold the
    request before a 200, or ``("trickle", seconds)``: a 200 announcing a huge body, then one byte
    every 50 ms for that long. ``default`` may also be a function of the request giving one.
    ``body`` replaces the usual ``{"ok": ...}`` answer; ``most_at_once`` is the most requests it
    was ever answering at the same time.
    """

    url: str = ""
    default: int | tuple | Callable[[Received], int | tuple] = 200
    script: deque = field(default_factory=deque)
    requests: list[Received] = field(default_factory=list)
    accepted: dict[str, Received] = field(default_factory=dict)  # by Idempotency-Key
    lock: threading.Lock = field(default_factory=threading.Lock)
    body: bytes = b""
    at_once: int = 0
    most_at_once: int = 0

    def answer_next(self, *behaviours: int | tuple) -> None:
        self.script.extend(behaviours)

    def _behaviour(self, received: Received) -> int | tuple:
        with self.lock:
            if self.script:
                return self.script.popleft()
        return self.default(received) if callable(self.default) else self.default

    def keys(self) -> list[str]:
        return [r.headers.get("Idempotency-Key", "") for r in self.requests]


def free_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            with receiver.lock:
                receiver.at_once += 1
                receiver.most_at_once = max(receiver.most_at_once, receiver.at_once)
            try:
                self._answer()
            finally:
                with receiver.lock:
                    receiver.at_once -= 1

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received = Received(self.path, dict(self.headers.items()), body)
            with receiver.lock:
                receiver.requests.append(received)
            behaviour = receiver._behaviour(received)
            if isinstance(behaviour, tuple) and behaviour[0] == "trickle":
                self._trickle(behaviour[1])
                return
            status, headers = 200, {}
            if isinstance(behaviour, tuple) and behaviour[0] == "slow":
                time.sleep(behaviour[1])
            elif isinstance(behaviour, tuple):
                status, headers = behaviour
            else:
                status = behaviour
            if 200 <= status < 300:
                with receiver.lock:
                    receiver.accepted.setdefault(received.headers.get("Idempotency-Key", ""), received)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(receiver.body or b'{"ok": %s}' % (b"true" if status < 300 else b"false"))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up (timeout) before we answered

        def _trickle(self, seconds: float) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            until = time.monotonic() + seconds
            try:
                while time.monotonic() < until:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender stopped reading: what a deadline should do
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/control-tower"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server
