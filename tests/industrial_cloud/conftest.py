"""A stand-in for the Guizhou Industrial Cloud: a real HTTP server on 127.0.0.1 (in a thread)
that checks each request's HMAC-SHA256 signature with its own code, keeps the first body it
accepts per Idempotency-Key (later ones are acknowledged as duplicates), and answers from a
script: failures (500, 503, 429 with Retry-After), hangs longer than the sender's timeout, then
success."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from integrations.settings import Settings

SECRET = b"industrial-cloud-shared-secret-for-tests"


@dataclass(frozen=True)
class Answer:
    status: int = 200
    hang: float = 0.0  # seconds before answering: beyond the sender's timeout it is a timeout
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    at: float  # time.monotonic() on arrival
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    answered: int

    @property
    def key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def document(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.body)
        return loaded


class Receiver:
    def __init__(self, secret: bytes = SECRET):
        self.secret = secret
        self.script: list[Answer] = []
        self.then = Answer(200)
        self.requests: list[Request] = []
        self.kept: dict[str, bytes] = {}  # Idempotency-Key -> the first body accepted
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
                given = self.headers.get("X-Scrapflow-Signature", "")
                signature_ok = hmac.compare_digest(expected, given)
                with receiver.lock:
                    answer = receiver.script.pop(0) if receiver.script else receiver.then
                if not signature_ok:
                    answer = Answer(401)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.requests.append(
                        Request(time.monotonic(), self.path, headers, body, signature_ok,
                                answer.status)
                    )  # fmt: skip
                if answer.hang:
                    time.sleep(answer.hang)
                duplicate = False
                if 200 <= answer.status < 300:
                    key = headers.get("idempotency-key", "")
                    with receiver.lock:
                        duplicate = key in receiver.kept
                        receiver.kept.setdefault(key, body)
                reply = json.dumps({"accepted": answer.status < 300, "duplicate": duplicate})
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (a timeout)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/industrial-cloud/reports"

    def answers(self, *script: Answer, then: Answer | None = None) -> None:
        with self.lock:
            self.script = list(script)
            if then is not None:
                self.then = then

    def received(self, key: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if key is None or r.key == key]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def cloud_settings(settings: Settings, url: str, **overrides: object) -> Settings:
    """Quick retries for tests: 0.05 s, doubling, a 0.5 s timeout; plain http allowed."""
    values: dict[str, object] = {
        "industrial_cloud_url": url,
        "industrial_cloud_secret": SecretStr(SECRET.decode()),
        "industrial_cloud_allow_http": True,
        "industrial_cloud_retries": 4,
        "industrial_cloud_backoff_seconds": 0.05,
        "industrial_cloud_max_backoff_seconds": 5.0,
        "industrial_cloud_timeout_seconds": 0.5,
        "industrial_cloud_grace_hours": 24.0,
        "industrial_cloud_schedule_interval_seconds": 0.05,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


@pytest.fixture
def cloud(settings: Settings, receiver: Receiver) -> Settings:
    return cloud_settings(settings, receiver.url)
