"""A real webhook receiver on loopback: a threaded HTTP server that checks every request's
Standard Webhooks signature with its own code (hmac and base64 from the standard library, not the
project's), records what it got and answers as the test tells it to."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 300  # the spec's suggested window against replays


@dataclass
class Received:
    webhook_id: str
    timestamp: int
    signature_ok: bool
    body: bytes
    at: float  # time.monotonic() when it arrived
    status: int = 0  # what the receiver answers (0 while the answer is held)
    retry_after: str | None = None

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def seq(self) -> int:
        return int(self.document["data"]["seq"])

    @property
    def type(self) -> str:
        return str(self.document["type"])


Answer = tuple[int, dict[str, str]]


def always_ok(received: Received) -> Answer:
    return 200, {}


def verify(secret: str, webhook_id: str, timestamp: str, body: bytes, signatures: str) -> bool:
    """Standard Webhooks verification, written out: the key is the base64 after `whsec_`, the
    message `{id}.{timestamp}.{body}`, and the header a space-separated list of `v1,<base64>`."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return abs(time.time() - int(timestamp)) <= TOLERANCE_SECONDS
    return False


@dataclass
class Receiver:
    secret: str = ""
    answer: Callable[[Received], Answer] = always_ok
    # Called with each request before answering; returning True holds the answer until
    # `release` is set (to stop the relay while the receiver has the request).
    hold: Callable[[Received], bool] = lambda received: False
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                webhook_id = self.headers.get("webhook-id", "")
                timestamp = self.headers.get("webhook-timestamp", "0")
                ok = bool(receiver.secret) and verify(
                    receiver.secret,
                    webhook_id,
                    timestamp,
                    body,
                    self.headers.get("webhook-signature", ""),
                )
                got = Received(webhook_id, int(timestamp), ok, body, time.monotonic())
                with receiver.lock:
                    receiver.requests.append(got)
                if receiver.hold(got):
                    receiver.held.set()
                    receiver.release.wait(30)
                status, headers = receiver.answer(got) if ok else (401, {})
                got.retry_after = headers.get("Retry-After")
                got.status = status  # before the answer leaves: the relay may act on it at once
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the relay went away while the answer was held

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/scrapflow"

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def acknowledged(self) -> list[Received]:
        """The requests answered with a 2xx, in the order they arrived."""
        return [r for r in self.snapshot() if 200 <= r.status < 300]

    def acknowledged_ids(self) -> set[str]:
        return {r.webhook_id for r in self.acknowledged()}
