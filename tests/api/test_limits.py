"""Limits: oversized bodies 413 (larger allowance for batches), too many requests 429 with
Retry-After, per credential and per address on public endpoints; security headers. And what a
request may ask for: page sizes, batch sizes, string lengths and JSON depth, each a 422
problem+json naming the parameter or field and the maximum, each maximum a setting."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.limits import nested_deeper_than
from integrations.settings import Settings
from tests.conftest import World


def _app(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    **limits: float,
) -> FastAPI:
    return create_app(settings.model_copy(update=limits), database_url, sessionmaker=sessionmaker)


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


async def test_a_body_over_the_limit_is_413_and_a_batch_may_be_larger(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
) -> None:
    app = _app(settings, database_url, sessionmaker, max_body_bytes=2048, max_batch_body_bytes=8192)
    headers = world.a_operator.headers
    async with _client(app) as client:
        big = b'{"pad": "' + b"x" * 4000 + b'"}'
        response = await client.post(
            "/api/v1/lots", content=big, headers={**headers, "content-type": "application/json"}
        )
        _problem(response, 413, "payload_too_large")
        assert response.json()["max_bytes"] == 2048
        # The batch route takes more: this body is read (and refused for what it says, not size).
        batch = await client.post(
            "/api/v1/lots/batch",
            content=big,
            headers={**headers, "content-type": "application/json"},
        )
        assert batch.status_code == 422, batch.text


async def test_a_chunked_body_is_counted_as_it_arrives(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
) -> None:
    app = _app(settings, database_url, sessionmaker, max_body_bytes=2048)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pad": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    async with _client(app) as client:
        response = await client.post(
            "/api/v1/lots",
            content=chunks(),
            headers={**world.a_operator.headers, "content-type": "application/json"},
        )
    _problem(response, 413, "payload_too_large")


async def test_a_credential_over_its_rate_gets_429_with_retry_after(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
) -> None:
    app = _app(
        settings, database_url, sessionmaker, rate_per_principal=0.001, rate_burst_principal=3
    )
    async with _client(app) as client:
        answers = [await client.get("/api/v1/me", headers=world.a_viewer.headers) for _ in range(4)]
        assert [r.status_code for r in answers[:3]] == [200, 200, 200]
        _problem(answers[3], 429, "rate_limited")
        assert int(answers[3].headers["retry-after"]) >= 1
        # Another credential has a bucket of its own.
        assert (await client.get("/api/v1/me", headers=world.b_admin.headers)).status_code == 200


async def test_public_endpoints_are_limited_per_address(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    app = _app(
        settings, database_url, sessionmaker, rate_per_ip_public=0.001, rate_burst_ip_public=2
    )
    async with _client(app) as client:
        codes = [
            (await client.get("/api/v1/public/certificates/SFC-0000-0000000")).status_code
            for _ in range(3)
        ]
    assert codes[:2] == [404, 404]
    assert codes[2] == 429


async def test_responses_carry_security_headers(client: httpx.AsyncClient, world: World) -> None:
    for response in (
        await client.get("/api/v1/me", headers=world.a_viewer.headers),
        await client.get("/api/v1/me"),  # a 401 too
        await client.get("/healthz"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


# --- What a request may ask for ----------------------------------------------------------------

LOTS = "/api/v1/lots"
NOW = "2026-11-24T09:30:00+08:00"
HUGE = "x" * 20_000
LONG = "x" * 5_000  # a URL may hold one per parameter (httpx takes up to 64 KiB)


def _lot(facility_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    return {
        "facility_id": str(facility_id),
        "metal": "aluminium",
        "category": "GB13586-WROUGHT",
        "net_kg": 120.5,
        "consumer_class": "post_consumer",
        "channel": "offline",
        "collected_at": NOW,
        "seller": {"kind": "individual", "name": "王小明", "id_number": "52010219900101123X"},
        **overrides,
    }


def _nested(depth: int) -> Any:
    """Arrays and objects alternating, `depth` levels deep."""
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


async def _rows(session: AsyncSession) -> tuple[int, ...]:
    """Rows a refused request might have written, as seen inside the test's transaction."""
    row = await session.execute(
        text(
            "SELECT (SELECT count(*) FROM lot), (SELECT count(*) FROM event),"
            " (SELECT count(*) FROM shipment), (SELECT count(*) FROM idempotency_record)"
        )
    )
    return tuple(int(v) for v in row.one())


def _limit(response: httpx.Response, code: str, **members: Any) -> dict[str, Any]:
    _problem(response, 422, code)
    body: dict[str, Any] = response.json()
    for name, value in members.items():
        assert body[name] == value, body
    return body


def _operations(app: FastAPI, method: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, operations[method])
        for path, operations in app.openapi()["paths"].items()
        if method in operations
    ]


def _url(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", quote(value, safe=""), path)


@pytest.mark.parametrize("maximum", [None, 7])
async def test_every_list_limit_has_a_configured_maximum_and_refuses_more(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
    maximum: int | None,
) -> None:
    app = _app(
        settings, database_url, sessionmaker, **({"max_page_size": maximum} if maximum else {})
    )
    bounded = [
        (path, parameter["schema"]["maximum"])
        for path, operation in _operations(app, "get")
        for parameter in operation.get("parameters", ())
        if parameter["name"] == "limit"
    ]
    assert len(bounded) >= 15, bounded  # every keyset-paged list, the EPCIS query, anomalies
    async with _client(app) as client:
        for path, top in bounded:
            if path.endswith("/anomalies"):  # at most this many of each kind: its own setting
                assert top == settings.max_anomalies_per_kind == 5000
            else:
                assert top == (maximum or 500), path
            url = _url(path, str(world.enterprise_a))
            response = await client.get(url, params={"limit": top + 1}, headers=world.admin.headers)
            body = _limit(response, "page_size_too_large", parameter="limit", maximum=top)
            assert body["errors"][0]["pointer"] == "/limit", body


async def test_a_lowered_page_size_refuses_more_and_lowers_the_default(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
) -> None:
    app = _app(settings, database_url, sessionmaker, max_page_size=2)
    async with _client(app) as client:
        get = client.get
        over = await get("/api/v1/authorities?limit=3", headers=world.admin.headers)
        _limit(over, "page_size_too_large", parameter="limit", maximum=2)
        at = await get("/api/v1/authorities?limit=2", headers=world.admin.headers)
        default = await get("/api/v1/authorities", headers=world.admin.headers)
    for page in (at, default):  # three authorities: two on the first page
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) == 2
        assert page.json()["next_cursor"] is not None


async def test_a_batch_over_the_maximum_is_refused_with_the_count(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    world: World,
) -> None:
    app = _app(settings, database_url, sessionmaker, max_batch_items=3)
    headers = world.a_operator.headers
    before = await _rows(session)
    async with _client(app) as client:
        four = [_lot(world.facility_a) for _ in range(4)]
        refused = await client.post(f"{LOTS}/batch", json={"lots": four}, headers=headers)
        _limit(refused, "batch_too_large", field="/lots", maximum=3, count=4)
        # Bad items do not hide the count: it is the first thing said.
        four[1]["metal"] = "iron"
        bad = await client.post(f"{LOTS}/batch", json={"lots": four}, headers=headers)
        _limit(bad, "batch_too_large", field="/lots", maximum=3, count=4)
        assert await _rows(session) == before
        three = await client.post(
            f"{LOTS}/batch", json={"lots": four[2:] + four[:1]}, headers=headers
        )
        assert three.status_code == 201, three.text
        assert three.json()["count"] == 3
        document = (await client.get("/openapi.json")).json()
    assert (
        document["components"]["schemas"]["LotBatchCreate"]["properties"]["lots"]["maxItems"] == 3
    )


async def test_the_default_batch_takes_5000_lots_and_other_item_lists_are_batches_too(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    headers = world.a_operator.headers
    before = await _rows(session)
    lots = [_lot(world.facility_a)] * 5001
    response = await client.post(f"{LOTS}/batch", json={"lots": lots}, headers=headers)
    _limit(response, "batch_too_large", field="/lots", maximum=5000, count=5001)
    # A shipment's lots have a maximum of their own in the schema, refused the same way.
    shipment = {"to_facility_id": str(world.facility_b), "lot_ids": [str(uuid.uuid4())] * 501}
    response = await client.post("/api/v1/shipments", json=shipment, headers=headers)
    _limit(response, "batch_too_large", field="/lot_ids", maximum=500, count=501)
    assert await _rows(session) == before


async def test_a_string_over_its_maximum_is_refused_naming_the_field(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    before = await _rows(session)
    seller = {"kind": "individual", "name": "王" * 51, "id_number": "52010219900101123X"}
    response = await client.post(
        LOTS, json=_lot(world.facility_a, seller=seller), headers=world.a_operator.headers
    )
    _limit(response, "string_too_long", field="/seller/name", maximum=50)
    assert await _rows(session) == before
    # The login form too (before any password check).
    login = await client.post(
        "/api/v1/auth/token", data={"username": HUGE, "password": "whatever-it-is"}
    )
    _limit(login, "string_too_long", field="/username", maximum=64)


def _unbounded_strings(schema: dict[str, Any], components: dict[str, Any], at: str) -> list[str]:
    if "$ref" in schema:
        return _unbounded_strings(components[schema["$ref"].split("/")[-1]], components, at)
    found: list[str] = []
    alternatives = schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", [])
    numeric = any(option.get("type") == "number" for option in alternatives)
    for option in alternatives:
        if not (numeric and option.get("type") == "string"):  # a decimal may come as a string
            found += _unbounded_strings(option, components, at)
    for name, member in schema.get("properties", {}).items():
        found += _unbounded_strings(member, components, f"{at}/{name}")
    if isinstance(schema.get("items"), dict):
        found += _unbounded_strings(schema["items"], components, f"{at}/[]")
        if "maxItems" not in schema:
            found.append(f"{at} (array)")
    free = schema.get("type") == "string" and "enum" not in schema and "const" not in schema
    formatted = schema.get("format") in ("uuid", "date-time", "date")
    if free and not formatted and "maxLength" not in schema:
        found.append(at)
    return found


def test_every_request_string_and_list_has_a_maximum_in_the_openapi(app: FastAPI) -> None:
    document = app.openapi()
    components = document["components"]["schemas"]
    unbounded = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for content in operation.get("requestBody", {}).get("content", {}).values():
                unbounded += _unbounded_strings(content["schema"], components, f"{where} body")
            for parameter in operation.get("parameters", ()):
                at = f"{where} {parameter['in']} {parameter['name']}"
                unbounded += _unbounded_strings(parameter["schema"], components, at)
    assert unbounded == []


@pytest.mark.parametrize("value", [LONG, "\x00", "%", "[" * 40])
async def test_huge_or_odd_path_and_query_values_never_make_a_500(
    app: FastAPI, client: httpx.AsyncClient, world: World, value: str
) -> None:
    for path, operation in _operations(app, "get"):
        names = [p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"]
        for params in ({}, dict.fromkeys(names, value)):
            response = await client.get(
                _url(path, value), params=params, headers=world.admin.headers
            )
            assert response.status_code < 500, (path, params and "query", response.text)
            if response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_json_body_deeper_than_the_maximum_is_refused_before_it_is_read(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    headers = world.a_operator.headers
    before = await _rows(session)
    deep = _lot(world.facility_a, padding=_nested(32))  # 33 levels with the body itself
    response = await client.post(LOTS, json=deep, headers=headers)
    _limit(response, "json_too_deep", max_depth=32)
    batch = await client.post(f"{LOTS}/batch", json={"lots": [_nested(40)]}, headers=headers)
    _limit(batch, "json_too_deep", max_depth=32)
    # 32 levels pass the check (and are refused for the unknown member).
    shallower = _lot(world.facility_a, padding=_nested(31))
    _limit(await client.post(LOTS, json=shallower, headers=headers), "validation_failed")

    async def chunks() -> AsyncIterator[bytes]:
        text = orjson.dumps(deep)
        for start in range(0, len(text), 100):
            yield text[start : start + 100]

    chunked = await client.post(
        LOTS, content=chunks(), headers={**headers, "content-type": "application/json"}
    )
    _limit(chunked, "json_too_deep", max_depth=32)
    assert await _rows(session) == before
    # A form is no JSON: brackets in a password are just characters.
    login = await client.post(
        "/api/v1/auth/token", data={"username": "nobody", "password": "[" * 60}
    )
    _problem(login, 401, "unauthenticated")


async def test_the_json_depth_is_configurable(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    world: World,
) -> None:
    app = _app(settings, database_url, sessionmaker, max_json_depth=4)
    headers = world.a_operator.headers
    async with _client(app) as client:
        before = await _rows(session)
        five = _lot(world.facility_a, padding=_nested(4))
        _limit(await client.post(LOTS, json=five, headers=headers), "json_too_deep", max_depth=4)
        assert await _rows(session) == before
        # A registration nests 2 levels: accepted.
        accepted = await client.post(LOTS, json=_lot(world.facility_a), headers=headers)
        assert accepted.status_code == 201, accepted.text


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"{}", 1),
        (b'{"a": "[[[[[[", "b": [1, {"c": "}}]]"}]}', 3),
        (b'["\\"[[[[", ["\\\\", [[]]]]', 4),
        (b'{"a\\\\\\"[[": {"b": "\\\\"}, "c": [[["\\\\\\\\\\"{"]]]}', 4),
        (b'"[[[[[[[[[["', 0),
        (b"[[[[[[]]]]]]", 6),
        (b"[[], [[]], [[[]]], {}]", 4),
    ],
)
def test_depth_is_counted_without_parsing(body: bytes, depth: int) -> None:
    assert _depth(json.loads(body)) == depth
    for maximum in range(1, 8):
        assert nested_deeper_than(body, maximum) is (depth > maximum), maximum


def test_depth_matches_the_parser_on_random_documents() -> None:
    rng = random.Random(20261124)
    leaves = [1, None, "a{[", 'x"[', "\\", "]}", '\\"{{', "王[", ""]

    def document(depth: int) -> Any:
        if depth == 0 or rng.random() < 0.15:
            return rng.choice(leaves)
        if rng.random() < 0.5:
            return {f"k{i}": document(depth - 1) for i in range(rng.randint(0, 3))}
        return [document(depth - 1) for _ in range(rng.randint(0, 3))]

    for _ in range(500):
        value = document(rng.randint(0, 10))
        body = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        for maximum in range(1, 12):
            assert nested_deeper_than(body, maximum) is (_depth(value) > maximum), body


def _nesting(schema: dict[str, Any], components: dict[str, Any]) -> int:
    if "$ref" in schema:
        return _nesting(components[schema["$ref"].split("/")[-1]], components)
    alternatives = schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", [])
    depth = max((_nesting(option, components) for option in alternatives), default=0)
    if schema.get("type") == "object" or "properties" in schema:
        assert schema.get("additionalProperties") in (None, False), schema  # no free-form JSON
        members = [_nesting(member, components) for member in schema.get("properties", {}).values()]
        depth = max(depth, 1 + max(members, default=0))
    if schema.get("type") == "array":
        depth = max(depth, 1 + _nesting(schema.get("items", {}), components))
    return depth


def test_no_request_nests_deeper_than_the_smallest_depth_allowed(app: FastAPI) -> None:
    document = app.openapi()
    components = document["components"]["schemas"]
    deepest = max(
        _nesting(content["schema"], components)
        for operations in document["paths"].values()
        for operation in operations.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
    )
    smallest = Settings.model_json_schema()["properties"]["max_json_depth"]["minimum"]
    assert deepest == 4  # a batch: its lots, a lot, its seller
    assert deepest <= smallest
