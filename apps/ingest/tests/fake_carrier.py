"""A carrier tracking endpoint for tests: a real HTTP server on 127.0.0.1, on a free port, in a thread.

``GET /track/<tracking>`` answers what the test set for that tracking number with ``reply`` or
``events``, else 404 "unknown tracking number"; ``outage`` makes every request get the same
answer (500s, slow responses). A reply may carry headers (a redirect's Location) or ``trickle``:
a 200 announcing a huge body, then one byte every 50 ms for that many seconds. ``stop`` closes
the port, so later calls get connection refused.
"""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    trickle: float = 0.0


@dataclass(frozen=True)
class Seen:
    method: str
    tracking: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    carrier: "FakeCarrier"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The client gave up (a timeout in the test): nothing to report."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.carrier.answer(self)

    def do_POST(self) -> None:
        self.server.carrier.answer(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests look at ``FakeCarrier.seen``."""


class FakeCarrier:
    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.outage: Reply | None = None
        self.seen: list[Seen] = []
        self._stopped = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.carrier = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/track/{{tracking}}"

    @property
    def tracking_asked(self) -> list[str]:
        return [seen.tracking for seen in self.seen]

    def start(self) -> "FakeCarrier":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port; sleeping handlers wake up at once."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reply(
        self,
        tracking: str,
        status: int = 200,
        body: bytes = b"",
        delay: float = 0.0,
        headers: tuple[tuple[str, str], ...] = (),
        trickle: float = 0.0,
    ) -> None:
        self.replies[tracking] = Reply(status=status, body=body, delay=delay, headers=headers, trickle=trickle)

    def events(self, tracking: str, *events: dict[str, Any]) -> None:
        """Answer 200 with canonical JSON events for this tracking number."""
        self.reply(tracking, body=json.dumps({"events": list(events)}).encode())

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        tracking = unquote(handler.path.rsplit("/", 1)[-1])
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        self.seen.append(Seen(handler.command, tracking, dict(handler.headers.items()), body))
        reply = self.outage or self.replies.get(tracking) or Reply(404, b'{"error": "unknown tracking number"}')
        if reply.delay and self._stopped.wait(reply.delay):
            return
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(10**9 if reply.trickle else len(reply.body)))
        for name, value in reply.headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(reply.body)
        if reply.trickle:
            self._trickle(handler, reply.trickle)

    def _trickle(self, handler: BaseHTTPRequestHandler, seconds: float) -> None:
        until = time.monotonic() + seconds
        try:
            while time.monotonic() < until and not self._stopped.is_set():
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading
        handler.close_connection = True
