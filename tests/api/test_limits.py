"""Limits at the door: oversized bodies 413 (larger allowance for batches), too many requests
429 with Retry-After, per credential and per address on public endpoints; security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
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
