"""SCRAPFLOW_READ_DATABASE_URL: report and regulator routes read from the replica, everything else
(authentication included) from the primary, and the replica's sessions refuse writes.

The "replica" here is a second migrated database with different data: a world of its own, one lot
of 100 kg shipped from A's point (Guiyang) to B's centre (Zunyi) and received as 97 kg (a weight
discrepancy), every event sealed and checkpointed. The primary is the test's rolled-back
transaction, as everywhere. A route that answers with the replica's rows read the replica."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from domain.audit import service as audit
from domain.lots.models import Lot
from integrations.settings import Settings
from tests.conftest import Json, World, build_world
from tests.custody.conftest import Custody, build_custody, lot_body
from tests.databases import drop_database, migrated_database

API = "/api/v1"
PERIOD = {"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@dataclass
class Replica:
    url: str
    dsn: str  # libpq form, for asyncpg
    world: World  # the replica's own enterprises and facilities (its principals are never used)
    lot: Json
    shipment: Json
    discrepancy_id: str

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


async def _seal_all(app: FastAPI, dsn: str) -> None:
    while True:
        async with app.state.sessionmaker() as session:
            await audit.seal(session, app.state.signer, checkpoint_every=1)
            await session.commit()
        conn = await asyncpg.connect(dsn)
        try:
            if not await conn.fetchval("SELECT count(*) FROM event WHERE seq IS NULL"):
                return
        finally:
            await conn.close()


@pytest.fixture(scope="module")
async def replica(settings: Settings) -> AsyncIterator[Replica]:
    """Filled through an app of its own on that database (writable: it plays the replica's
    primary), then sealed."""
    url = migrated_database("sf_replica" + os.environ.get("SCRAPFLOW_TEST_DB_SUFFIX", ""))
    writer = create_app(settings, url)
    try:
        async with writer.state.sessionmaker() as session:
            world = await build_world(session)
            await session.commit()
        transport = httpx.ASGITransport(app=writer)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            async with writer.state.sessionmaker() as session:
                custody: Custody = await build_custody(session, world, client)
            lot = await custody.register(100)
            shipment = ok(await custody.ship([lot["id"]]), 201)
            ok(
                await custody.receive(shipment["id"], [{"lot_id": lot["id"], "received_kg": 97}]),
                201,
            )
            (discrepancy,) = ok(
                await client.get(f"{API}/discrepancies", headers=world.a_admin.headers)
            )["items"]
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        await _seal_all(writer, dsn)
        yield Replica(url, dsn, world, lot, shipment, discrepancy["id"])
    finally:
        await writer.state.engine.dispose()
        drop_database(url)


@dataclass
class Replicated:
    app: FastAPI
    client: httpx.AsyncClient


@pytest.fixture
async def replicated(
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    replica: Replica,
) -> AsyncIterator[Replicated]:
    """The app as the test app (primary: the rolled-back transaction) with a read URL."""
    app = create_app(
        settings.model_copy(update={"read_database_url": replica.url}),
        database_url,
        sessionmaker=sessionmaker,
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Replicated(app, client)
    finally:
        await app.state.read_engine.dispose()
        await app.state.engine.dispose()


async def test_report_routes_answer_from_the_replica(
    replicated: Replicated, replica: Replica, world: World
) -> None:
    client, admin = replicated.client, world.admin.headers  # authenticated on the primary
    theirs, ours = replica.world.enterprise_a, world.enterprise_a

    # Control: the primary's own routes do not know the replica's enterprise, and vice versa.
    assert (await client.get(f"{API}/enterprises/{theirs}", headers=admin)).status_code == 404
    assert ok(await client.get(f"{API}/enterprises/{ours}", headers=admin))["id"] == str(ours)

    statement = ok(
        await client.get(f"{API}/enterprises/{theirs}/statement", params=PERIOD, headers=admin)
    )
    assert statement["enterprise_id"] == str(theirs)
    mine = await client.get(f"{API}/enterprises/{ours}/statement", headers=admin)
    assert mine.status_code == 404, "the primary's enterprise is not on the replica"

    credits = ok(await client.get(f"{API}/enterprises/{theirs}/credits", headers=admin))
    assert credits["enterprise_id"] == str(theirs)
    assert (await client.get(f"{API}/enterprises/{ours}/credits", headers=admin)).status_code == 404

    flows = ok(await client.get(f"{API}/reports/flows", params=PERIOD, headers=admin))
    assert [
        (f["from_region"], f["to_region"], f["shipments"], Decimal(str(f["dispatched_kg"])))
        for f in flows["flows"]
    ] == [("5201", "5203", 1, Decimal(100))]

    indicators = ok(await client.get(f"{API}/reports/indicators", params=PERIOD, headers=admin))
    (clean,) = [i for i in indicators["indicators"] if i["key"] == "clean_transport_share"]
    # 0.1 t x 140 km by LNG, nothing clean: measured (0), where an empty database has nothing.
    assert Decimal(str(clean["denominator"])) == Decimal(14)

    anomalies = ok(await client.get(f"{API}/reports/anomalies", params=PERIOD, headers=admin))
    assert [(a["kind"], a["subject_id"]) for a in anomalies["anomalies"]] == [
        ("weight_discrepancy", replica.discrepancy_id)
    ]

    register = ok(
        await client.get(
            f"{API}/facilities/{replica.world.facility_a}/register",
            params={**PERIOD, "direction": "outgoing", "format": "json"},
            headers=admin,
        )
    )
    assert [row["lot_code"] for row in register] == [replica.lot["code"]]

    sealed = await replica.fetch("SELECT seq, type FROM event WHERE seq IS NOT NULL ORDER BY seq")
    events = ok(await client.get(f"{API}/audit/events", params={"limit": 500}, headers=admin))
    assert [(e["seq"], e["type"]) for e in events["items"]] == [
        (r["seq"], r["type"]) for r in sealed
    ]

    verification = ok(await client.get(f"{API}/audit/verify", headers=admin))
    assert verification["valid"] is True
    assert verification["events_checked"] == verification["head_seq"] == sealed[-1]["seq"]

    (head,) = await replica.fetch("SELECT max(seq) AS seq FROM audit_checkpoint")
    checkpoint = ok(await client.get(f"{API}/audit/checkpoints/latest", headers=admin))
    assert checkpoint["seq"] == head["seq"]

    epcis = await client.get(f"{API}/epcis/events", params={"limit": 500}, headers=admin)
    assert epcis.status_code == 200, epcis.text
    assert f"urn:scrapflow:lot:{replica.lot['code']}" in epcis.text


async def test_writes_and_their_read_backs_go_to_the_primary(
    replicated: Replicated, replica: Replica, world: World, session: AsyncSession
) -> None:
    client = replicated.client
    created = ok(
        await client.post(
            f"{API}/lots",
            json=lot_body(str(world.facility_a), 42),
            headers=world.a_operator.headers,
        ),
        201,
    )
    # Read back at once, on the primary: a lagging replica would not have it yet.
    again = ok(await client.get(f"{API}/lots/{created['id']}", headers=world.a_operator.headers))
    assert again["code"] == created["code"]
    assert await session.get(Lot, uuid.UUID(created["id"])) is not None
    assert await replica.fetch("SELECT 1 FROM lot WHERE id = $1", uuid.UUID(created["id"])) == []


async def test_a_write_through_the_read_session_fails(
    replicated: Replicated, replica: Replica
) -> None:
    """The replica database here accepts writes; the read engine's sessions still refuse them."""
    before = await replica.fetch(
        "SELECT name FROM enterprise WHERE id = $1", replica.world.enterprise_a
    )
    async with replicated.app.state.read_sessionmaker() as reader:
        with pytest.raises(DBAPIError) as refused:
            await reader.execute(
                text("UPDATE enterprise SET name = 'overwritten' WHERE id = :id"),
                {"id": replica.world.enterprise_a},
            )
    assert refused.value.orig is not None
    assert getattr(refused.value.orig, "sqlstate", None) == "25006"  # read_only_sql_transaction
    after = await replica.fetch(
        "SELECT name FROM enterprise WHERE id = $1", replica.world.enterprise_a
    )
    assert after == before


async def test_readyz_reports_the_replica(replicated: Replicated) -> None:
    assert ok(await replicated.client.get("/readyz")) == {"status": "ready", "replica": "ready"}


async def test_a_dead_replica_fails_the_reports_alone(
    settings: Settings, replicated: Replicated, world: World
) -> None:
    """Reports answer 503 database_unavailable (retry later); the primary's routes and readiness
    go on: the replica is reported, not required."""
    dead = create_app(
        settings.model_copy(
            update={"read_database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
        ),
        "postgresql+asyncpg://unused@127.0.0.1:1/none",
        sessionmaker=replicated.app.state.sessionmaker,
    )
    admin = world.admin.headers
    transport = httpx.ASGITransport(app=dead)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            report = await client.get(
                f"{API}/enterprises/{world.enterprise_a}/statement", headers=admin
            )
            enterprise = await client.get(f"{API}/enterprises/{world.enterprise_a}", headers=admin)
            ready = ok(await client.get("/readyz"))
    finally:
        await dead.state.read_engine.dispose()
    assert report.status_code == 503, report.text
    assert report.headers["content-type"] == "application/problem+json"
    assert report.json()["code"] == "database_unavailable"
    assert enterprise.status_code == 200, enterprise.text
    assert ready["status"] == "ready"
    assert ready["replica"].startswith("unavailable: ")


async def test_without_a_read_url_reports_read_through_the_request_session(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    """The test app's sessionmaker (one rolled-back transaction) serves the reports too: they see
    the world this test committed only to its savepoint."""
    assert app.state.read_engine is None
    assert app.state.read_sessionmaker is app.state.sessionmaker
    statement = await client.get(
        f"{API}/enterprises/{world.enterprise_a}/statement", headers=world.admin.headers
    )
    assert statement.status_code == 200, statement.text
    assert statement.json()["enterprise_id"] == str(world.enterprise_a)


def test_the_read_url_comes_from_the_environment_with_the_asyncpg_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRAPFLOW_READ_DATABASE_URL", "postgres://reader:pw@replica:5432/scrapflow")
    monkeypatch.setenv("SCRAPFLOW_READ_DB_POOL_SIZE", "4")
    configured = Settings()
    assert configured.read_database_url == "postgresql+asyncpg://reader:pw@replica:5432/scrapflow"
    assert configured.read_db_pool_size == 4
    monkeypatch.delenv("SCRAPFLOW_READ_DATABASE_URL")
    assert Settings().read_database_url is None
