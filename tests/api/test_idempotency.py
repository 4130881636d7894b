"""Idempotency-Key on creating POSTs (DESIGN §3): replay, mismatch, in flight, and a real race."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.registry.models import Enterprise
from integrations import idempotency
from integrations.database import session_factory
from tests.conftest import Live, World
from tests.factories import random_uscc


def _enterprise(uscc: str | None = None) -> dict[str, object]:
    return {
        "name": "幂等测试企业",
        "uscc": uscc or random_uscc(),
        "roles": ["recycler"],
        "region_code": "520102",
    }


async def test_a_retry_replays_the_first_response(client: httpx.AsyncClient, world: World) -> None:
    headers = {**world.admin.headers, "Idempotency-Key": "k-1"}
    body = _enterprise()
    first = await client.post("/api/v1/enterprises", json=body, headers=headers)
    again = await client.post("/api/v1/enterprises", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


async def test_same_key_other_body_is_422(client: httpx.AsyncClient, world: World) -> None:
    headers = {**world.admin.headers, "Idempotency-Key": "k-2"}
    assert (
        await client.post("/api/v1/enterprises", json=_enterprise(), headers=headers)
    ).is_success
    other = await client.post("/api/v1/enterprises", json=_enterprise(), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_per_principal(client: httpx.AsyncClient, world: World) -> None:
    """Another principal reusing a key string creates its own record, it sees no one's response."""
    body = {"name": "k", "role": "viewer", "enterprise_id": str(world.enterprise_a)}
    first = await client.post(
        "/api/v1/api-keys", json=body, headers={**world.admin.headers, "Idempotency-Key": "same"}
    )
    second = await client.post(
        "/api/v1/api-keys", json=body, headers={**world.a_admin.headers, "Idempotency-Key": "same"}
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers


async def test_a_failed_request_is_not_remembered(client: httpx.AsyncClient, world: World) -> None:
    headers = {**world.admin.headers, "Idempotency-Key": "k-3"}
    body = _enterprise()
    body["region_code"] = "999999"
    assert (await client.post("/api/v1/enterprises", json=body, headers=headers)).status_code == 422
    body["region_code"] = "520102"
    assert (await client.post("/api/v1/enterprises", json=body, headers=headers)).status_code == 201


async def test_in_flight_is_409(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    me = (await client.get("/api/v1/me", headers=world.admin.headers)).json()
    claim = idempotency.Claim(principal_id=me["principal_id"], key="k-busy", fingerprint="-")
    async with engine.connect() as other:  # another transaction holds the key, as a running request
        await other.execute(
            text("SELECT pg_advisory_lock(:id)"), {"id": idempotency._lock_id(claim)}
        )
        try:
            response = await client.post(
                "/api/v1/enterprises",
                json=_enterprise(),
                headers={**world.admin.headers, "Idempotency-Key": "k-busy"},
            )
        finally:
            await other.execute(text("SELECT pg_advisory_unlock_all()"))
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_in_flight"


async def test_fifty_concurrent_requests_with_one_key_create_one_record(live: Live) -> None:
    client, admin, engine = live.client, live.world.admin, live.engine
    body = _enterprise()
    headers = {**admin.headers, "Idempotency-Key": "race-1"}
    responses = await asyncio.gather(
        *(client.post("/api/v1/enterprises", json=body, headers=headers) for _ in range(50))
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert created, statuses
    assert len({r.json()["id"] for r in created}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in created) == 1
    assert all(
        r.json()["code"] == "idempotency_in_flight" for r in responses if r.status_code == 409
    )
    async with session_factory(engine)() as session:
        count = await session.scalar(
            select(func.count()).select_from(Enterprise).where(Enterprise.uscc == body["uscc"])  # type: ignore[arg-type]
        )
    assert count == 1
    # After the race every retry replays the one record.
    retry = await client.post("/api/v1/enterprises", json=body, headers=headers)
    assert retry.status_code == 201 and retry.json()["id"] == created[0].json()["id"]
