"""HTTP conventions: problem+json for every error, request ids, health, metrics, CORS, OpenAPI."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import World

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/v1/nowhere", 404, "not_found"),
        ("DELETE", "/api/v1/enterprises", 405, "method_not_allowed"),
        ("GET", "/api/v1/enterprises/not-a-uuid", 422, "validation_failed"),
        ("GET", "/api/v1/enterprises/01936f1e-8d4a-7c3e-9a51-2b7c1d0e4f55", 404, "not_found"),
    ],
)
async def test_errors_are_problem_json(
    client: httpx.AsyncClient, world: World, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path, headers=world.admin.headers)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"].endswith(code)
    assert problem["title"] and problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]


async def test_validation_errors_point_at_fields(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/api/v1/enterprises",
        json={"name": "", "uscc": "91520000214434146R", "roles": ["miner"]},
        headers=world.admin.headers,
    )
    assert response.status_code == 422
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert {"/name", "/roles/0", "/region_code"} <= pointers


async def test_malformed_json_is_422(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/api/v1/enterprises",
        content=b"{not json",
        headers={**world.admin.headers, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    await client.get("/api/v1/me")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert (
        'scrapflow_http_requests_total{method="GET",route="/api/v1/me",status="401"}'
        in metrics.text
    )


async def test_readyz_reports_a_dead_database(app: FastAPI, client: httpx.AsyncClient) -> None:
    from integrations.database import create_engine, session_factory

    dead = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    app.state.sessionmaker = session_factory(dead)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["code"] == "not_ready"
    await dead.dispose()


async def test_cors_when_configured(settings: object, database_url: str) -> None:
    from api.app import create_app
    from integrations.settings import Settings

    assert isinstance(settings, Settings)
    app = create_app(
        settings.model_copy(update={"cors_origins": ["https://console.example"]}), database_url
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        preflight = await c.options(
            "/api/v1/me",
            headers={"Origin": "https://console.example", "Access-Control-Request-Method": "GET"},
        )
    assert preflight.headers["access-control-allow-origin"] == "https://console.example"
    await app.state.engine.dispose()


def test_openapi_documents_problems_and_examples(app: FastAPI) -> None:
    spec = app.openapi()
    create = spec["paths"]["/api/v1/enterprises"]["post"]
    assert {"401", "403", "409", "422"} <= set(create["responses"])
    assert "Problem" in spec["components"]["schemas"]
    schema = spec["components"]["schemas"]["EnterpriseCreate"]
    assert schema["examples"][0]["uscc"] == "91520000214434146R"
    params = {p["name"] for p in create["parameters"]}
    assert "Idempotency-Key" in params
