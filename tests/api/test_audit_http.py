"""The audit trail over HTTP (issue 6): who sees which sealed events, keyset paging, filters,
verification by regulators only, and the latest checkpoint verifiable with the published key and
nothing but the `cryptography` package. A database of its own per test: the app commits for real,
so that the sealer (run here by the test, not in the background) can seal what it wrote."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from api.app import create_app
from domain.actor import SYSTEM
from domain.audit import service as audit
from domain.registry import service as registry
from integrations.settings import Settings
from tests.conftest import Json, Principal, World, build_world
from tests.databases import drop_database, migrated_database
from tests.integration.test_audit_chain import FIELDS, eventually

NOW = "2026-11-20T08:00:00+08:00"


def lot_body(facility_id: uuid.UUID | str) -> Json:
    return {
        "facility_id": str(facility_id),
        "metal": "aluminium",
        "category": "GB13586-WROUGHT",
        "net_kg": 812.345,
        "consumer_class": "post_consumer",
        "channel": "offline",
        "collected_at": NOW,
        "seller": {"kind": "individual", "name": "王小明", "id_number": "52010219900101123X"},
    }


@dataclass
class Audited:
    app: FastAPI
    client: httpx.AsyncClient
    world: World
    dsn: str
    centre_b: str

    async def seal(self) -> None:
        """Seal everything committed so far (in batches of 4, with a checkpoint every 5)."""
        maker = self.app.state.sessionmaker
        signer = self.app.state.signer

        async def step() -> bool:
            async with maker() as session:
                await audit.seal(session, signer, limit=4, checkpoint_every=5)
                await session.commit()
            conn = await asyncpg.connect(self.dsn)
            try:
                return not await conn.fetchval("SELECT count(*) FROM event WHERE seq IS NULL")
            finally:
                await conn.close()

        await eventually("every committed event sealed", step)

    async def sealed(self) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch("SELECT * FROM event WHERE seq IS NOT NULL ORDER BY seq")
        finally:
            await conn.close()

    async def register(self, who: Principal, facility: uuid.UUID | str) -> Json:
        response = await self.client.post(
            "/api/v1/lots", json=lot_body(facility), headers=who.headers
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def events(self, who: Principal | None, **params: Any) -> httpx.Response:
        return await self.client.get(
            "/api/v1/audit/events", params=params, headers=who.headers if who else {}
        )

    async def all_events(self, who: Principal, *, by: str = "cursor", **params: Any) -> list[Json]:
        """Every page, following next_cursor (or next_after_seq)."""
        items: list[Json] = []
        extra: dict[str, Any] = {}
        for _ in range(1000):
            response = await self.events(who, limit=2, **params, **extra)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 2
            items.extend(page["items"])
            if page["next_cursor"] is None:
                assert page["next_after_seq"] is None
                return items
            assert page["next_after_seq"] == int(page["next_cursor"]) == page["items"][-1]["seq"]
            extra = (
                {"cursor": page["next_cursor"]}
                if by == "cursor"
                else {"after_seq": page["next_after_seq"]}
            )
        raise AssertionError("paging never ended")


@asynccontextmanager
async def open_audited(settings: Settings) -> AsyncIterator[Audited]:
    url = migrated_database("sf_audit_http")
    app = create_app(settings, url)
    try:
        async with app.state.sessionmaker() as session:
            world = await build_world(session)
            centre = await registry.create_facility(
                session,
                SYSTEM,
                enterprise_id=world.enterprise_b,
                name="遵义预处理中心",
                kind="pretreatment_center",
                region_code="520302",
                address="遵义",
            )
            await session.commit()
        dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Audited(app, client, world, dsn, str(centre.id))
    finally:
        await app.state.engine.dispose()
        drop_database(url)


@pytest.fixture
async def audited(settings: Settings) -> AsyncIterator[Audited]:
    """A database of the test's own, with the world in it and nothing sealed yet."""
    async with open_audited(settings) as audited:
        yield audited


@dataclass
class Busy:
    """One database for the tests that only read: the world and `activity`, all sealed."""

    audited: Audited
    done: dict[str, Any]


@pytest.fixture(scope="module")
async def busy(settings: Settings) -> AsyncIterator[Busy]:
    async with open_audited(settings) as audited:
        yield Busy(audited, await activity(audited))


async def activity(audited: Audited) -> dict[str, Any]:
    """A registers three lots in Guiyang and ships one to B's centre in Zunyi; B registers two
    lots in Zunyi."""
    w = audited.world
    a_lots = [await audited.register(w.a_operator, w.facility_a) for _ in range(3)]
    b_lots = [await audited.register(w.b_admin, w.facility_b) for _ in range(2)]
    shipped = await audited.client.post(
        "/api/v1/shipments",
        json={
            "from_facility_id": str(w.facility_a),
            "to_facility_id": audited.centre_b,
            "lot_ids": [a_lots[0]["id"]],
            "vehicle_energy": "lng",
            "distance_km": 140,
        },
        headers=w.a_operator.headers,
    )
    assert shipped.status_code == 201, shipped.text
    await audited.seal()
    return {"a_lots": a_lots, "b_lots": b_lots, "shipment": shipped.json()}


def visible(row: asyncpg.Record, who: Principal, jurisdiction: str | None) -> bool:
    if who.enterprise_id is not None:
        return who.enterprise_id in row["enterprise_ids"]
    if jurisdiction is not None:
        return any(code.startswith(jurisdiction) for code in row["region_codes"])
    return True  # platform admin


# --- who sees what ------------------------------------------------------------------------------


async def test_every_caller_pages_through_exactly_the_events_it_may_see(busy: Busy) -> None:
    audited, done = busy.audited, busy.done
    w = audited.world
    rows = await audited.sealed()
    assert len(rows) > 20  # the world's registry events, six custody events
    callers = [
        (w.admin, None),
        (w.a_admin, None),
        (w.a_viewer, None),
        (w.b_admin, None),
        (w.province_inspector, "52"),
        (w.guiyang_supervisor, "5201"),
        (w.zunyi_supervisor, "5203"),
    ]
    seen: dict[str, set[str]] = {}
    for who, jurisdiction in callers:
        expected = [r["seq"] for r in rows if visible(r, who, jurisdiction)]
        assert expected, who.role
        by_cursor = await audited.all_events(who)
        by_after = await audited.all_events(who, by="after_seq")
        assert [e["seq"] for e in by_cursor] == expected, (who.role, jurisdiction)
        assert [e["seq"] for e in by_after] == expected
        seen[f"{who.role.value}:{jurisdiction or who.enterprise_id}"] = {
            e["subject_id"] for e in by_cursor
        }

    a_lot, b_lot = done["a_lots"][1]["id"], done["b_lots"][0]["id"]
    shipment = done["shipment"]["id"]
    guiyang, zunyi = seen["supervisor:5201"], seen["supervisor:5203"]
    a_sees, b_sees = seen[f"admin:{w.enterprise_a}"], seen[f"admin:{w.enterprise_b}"]
    assert a_lot in guiyang and a_lot not in zunyi
    assert b_lot in zunyi and b_lot not in guiyang
    assert shipment in guiyang and shipment in zunyi  # it touches both prefectures
    assert a_lot in a_sees and b_lot not in a_sees and shipment in a_sees
    assert b_lot in b_sees and a_lot not in b_sees and shipment in b_sees
    assert seen["inspector:52"] >= guiyang | zunyi


async def test_no_caller_is_shown_another_enterprise_or_region(busy: Busy) -> None:
    audited = busy.audited
    w = audited.world
    for item in await audited.all_events(w.b_admin):
        assert str(w.enterprise_b) in item["enterprise_ids"]
    for item in await audited.all_events(w.guiyang_supervisor):
        assert any(code.startswith("5201") for code in item["region_codes"]), item
    # Zunyi's authority asking for Guiyang's facility: nothing of it.
    only_a = await audited.all_events(w.zunyi_supervisor, facility_id=str(w.facility_a))
    assert all("520302" in e["region_codes"] for e in only_a)
    assert {e["type"] for e in only_a} == {"shipment.dispatched"}
    assert await audited.all_events(w.zunyi_supervisor, enterprise_id=str(w.enterprise_a)) == [
        e
        for e in await audited.all_events(w.zunyi_supervisor)
        if str(w.enterprise_a) in e["enterprise_ids"]
    ]
    unauthenticated = await audited.events(None)
    assert unauthenticated.status_code == 401


async def test_unsealed_events_are_not_listed_until_sealed(audited: Audited) -> None:
    await activity(audited)
    w = audited.world
    fresh = await audited.register(w.a_operator, w.facility_a)
    before = await audited.events(w.admin, lot_id=fresh["id"])
    assert before.status_code == 200 and before.json()["items"] == []
    everything = await audited.all_events(w.admin)
    assert all(e["seq"] is not None for e in everything)
    assert fresh["id"] not in {e["subject_id"] for e in everything}
    await audited.seal()
    after = (await audited.events(w.admin, lot_id=fresh["id"])).json()["items"]
    assert [(e["type"], e["subject_id"]) for e in after] == [("lot.registered", fresh["id"])]
    assert after[0]["seq"] == everything[-1]["seq"] + 1


async def test_filters_select_exactly_their_events(busy: Busy) -> None:
    audited, done = busy.audited, busy.done
    w = audited.world
    rows = await audited.sealed()
    lot = uuid.UUID(done["a_lots"][0]["id"])  # registered, then shipped
    middle = rows[len(rows) // 2]["occurred_at"]
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({"type": "lot.registered"}, [r["seq"] for r in rows if r["type"] == "lot.registered"]),
        (
            {"enterprise_id": str(w.enterprise_b)},
            [r["seq"] for r in rows if w.enterprise_b in r["enterprise_ids"]],
        ),
        (
            {"facility_id": str(w.facility_a)},
            [r["seq"] for r in rows if w.facility_a in r["facility_ids"]],
        ),
        ({"lot_id": str(lot)}, [r["seq"] for r in rows if lot in r["lot_ids"]]),
        ({"from": middle.isoformat()}, [r["seq"] for r in rows if r["occurred_at"] >= middle]),
        ({"to": middle.isoformat()}, [r["seq"] for r in rows if r["occurred_at"] < middle]),
        ({"after_seq": 7}, [r["seq"] for r in rows if r["seq"] > 7]),
        (
            {"type": "lot.registered", "facility_id": str(w.facility_b)},
            [
                r["seq"]
                for r in rows
                if r["type"] == "lot.registered" and w.facility_b in r["facility_ids"]
            ],
        ),
    ]
    for params, expected in cases:
        assert expected, params
        assert [e["seq"] for e in await audited.all_events(w.admin, **params)] == expected, params
    assert len(cases[3][1]) == 2  # the lot's registration and its dispatch
    # Filters narrow what the caller may see; they never widen it.
    b_sees = await audited.all_events(w.b_admin, enterprise_id=str(w.enterprise_a))
    assert [e["type"] for e in b_sees] == ["shipment.dispatched"]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "abc"},
        {"cursor": "-1"},
        {"limit": 0},
        {"limit": 501},
        {"after_seq": -1},
        {"from": "2026-11-20T08:00:00"},  # no time zone
        {"lot_id": "not-a-uuid"},
    ],
)
async def test_bad_event_queries_are_422(busy: Busy, params: dict[str, Any]) -> None:
    audited = busy.audited
    response = await audited.events(audited.world.admin, **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_listed_events_carry_a_chain_a_regulator_can_recompute_offline(
    busy: Busy,
) -> None:
    audited = busy.audited
    items = await audited.all_events(audited.world.admin)
    previous = "00" * 32
    for item in items:
        assert item["prev_hash"] == previous
        document = {name: item[name] for name in FIELDS}
        occurred = datetime.fromisoformat(item["occurred_at"]).astimezone(UTC)
        document["occurred_at"] = occurred.isoformat(timespec="microseconds").replace("+00:00", "Z")
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(bytes.fromhex(previous) + canonical.encode()).hexdigest()
        assert item["hash"] == digest, item["seq"]
        previous = digest
    assert "txid" not in items[0]


# --- verification -------------------------------------------------------------------------------


async def test_regulators_verify_the_chain_and_enterprises_may_not(busy: Busy) -> None:
    audited = busy.audited
    w = audited.world
    head = len(await audited.sealed())
    for who in (w.admin, w.province_inspector, w.province_supervisor, w.guiyang_supervisor):
        response = await audited.client.get("/api/v1/audit/verify", headers=who.headers)
        assert response.status_code == 200, (who.role, response.text)
        body = response.json()
        assert body["valid"] is True and body["broken"] is None
        assert (body["from_seq"], body["to_seq"], body["head_seq"]) == (1, head, head)
        assert body["events_checked"] == head
        assert body["checkpoints_checked"] >= head // 8
    for who in (w.a_admin, w.a_operator, w.a_viewer, w.b_admin):
        response = await audited.client.get("/api/v1/audit/verify", headers=who.headers)
        assert response.status_code == 403, (who.role, response.text)
    assert (await audited.client.get("/api/v1/audit/verify")).status_code == 401

    ranged = await audited.client.get(
        "/api/v1/audit/verify", params={"from_seq": 3, "to_seq": 9}, headers=w.admin.headers
    )
    assert ranged.status_code == 200
    assert (ranged.json()["from_seq"], ranged.json()["to_seq"]) == (3, 9)
    assert ranged.json()["events_checked"] == 7
    for params in ({"from_seq": 5, "to_seq": 4}, {"from_seq": 0}, {"to_seq": "x"}):
        bad = await audited.client.get(
            "/api/v1/audit/verify", params=params, headers=w.admin.headers
        )
        assert bad.status_code == 422, (params, bad.text)


async def test_verification_over_http_names_an_edited_event(audited: Audited) -> None:
    await activity(audited)
    conn = await asyncpg.connect(audited.dsn)  # a database of this test's own
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "UPDATE event SET payload = jsonb_set(payload, '{net_g}', '1') WHERE seq ="
            " (SELECT min(seq) FROM event WHERE type = 'lot.registered')"
        )
        edited = await conn.fetchval("SELECT min(seq) FROM event WHERE type = 'lot.registered'")
    finally:
        await conn.close()
    response = await audited.client.get(
        "/api/v1/audit/verify", headers=audited.world.province_inspector.headers
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert (body["broken"]["seq"], body["broken"]["reason"]) == (edited, "edited")
    assert body["events_checked"] == edited - 1


# --- checkpoints --------------------------------------------------------------------------------


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def test_the_latest_checkpoint_verifies_with_the_published_key_alone(
    audited: Audited,
) -> None:
    w = audited.world
    none_yet = await audited.client.get(
        "/api/v1/audit/checkpoints/latest", headers=w.province_inspector.headers
    )
    assert none_yet.status_code == 404
    await activity(audited)
    rows = await audited.sealed()
    response = await audited.client.get(
        "/api/v1/audit/checkpoints/latest", headers=w.province_inspector.headers
    )
    assert response.status_code == 200, response.text
    checkpoint = response.json()
    assert rows[-1]["seq"] - checkpoint["seq"] < 5  # one every 5 events
    statement = json.loads(checkpoint["payload"])
    assert statement["seq"] == checkpoint["seq"]
    assert (
        statement["head_hash"]
        == checkpoint["head_hash"]
        == rows[statement["seq"] - 1]["hash"].hex()
    )
    assert statement["key_id"] == checkpoint["key_id"]

    keys = (await audited.client.get("/api/v1/public/keys")).json()  # no credentials
    (key,) = [k for k in keys if k["key_id"] == checkpoint["key_id"]]
    assert key["current"] is True and key["algorithm"] == "Ed25519"
    public = Ed25519PublicKey.from_public_bytes(_unb64url(key["public_key"]))
    public.verify(_unb64url(checkpoint["signature"]), checkpoint["payload"].encode())
    assert _unb64url(key["jwk"]["x"]) == _unb64url(key["public_key"])

    # The head it states is the hash the listed event carries.
    listed = (await audited.events(w.admin, after_seq=checkpoint["seq"] - 1, limit=1)).json()[
        "items"
    ][0]
    assert (listed["seq"], listed["hash"]) == (checkpoint["seq"], checkpoint["head_hash"])
    assert (await audited.client.get("/api/v1/audit/checkpoints/latest")).status_code == 401
