"""Limits at the door: request body size (413), JSON nesting depth (422 `json_too_deep`),
request rates (429 with Retry-After) per principal and, on the public and login endpoints, per
client address; and security headers on every response. Plain ASGI, so the hot path pays a few
dictionary lookups. Also the limits that routes apply: page sizes, batch sizes, and the codes of
over-long strings and lists in validation errors (all 422 problem+json naming the parameter or
field and the maximum).

Rates are token buckets in process memory: with several server processes each enforces its own
bucket (the effective limit is the per-process one times the processes)."""

# No `from __future__ import annotations`: FastAPI reads the annotations of `page_size`'s
# dependency, which name its local variables.

import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Query, Request
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
# Marks a parameter whose maximum is a setting, filled in by `document`.
_MAXIMUM_FROM = "x-scrapflow-maximum-from"


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
        {"type": f"urn:scrapflow:problem:{code}", "title": title, "status": status,
         "detail": detail, "code": code, **extra}
    )  # fmt: skip


class Limits:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.max_body = settings.max_body_bytes
        self.max_batch_body = settings.max_batch_body_bytes
        self.max_json_depth = settings.max_json_depth
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
        content_type = headers.get(b"content-type")
        # FastAPI reads a body without a content type as JSON too.
        depth = self.max_json_depth if content_type is None or b"json" in content_type else None
        await self.app(scope, _reading(receive, limit, depth), _secured(send, path))

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


def _reading(receive: Receive, limit: int, max_depth: int | None) -> Receive:
    """A body sent without Content-Length (chunked) is counted as it arrives. A JSON body's
    nesting is checked when its last part arrives: before the app parses it or builds a model.
    Raised from here, the errors are rendered as problem+json by the app's handler."""
    seen = 0
    parts: list[bytes] = []

    async def read() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            body: bytes = message.get("body", b"")
            seen += len(body)
            if seen > limit:
                raise LimitExceeded(
                    413, "payload_too_large", _too_large_detail(limit), max_bytes=limit
                )
            if max_depth is not None:
                if message.get("more_body", False):
                    parts.append(body)
                else:
                    _check_depth(b"".join((*parts, body)) if parts else body, max_depth)
        return message

    return read


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


class LimitExceeded(HTTPException):
    """A limit refused the request, rendered as problem+json with its own code and members. An
    HTTP exception because FastAPI lets those through from where it reads the body (any other
    exception there becomes a plain 400)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        **extra: Any,
    ):
        super().__init__(status, detail)
        self.code = code
        self.errors = errors
        self.extra = extra


# --- JSON depth -------------------------------------------------------------------------------

_BRACKETS_ALIKE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'[]{}"'))
_STRING = re.compile(rb'"[^"]*"')


def nested_deeper_than(body: bytes, max_depth: int) -> bool:
    """Whether the JSON text nests arrays and objects more than `max_depth` levels, without
    parsing it: everything runs in C over the bytes (about a microsecond for a lot's
    registration, a few milliseconds for a 5,000-lot batch). Malformed JSON is left to the parser.
    """
    if body.count(b"{") + body.count(b"[") <= max_depth:  # the usual body: nothing to look at
        return False
    if b"\\" in body:  # escaped backslashes and quotes are never structure
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Only quotes and brackets are kept, objects and arrays alike. Strings are dropped: adjacent
    # quotes first (merging "a""b" into one string drops no bracket), then what is left of the
    # strings that held brackets.
    nesting = body.translate(_BRACKETS_ALIKE, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in nesting:
        nesting = _STRING.sub(b"", nesting)
    # Each pass removes every innermost pair, so one level of every branch.
    too_deep = b"[" * (max_depth + 1)
    for _ in range(max_depth):
        if too_deep in nesting:  # a plain deep chain is found without more passes
            return True
        nesting = nesting.replace(b"[]", b"")
        if not nesting:
            return False
    return b"[]" in nesting


def _check_depth(body: bytes, max_depth: int) -> None:
    if nested_deeper_than(body, max_depth):
        raise LimitExceeded(
            422,
            "json_too_deep",
            f"the JSON body nests objects and arrays more than {max_depth} levels deep",
            max_depth=max_depth,
        )


# --- Page and batch sizes ---------------------------------------------------------------------


def page_size(setting: str, default: int, description: str) -> Any:
    """A `limit` query parameter bounded by a setting. The OpenAPI document shows the maximum
    in force (see `document`). A default above a lowered maximum is lowered with it."""

    async def bounded(
        request: Request,
        limit: Annotated[
            int,
            Query(ge=1, description=description, json_schema_extra={_MAXIMUM_FROM: setting}),
        ] = default,
    ) -> int:
        maximum: int = getattr(request.app.state.settings, setting)
        if limit <= maximum:
            return limit
        if "limit" not in request.query_params:
            return maximum
        raise LimitExceeded(
            422,
            "page_size_too_large",
            f"limit may be at most {maximum}; got {limit}",
            errors=[{"pointer": "/limit", "detail": f"at most {maximum}", "location": "query"}],
            parameter="limit",
            maximum=maximum,
        )

    return Depends(bounded)


PageSize = Annotated[int, page_size("max_page_size", 50, "Page size (default 50)")]


def check_batch_size(count: int, maximum: int, pointer: str) -> None:
    if count > maximum:
        raise batch_too_large(count, maximum, pointer)


def batch_too_large(count: int, maximum: int, pointer: str) -> LimitExceeded:
    return LimitExceeded(
        422,
        "batch_too_large",
        f"{pointer} may hold at most {maximum} items; got {count}",
        errors=[{"pointer": pointer, "detail": f"at most {maximum} items", "location": "body"}],
        field=pointer,
        maximum=maximum,
        count=count,
    )


# --- Validation errors that are limits ---------------------------------------------------------


def limit_in(errors: Sequence[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The code and members of the first limit among rendered validation errors (each with its
    pydantic `type` and `ctx`): a list over its maximum length is `batch_too_large`, a string
    over it `string_too_long`; None when no limit was broken."""
    for error in errors:
        context = error.get("ctx") or {}
        if error.get("type") == "too_long" and context.get("field_type") == "List":
            members = {"field": error["pointer"], "maximum": context.get("max_length")}
            return "batch_too_large", {**members, "count": context.get("actual_length")}
        if error.get("type") == "string_too_long":
            return "string_too_long", {
                "field": error["pointer"],
                "maximum": context.get("max_length"),
            }
    return None


# --- The OpenAPI document ---------------------------------------------------------------------


_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
# Answered before or around any route: every operation may be rate limited (a credential's rate,
# or the address's on public paths), may meet the database down or its pool exhausted (503, retry
# with the same Idempotency-Key), and every body may be too large.
_AT_THE_DOOR = {
    "429": {
        "description": "Too Many Requests: retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": _PROBLEM,
    },
    "503": {
        "description": "Service Unavailable (database_unavailable, database_busy): retry after "
        "Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": _PROBLEM,
    },
}
_BODY_TOO_LARGE = {"413": {"description": "Content Too Large", "content": _PROBLEM}}


def document(schema: dict[str, Any], settings: Settings) -> None:
    """Puts the configured maxima in the generated document: each bounded `limit` parameter's
    maximum and the lot batch's item count; and the answers of the limits at the door."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.setdefault("responses", {})
            for status, answer in (
                {**_AT_THE_DOOR, **(_BODY_TOO_LARGE if "requestBody" in operation else {})}
            ).items():
                answers.setdefault(status, answer)
            for parameter in operation.get("parameters", ()):
                setting = parameter["schema"].pop(_MAXIMUM_FROM, None)
                if setting is not None:
                    parameter["schema"]["maximum"] = getattr(settings, setting)
    batch = schema.get("components", {}).get("schemas", {}).get("LotBatchCreate")
    if batch is not None:
        batch["properties"]["lots"]["maxItems"] = settings.max_batch_items
