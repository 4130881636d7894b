"""Limits at the door: request body size (413), request rates (429 with Retry-After) per
principal and, on the public and login endpoints, per client address; and security headers on
every response. Plain ASGI, so the hot path pays a few dictionary lookups.

Rates are token buckets in process memory: with several server processes each enforces its own
bucket (the effective limit is the per-process one times the processes)."""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integrations.settings import Settings

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"cache-control", b"no-store"),
]
# The interactive documentation loads its scripts and styles from a CDN.
DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net;"
    b" style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data:"
    b" https://fastapi.tiangolo.com; frame-ancestors 'none'"
)
DOCS = ("/docs", "/redoc", "/openapi.json")
PUBLIC = ("/api/v1/public/", "/api/v1/auth/")


class Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, capacity: float, now: float):
        self.tokens = capacity
        self.updated = now


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: float

    @property
    def enabled(self) -> bool:
        return self.per_second > 0


class Buckets:
    """Token buckets by key, the least recently used forgotten beyond `size` keys."""

    def __init__(self, rate: Rate, size: int = 100_000):
        self.rate = rate
        self.size = size
        self._buckets: OrderedDict[bytes, Bucket] = OrderedDict()

    def take(self, key: bytes, now: float) -> float:
        """0 if the request may go; else the seconds until it could."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(self.rate.burst, now)
            if len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(
                self.rate.burst, bucket.tokens + (now - bucket.updated) * self.rate.per_second
            )
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate.per_second


def _problem(status: int, code: str, title: str, detail: str, **extra: object) -> bytes:
    return orjson.dumps(
        {"type": f"https://scrapflow.example/problems/{code}", "title": title, "status": status,
         "detail": detail, "code": code, **extra}
    )  # fmt: skip


class Limits:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.max_body = settings.max_body_bytes
        self.max_batch_body = settings.max_batch_body_bytes
        self.principals = Buckets(Rate(settings.rate_per_principal, settings.rate_burst_principal))
        self.public = Buckets(Rate(settings.rate_per_ip_public, settings.rate_burst_ip_public))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = dict(scope["headers"])
        wait = self._wait(path, headers, scope)
        if wait:
            retry = str(max(1, math.ceil(wait))).encode()
            body = _problem(
                429,
                "rate_limited",
                "Too many requests",
                f"slow down: try again in {retry.decode()} s",
                retry_after=int(retry),
            )
            await _answer(send, 429, body, [(b"retry-after", retry)])
            return
        limit = self.max_batch_body if path.endswith("/batch") else self.max_body
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, _too_large(limit))
            return
        await self.app(scope, _counting(receive, limit), _secured(send, path))

    def _wait(self, path: str, headers: dict[bytes, bytes], scope: Scope) -> float:
        now = time.monotonic()
        if path.startswith(PUBLIC) and self.public.rate.enabled:
            client = scope.get("client")
            address = (client[0] if client else "unknown").encode()
            return self.public.take(address, now)
        credential = headers.get(b"authorization")
        if credential is not None and self.principals.rate.enabled:
            # Keyed by a digest: the bucket table never holds a credential itself.
            return self.principals.take(hashlib.blake2b(credential, digest_size=16).digest(), now)
        return 0.0


def _too_large_detail(limit: int) -> str:
    return f"the body may hold at most {limit} bytes here"


def _too_large(limit: int) -> bytes:
    return _problem(
        413,
        "payload_too_large",
        "Request body too large",
        _too_large_detail(limit),
        max_bytes=limit,
    )


def _counting(receive: Receive, limit: int) -> Receive:
    """A body sent without Content-Length (chunked) is counted as it arrives."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:  # rendered as problem+json by the app's handler
                raise HTTPException(413, _too_large_detail(limit))
        return message

    return counted


def _secured(send: Send, path: str) -> Send:
    docs = path.startswith(DOCS)

    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = SECURITY_HEADERS
            if docs:
                extra = [
                    (b"content-security-policy", DOCS_CSP) if name == b"content-security-policy"
                    else (name, value)
                    for name, value in SECURITY_HEADERS
                    if name != b"cache-control"
                ]  # fmt: skip
            present = {name for name, _ in message.get("headers", [])}
            message["headers"] = [
                *message.get("headers", []),
                *((n, v) for n, v in extra if n not in present),
            ]
        await send(message)

    return with_headers


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
