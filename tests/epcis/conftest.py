"""EPCIS fixtures: the GS1 EPCIS 2.0 JSON Schema validator, and one custody scenario with every
kind of event, sealed.

Events are listed only once sealed, and the sealer seals only rows whose inserting transaction is
older than every running one. Inside the usual rolled-back test transaction the events' inserting
transaction is the test's own, still running, so they could never be sealed (short of faking
`seq`). So the scenario runs on a database of its own where the app commits for real, as in
production, and the test runs the real sealer (`domain.audit.service.seal`) until every committed
event is sealed. The scenario is built once per module; the EPCIS endpoint only reads."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from jsonschema import Draft7Validator, FormatChecker
from sqlalchemy import select
from sqlalchemy.engine import make_url

from api.app import create_app
from domain.actor import SYSTEM, Role
from domain.audit import service as audit
from domain.registry import service as registry
from domain.registry.models import Enterprise
from integrations.settings import Settings
from tests.conftest import Json, Principal, World, build_world, make_key
from tests.custody.conftest import lot_body
from tests.databases import drop_database, migrated_database
from tests.factories import random_uscc
from tests.integration.test_audit_chain import eventually

DATA = Path(__file__).parent.parent / "data" / "epcis"
SCHEMA_PATH = DATA / "EPCIS-JSON-Schema.json"
WROUGHT, FRAGMENTS, SHREDDED = "GB13586-WROUGHT", "GB13586-FRAGMENTS", "GB38472-SHREDDED"

# --- the validator ----------------------------------------------------------------------------

# jsonschema checks "uri" only with rfc3987 installed and "date-time" only with
# rfc3339-validator; neither is a dependency here, so both are checked by these (RFC 3986 §3
# absolute URI; RFC 3339 §5.6 date-time). Without them every property name and identifier would
# pass unchecked.
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*:"  # scheme ":"
    r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*"  # hier-part [ "?" query ]
    r"(?:#(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?"  # [ "#" fragment ]
)
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
FORMATS = FormatChecker(formats=())


@FORMATS.checks("uri")
def is_uri(value: object) -> bool:
    return not isinstance(value, str) or _URI.fullmatch(value) is not None


@FORMATS.checks("date-time", raises=ValueError)
def is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if _DATE_TIME.fullmatch(value) is None:
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # real calendar values
    return True


def schema() -> Json:
    loaded: Json = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="session")
def validator() -> Draft7Validator:
    document = schema()
    assert document["$schema"] == "http://json-schema.org/draft-07/schema#"
    Draft7Validator.check_schema(document)
    return Draft7Validator(document, format_checker=FORMATS)


def problems(validator: Draft7Validator, document: Json) -> list[str]:
    """Every schema violation, with where it is (empty when the document is valid)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]


# --- the scenario -----------------------------------------------------------------------------


@dataclass
class Scenario:
    """R = world A (recycler, Guiyang), P = world B's pretreatment centre (Zunyi), S a smelter
    (Anshun), M a processor (Bijie), C an enterprise that takes part in nothing."""

    app: FastAPI
    client: httpx.AsyncClient
    world: World
    dsn: str
    centre: str = ""
    smelter: str = ""
    plant: str = ""
    s: uuid.UUID = field(default_factory=uuid.uuid4)  # set by the setting
    m: uuid.UUID = field(default_factory=uuid.uuid4)
    s_admin: Principal | None = None
    m_admin: Principal | None = None
    c_admin: Principal | None = None
    uscc: dict[uuid.UUID, str] = field(default_factory=dict)
    lots: dict[str, Json] = field(default_factory=dict)  # as the API answered, by name
    shipments: dict[str, Json] = field(default_factory=dict)
    runs: dict[str, Json] = field(default_factory=dict)
    certificate: Json = field(default_factory=dict)
    refused_part: Json = field(default_factory=dict)
    split_parts: list[Json] = field(default_factory=list)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def principal(self, name: str) -> Principal:
        found = {
            "admin": self.world.admin,
            "province": self.world.province_inspector,
            "guiyang": self.world.guiyang_supervisor,
            "zunyi": self.world.zunyi_supervisor,
            "R": self.world.a_operator,
            "P": self.world.b_admin,
            "S": self.s_admin,
            "M": self.m_admin,
            "C": self.c_admin,
        }[name]
        assert found is not None
        return found

    async def post(self, who: Principal, path: str, body: Json, status: int = 201) -> Json:
        response = await self.client.post(path, json=body, headers=who.headers)
        assert response.status_code == status, response.text
        answer: Json = response.json()
        return answer

    async def epcis(self, who: Principal | None, **params: Any) -> httpx.Response:
        return await self.client.get(
            "/api/v1/epcis/events", params=params, headers=who.headers if who else {}
        )

    async def seal(self) -> None:
        maker = self.app.state.sessionmaker
        signer = self.app.state.signer

        async def step() -> bool:
            async with maker() as session:
                await audit.seal(session, signer)
                await session.commit()
            conn = await asyncpg.connect(self.dsn)
            try:
                return not await conn.fetchval("SELECT count(*) FROM event WHERE seq IS NULL")
            finally:
                await conn.close()

        await eventually("every committed event sealed", step)


async def _setting(scenario: Scenario) -> None:
    """S's smelter, M's plant, B's centre, C: committed through the app's own sessions."""
    world = scenario.world
    async with scenario.app.state.sessionmaker() as session:
        centre = await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=world.enterprise_b,
            name="遵义预处理中心",
            kind="pretreatment_center",
            region_code="520302",
            address="遵义",
        )
        smelting = await registry.create_enterprise(
            session,
            SYSTEM,
            name="S 安顺铝业",
            uscc=random_uscc("520402"),
            roles=["smelter"],
            region_code="520402",
        )
        smelter = await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=smelting.id,
            name="S smelter",
            kind="smelter",
            region_code="520402",
            address="Anshun",
        )
        processing = await registry.create_enterprise(
            session,
            SYSTEM,
            name="M 毕节铝材",
            uscc=random_uscc("520502"),
            roles=["processor"],
            region_code="520502",
        )
        plant = await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=processing.id,
            name="M extrusion plant",
            kind="processing_plant",
            region_code="520502",
            address="Bijie",
        )
        bystander = await registry.create_enterprise(
            session,
            SYSTEM,
            name="C recycling",
            uscc=random_uscc("520402"),
            roles=["recycler"],
            region_code="520402",
        )
        scenario.centre, scenario.smelter, scenario.plant = (
            str(centre.id),
            str(smelter.id),
            str(plant.id),
        )
        scenario.s, scenario.m = smelting.id, processing.id
        scenario.s_admin = await make_key(session, Role.admin, smelting.id)
        scenario.m_admin = await make_key(session, Role.admin, processing.id)
        scenario.c_admin = await make_key(session, Role.admin, bystander.id)
        enterprises = await session.scalars(select(Enterprise))
        scenario.uscc = {e.id: e.uscc for e in enterprises}
        await session.commit()


async def _play(sc: Scenario) -> None:
    """Every kind of event, in this order."""
    w = sc.world
    r, p = w.a_operator, w.b_admin
    s, m = sc.principal("S"), sc.principal("M")
    point = str(w.facility_a)
    now = sc.now

    async def register(name: str, kg: float, **overrides: Any) -> None:
        sc.lots[name] = await sc.post(r, "/api/v1/lots", lot_body(point, kg, **overrides))

    await register("L1", 603, category=WROUGHT, channel="offline")
    await register("L2", 410, category=FRAGMENTS, channel="online", consumer_class="pre_consumer")
    await register("L3", 50)
    await register("L4", 120)
    # R splits L4 into 70 + 50 kg.
    split = await sc.post(r, f"/api/v1/lots/{sc.lots['L4']['id']}/split", {"parts_kg": [70, 50]})
    sc.split_parts = split["children"]

    async def ship(name: str, who: Principal, source: str, target: str, lots: list[str], **x: Any):
        body = {"from_facility_id": source, "to_facility_id": target, "lot_ids": lots, **x}
        sc.shipments[name] = await sc.post(who, "/api/v1/shipments", body)

    # R → P: L1 and L2 by diesel truck, 120 km. R also sends L3 and calls it back.
    ids = [sc.lots["L1"]["id"], sc.lots["L2"]["id"]]
    await ship("first", r, point, sc.centre, ids, vehicle_energy="diesel", distance_km=120)
    await ship("called_back", r, point, sc.centre, [sc.lots["L3"]["id"]])
    await sc.post(
        r,
        f"/api/v1/shipments/{sc.shipments['called_back']['id']}/cancel",
        {"reason": "truck broke down"},
        status=200,
    )
    # P weighs L1 at 590 kg (13 kg short: a discrepancy, which has no EPCIS meaning) and
    # refuses 10 kg of L2 as wet: accepted 590 + 400 kg; the 10 kg become a lot of R's.
    receipt = await sc.post(
        p,
        f"/api/v1/shipments/{sc.shipments['first']['id']}/receipt",
        {
            "items": [
                {"lot_id": sc.lots["L1"]["id"], "received_kg": 590},
                {
                    "lot_id": sc.lots["L2"]["id"],
                    "received_kg": 410,
                    "refused_kg": 10,
                    "refusal_reason": "wet",
                },
            ]
        },
    )
    sc.shipments["first_received"] = receipt
    refused_id = next(i["refused_lot_id"] for i in receipt["items"] if i["refused_lot_id"])
    response = await sc.client.get(f"/api/v1/lots/{refused_id}", headers=r.headers)
    assert response.status_code == 200, response.text
    sc.refused_part = response.json()

    # P shreds 590 + 400 kg into 940 kg and 50 kg of residue, two to three hours ago.
    sc.runs["shredding"] = await sc.post(
        p,
        "/api/v1/transformations",
        {
            "facility_id": sc.centre,
            "process": "shredding",
            "started_at": (now - timedelta(hours=3)).isoformat(),
            "ended_at": (now - timedelta(hours=2)).isoformat(),
            "inputs": [
                {"lot_id": sc.lots["L1"]["id"], "kg": 590},
                {"lot_id": sc.lots["L2"]["id"], "kg": 400},
            ],
            "outputs": [{"kind": "scrap", "metal": "aluminium", "category": SHREDDED, "kg": 940}],
            "losses": [{"kind": "non_metallic_residue", "kg": 50}],
        },
    )
    shreds = sc.runs["shredding"]["outputs"][0]
    # P → S: the shreds, by LNG truck, 200 km; S takes all 940 kg.
    await ship("shreds", p, sc.centre, sc.smelter, [shreds["id"]], vehicle_energy="lng")
    await sc.post(
        s,
        f"/api/v1/shipments/{sc.shipments['shreds']['id']}/receipt",
        {"items": [{"lot_id": shreds["id"], "received_kg": 940}]},
    )
    # S melts 840 kg of shreds with 150 kg of primary aluminium: a 970 kg ingot, 20 kg dross.
    sc.runs["melting"] = await sc.post(
        s,
        "/api/v1/transformations",
        {
            "facility_id": sc.smelter,
            "process": "melting",
            "started_at": (now - timedelta(hours=1, minutes=30)).isoformat(),
            "ended_at": (now - timedelta(hours=1)).isoformat(),
            "inputs": [{"lot_id": shreds["id"], "kg": 840}],
            "primary_inputs": [{"metal": "aluminium", "kg": 150, "description": "AL99.70"}],
            "outputs": [
                {"kind": "product", "metal": "aluminium", "product_form": "ingot", "kg": 970}
            ],
            "losses": [{"kind": "dross", "kg": 20}],
        },
    )
    # S records a run of the other 100 kg that ended ten days ago, then voids it.
    sc.runs["voided"] = await sc.post(
        s,
        "/api/v1/transformations",
        {
            "facility_id": sc.smelter,
            "process": "melting",
            "started_at": (now - timedelta(days=10, hours=1)).isoformat(),
            "ended_at": (now - timedelta(days=10)).isoformat(),
            "inputs": [{"lot_id": shreds["id"], "kg": 100}],
            "outputs": [
                {"kind": "product", "metal": "aluminium", "product_form": "ingot", "kg": 100}
            ],
        },
    )
    await sc.post(
        s,
        f"/api/v1/transformations/{sc.runs['voided']['id']}/void",
        {"reason": "wrong furnace"},
        status=200,
    )
    ingot = sc.runs["melting"]["outputs"][0]
    # S certifies the ingot's recycled content to M, ships it (diesel, 50 km), M takes it all.
    sc.certificate = await sc.post(
        s,
        "/api/v1/certificates",
        {"lot_id": ingot["id"], "recipient_enterprise_id": str(sc.m), "method": "proportional"},
    )
    await ship("ingot", s, sc.smelter, sc.plant, [ingot["id"]], vehicle_energy="diesel")
    await sc.post(
        m,
        f"/api/v1/shipments/{sc.shipments['ingot']['id']}/receipt",
        {"items": [{"lot_id": ingot["id"], "received_kg": 970}]},
    )
    # Then S revokes the certificate.
    await sc.post(
        s,
        f"/api/v1/certificates/{sc.certificate['id']}/revoke",
        {"reason": "claim recomputed"},
        status=200,
    )


@pytest.fixture(scope="module")
async def scenario(settings: Settings) -> AsyncIterator[Scenario]:
    url = migrated_database("sf_epcis")
    app = create_app(settings, url)
    try:
        async with app.state.sessionmaker() as session:
            world = await build_world(session)
            await session.commit()
        dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            sc = Scenario(app, client, world, dsn)
            await _setting(sc)
            await _play(sc)
            await sc.seal()
            yield sc
    finally:
        await app.state.engine.dispose()
        drop_database(url)
