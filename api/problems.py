"""RFC 9457 problem details for every error: domain rules, validation, HTTP and database errors."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.limits import LimitExceeded, limit_in
from domain.errors import DomainError
from integrations.logging import request_id_var

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"

# SQLSTATE classes that mean "the database is not reachable right now": retry later.
_UNAVAILABLE_SQLSTATES = ("08", "57P")


class FieldError(BaseModel):
    pointer: str = Field(description="JSON pointer into the request (body fields start at /)")
    detail: str
    location: str | None = Field(default=None, description="body, query, path or header")


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable `code` to branch on."""

    type: str = Field(examples=["urn:scrapflow:problem:invalid_uscc"])
    title: str
    status: int
    detail: str
    code: str = Field(examples=["invalid_uscc"])
    request_id: str | None = None
    errors: list[FieldError] | None = None

    model_config = {"extra": "allow"}


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:scrapflow:problem:{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id_var.get(),
    }
    if errors is not None:
        body["errors"] = errors
    body.update({k: v for k, v in extra.items() if k not in body})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def json_response(
    body: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A model straight to JSON bytes. Routes on the hot path return this: FastAPI would
    otherwise dump the returned model and validate it once more against the response model."""
    return Response(
        body.model_dump_json(), status_code=status, headers=headers, media_type="application/json"
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem responses a route can give."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def document_credentials(schema: dict[str, Any]) -> None:
    """Every operation that takes a credential may answer 401 (none, or a bad one) and 403: the
    role may not act, or a weighbridge device key calls anything but its ticket routes
    (api.deps.current_actor). Added to the generated document where a route does not list them."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("security"):
                answers = operation.setdefault("responses", {})
                for status, answer in responses(401, 403).items():
                    answers.setdefault(str(status), _documented(answer))


def _documented(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "model"}


def pointer(loc: Sequence[Any], document: Any = None) -> tuple[str, str | None]:
    """A JSON pointer into the request from a validation error's location. Pydantic puts the tag
    of a tagged union into the location (`/seller/individual/name`); the document has no such
    member, so walking the request body alongside drops it (`/seller/name`)."""
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        where, rest = str(loc[0]), list(loc[1:])
    else:
        where, rest = None, list(loc)
    node = document if where in ("body", None) else None
    parts: list[str] = []
    for index, part in enumerate(rest):
        is_tag = (
            isinstance(node, dict)
            and isinstance(part, str)
            and part not in node
            and index < len(rest) - 1
        )
        if is_tag:
            continue
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        parts.append(str(part))
    return "/" + "/".join(parts), where


def _http_code(status: int) -> str:
    return {
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        406: "not_acceptable",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_"))


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem_response(
        exc.status,
        exc.code,
        exc.detail,
        title=exc.title,
        errors=exc.errors,
        headers=headers,
        **exc.extra,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors, broken = [], []
    for error in exc.errors():
        at, where = pointer(error.get("loc", ()), exc.body)
        errors.append({"pointer": at, "detail": error.get("msg", "invalid"), "location": where})
        broken.append({"pointer": at, "type": error.get("type"), "ctx": error.get("ctx")})
    summary = "; ".join(f"{e['location']} {e['pointer']}: {e['detail']}" for e in errors[:5])
    # An over-long string or list gets its own code; every error is still listed.
    code, members = limit_in(broken) or ("validation_failed", {})
    return problem_response(
        422,
        code,
        f"the request is invalid: {summary}",
        title="Invalid request",
        errors=errors,
        **members,
    )


async def _limit_exceeded(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LimitExceeded)
    return problem_response(
        exc.status_code, exc.code, str(exc.detail), errors=exc.errors, **exc.extra
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        return _unreadable_body(exc)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(exc.status_code, _http_code(exc.status_code), detail, headers=headers)


def _unreadable_body(exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI and Starlette answer a body they cannot decode (bytes that are not UTF-8, a
    broken multipart form) with a bare 400, the only 400 this service gives: as malformed as a
    JSON syntax error, which is a 422 `validation_failed`, so it is answered the same way."""
    cause = exc.__cause__ or exc.__context__
    detail = str(exc.detail) if cause is None else f"{exc.detail}: {cause}"
    return problem_response(
        422,
        "validation_failed",
        f"the request is invalid: body /: {detail}",
        title="Invalid request",
        errors=[{"pointer": "/", "detail": detail, "location": "body"}],
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(
        getattr(exc.orig, "__cause__", None), "sqlstate", None
    )
    if isinstance(exc, IntegrityError):
        constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
        if sqlstate == "23505":
            return problem_response(
                409,
                "duplicate",
                f"a record with these values exists ({constraint})",
                constraint=constraint,
            )
        if sqlstate == "23503":
            return problem_response(
                422,
                "unknown_reference",
                f"a referenced record does not exist ({constraint})",
                constraint=constraint,
            )
        return problem_response(
            422,
            "constraint_violated",
            f"the values break a rule ({constraint})",
            constraint=constraint,
        )
    if exc.connection_invalidated or (sqlstate or "").startswith(_UNAVAILABLE_SQLSTATES):
        log.warning("database unavailable", extra={"error": str(exc.orig)})
        return problem_response(
            503,
            "database_unavailable",
            "the database is not reachable; retry with the same Idempotency-Key",
            headers={"Retry-After": "1"},
        )
    if sqlstate == "40001" or sqlstate == "40P01":
        return problem_response(
            409,
            "concurrent_update",
            "a concurrent change won; retry the request",
            headers={"Retry-After": "0"},
        )
    if (sqlstate or "").startswith("22"):
        return problem_response(422, "invalid_value", "a value is out of range or malformed")
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return problem_response(500, "internal_error", "an unexpected error occurred; it is logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(LimitExceeded, _limit_exceeded)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(OSError, _connection_lost)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)
    app.add_exception_handler(Exception, _unexpected)


async def _connection_lost(request: Request, exc: Exception) -> JSONResponse:
    """asyncpg raises OSError subclasses (ConnectionRefusedError...) when the server is gone."""
    log.warning("database connection failed", extra={"error": str(exc)})
    return problem_response(
        503,
        "database_unavailable",
        "the database is not reachable; retry later",
        headers={"Retry-After": "1"},
    )


async def _pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
    """No pooled connection became free in time (db_pool_timeout_seconds): the database is slow
    or stalled. Nothing was written; the client may retry."""
    log.warning("no database connection free in time", extra={"error": str(exc)})
    return problem_response(
        503,
        "database_busy",
        "no database connection became free in time; retry with the same Idempotency-Key",
        headers={"Retry-After": "1"},
    )
