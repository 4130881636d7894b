"""A tenant's world for the isolation matrix: enterprise A (Guiyang, 5201) with an object of
every kind a route takes in its path, committed and sealed as in production; and what of it a
foreign caller must never read.

A works alone: its own collection point, pretreatment centre, smelter and warehouse, all in
Guiyang, and certifies to C, another Guiyang enterprise. So nothing of A touches enterprise B
(Zunyi) or the Zunyi bureau (5203): for them every one of A's records must be as if it did not
exist. B has a lot of its own, so that B's lists are not trivially empty."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlmodel import col

from domain.actor import SYSTEM, Role
from domain.audit import service as audit
from domain.identity.models import ApiKey
from domain.registry import service as registry
from domain.registry.models import Enterprise
from domain.webhooks import service as webhooks
from tests.conftest import Json, Principal, World, make_key
from tests.custody.conftest import lot_body
from tests.factories import random_uscc
from tests.integration.test_audit_chain import eventually

UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HOOK_URL = "https://erp.a-recycling.example/scrapflow-hooks"
# A registered the lot of `PROBE_LOT_KG` with this key; foreign writes send the same key (and, for
# lots, the same body): a replay store keyed by the key alone would hand them A's answer.
IDEMPOTENCY_KEY = "tenant-probe-0001"
PROBE_LOT_KG = 25
B_PASSWORD = "b viewer's long password"
SELLER = {"kind": "individual", "name": "张秘密", "id_number": "520102198805051232"}
PLATE = "贵A·T7001"
TICKET_NO = "A-WB-7001"
SORTED = "GB13586-FRAGMENTS"


@dataclass
class Tenancy:
    """The world of tests.conftest plus A's objects; `ids` maps a route parameter's name to A's
    record of that kind, `secrets` is every string that is A's (ids, codes, names, numbers)."""

    app: FastAPI
    client: httpx.AsyncClient
    world: World
    dsn: str
    b_operator: Principal | None = None
    b_user: Principal | None = None  # B's viewer, logged in with a password (a JWT)
    zunyi_inspector: Principal | None = None
    a_device: Principal | None = None
    c_enterprise: uuid.UUID | None = None
    centre: str = ""
    smelter: str = ""
    warehouse: str = ""  # suspended: the target of reinstate
    lots: dict[str, Json] = field(default_factory=dict)
    shipments: dict[str, Json] = field(default_factory=dict)
    runs: dict[str, Json] = field(default_factory=dict)
    certificate: Json = field(default_factory=dict)
    discrepancy: Json = field(default_factory=dict)
    webhook: Json = field(default_factory=dict)
    webhook_disabled: Json = field(default_factory=dict)
    b_webhook: Json = field(default_factory=dict)  # every event that touches B
    b_lot: str = ""  # at B's collection point
    delivery_id: str = ""
    user: Json = field(default_factory=dict)
    api_key: Json = field(default_factory=dict)
    ticket: Json = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # ETags, for If-Match
    secrets: set[str] = field(default_factory=set)

    def principal(self, name: str) -> Principal:
        found = getattr(self, name, None) or getattr(self.world, name)
        assert isinstance(found, Principal), name
        return found

    async def call(
        self, who: Principal, method: str, path: str, body: Json | None = None, status: int = 201
    ) -> Json:
        """A's call: every id in the answer is taken for one of A's (or of its regulator's)."""
        response = await self.client.request(method, path, json=body, headers=who.headers)
        assert response.status_code == status, (method, path, response.text)
        answer: Json = response.json()
        if who.enterprise_id == self.world.enterprise_a or who.authority_id is not None:
            self.secrets.update(UUID_TEXT.findall(response.text))
        return answer

    async def post(self, who: Principal, path: str, body: Json, status: int = 201) -> Json:
        return await self.call(who, "POST", path, body, status)

    async def act(self) -> None:
        """A registers a lot and sends it to its centre (in the caller's transaction)."""
        operator, point = self.world.a_operator, str(self.world.facility_a)
        lot = await self.post(operator, "/api/v1/lots", lot_body(point, 60))
        body = {"from_facility_id": point, "to_facility_id": self.centre, "lot_ids": [lot["id"]]}
        await self.post(operator, "/api/v1/shipments", body)


def _ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


async def _setting(t: Tenancy) -> None:
    """A's further facilities, C, and the extra principals: committed through the app."""
    w = t.world
    async with t.app.state.sessionmaker() as session:

        async def facility(name: str, kind: str, region: str, owner: uuid.UUID) -> str:
            created = await registry.create_facility(
                session,
                SYSTEM,
                enterprise_id=owner,
                name=name,
                kind=kind,
                region_code=region,
                address=f"{name}, Guiyang",
            )
            return str(created.id)

        a = w.enterprise_a
        t.centre = await facility("A 花溪预处理中心", "pretreatment_center", "520111", a)
        t.smelter = await facility("A 清镇再生铝厂", "smelter", "520181", a)
        t.warehouse = await facility("A 白云仓库", "warehouse", "520113", a)
        c = await registry.create_enterprise(
            session,
            SYSTEM,
            name="C 贵阳铝材加工",
            uscc=random_uscc("520113"),
            roles=["processor"],
            region_code="520113",
        )
        t.c_enterprise = c.id
        t.secrets.add(await facility("C 白云型材厂", "processing_plant", "520113", c.id))
        t.b_operator = await make_key(session, Role.operator, w.enterprise_b)
        zunyi = await registry.create_authority(
            session, SYSTEM, name="遵义市工信局", jurisdiction="5203"
        )
        t.zunyi_inspector = await make_key(session, Role.inspector, authority_id=zunyi.id)
        await session.commit()


async def _play(t: Tenancy) -> None:
    """A's activity over HTTP, as its own principals do it."""
    w = t.world
    operator, admin = w.a_operator, w.a_admin
    point = str(w.facility_a)
    t.b_webhook = await t.post(
        w.b_admin, "/api/v1/webhooks", {"url": "https://erp.b-recycling.example/hooks"}
    )
    t.webhook = await t.post(admin, "/api/v1/webhooks", {"url": HOOK_URL, "event_types": ["*"]})
    disabled = await t.post(admin, "/api/v1/webhooks", {"url": HOOK_URL + "/old"})
    t.webhook_disabled = await t.post(
        admin, f"/api/v1/webhooks/{disabled['id']}/disable", {"reason": "moved"}, 200
    )

    async def register(name: str, kg: float, **overrides: Any) -> None:
        body = lot_body(point, kg, seller=SELLER, **overrides)
        t.lots[name] = await t.post(operator, "/api/v1/lots", body)

    for name, kg in (("L1", 100), ("L2", 200), ("L3", 50), ("L4", 40), ("L5", 30)):
        await register(name, kg)
    replayable = await t.client.post(
        "/api/v1/lots",
        json=lot_body(point, PROBE_LOT_KG),
        headers={**operator.headers, "Idempotency-Key": IDEMPOTENCY_KEY},
    )
    assert replayable.status_code == 201, replayable.text
    t.lots["L6"] = replayable.json()

    async def ship(name: str, source: str, target: str, lots: list[str], **extra: Any) -> Json:
        body = {"from_facility_id": source, "to_facility_id": target, "lot_ids": lots, **extra}
        t.shipments[name] = await t.post(operator, "/api/v1/shipments", body)
        return t.shipments[name]

    async def receive(name: str, items: list[Json]) -> None:
        path = f"/api/v1/shipments/{t.shipments[name]['id']}/receipt"
        t.shipments[name] = await t.post(operator, path, {"items": items})

    # Point → centre: L1 weighs 95 kg at the gate (5 % short: a discrepancy A must answer).
    lot = {name: t.lots[name]["id"] for name in t.lots}
    await ship("S1", point, t.centre, [lot["L1"], lot["L2"], lot["L3"]], vehicle_plate=PLATE)
    await receive(
        "S1",
        [
            {"lot_id": lot["L1"], "received_kg": 95},
            {"lot_id": lot["L2"], "received_kg": 200},
            {"lot_id": lot["L3"], "received_kg": 50},
        ],
    )
    # The centre sorts L2; the sorted scrap goes to A's smelter and is melted into two ingots.
    t.runs["sorting"] = await t.post(
        operator,
        "/api/v1/transformations",
        {
            "facility_id": t.centre,
            "process": "sorting",
            "started_at": _ago(6),
            "ended_at": _ago(5),
            "inputs": [{"lot_id": lot["L2"], "kg": 200}],
            "outputs": [{"kind": "scrap", "metal": "aluminium", "category": SORTED, "kg": 190}],
            "losses": [{"kind": "non_metallic_residue", "kg": 10}],
        },
    )
    sorted_lot = t.runs["sorting"]["outputs"][0]["id"]
    await ship("S3", t.centre, t.smelter, [sorted_lot])
    await receive("S3", [{"lot_id": sorted_lot, "received_kg": 190}])
    t.runs["melting"] = await t.post(
        operator,
        "/api/v1/transformations",
        {
            "facility_id": t.smelter,
            "process": "melting",
            "started_at": _ago(4),
            "ended_at": _ago(3),
            "inputs": [{"lot_id": sorted_lot, "kg": 190}],
            "primary_inputs": [{"metal": "aluminium", "kg": 20, "description": "AL99.70"}],
            "outputs": [
                {"kind": "product", "metal": "aluminium", "product_form": "ingot", "kg": 100},
                {"kind": "product", "metal": "aluminium", "product_form": "ingot", "kg": 100},
            ],
            "losses": [{"kind": "dross", "kg": 10}],
        },
    )
    t.lots["ingot1"], t.lots["ingot2"] = t.runs["melting"]["outputs"]
    t.certificate = await t.post(
        admin,
        "/api/v1/certificates",
        {
            "lot_id": t.lots["ingot1"]["id"],
            "recipient_enterprise_id": str(t.c_enterprise),
            "method": "proportional",
        },
    )
    # The centre dries L1: a run none of whose outputs has moved (it can still be voided).
    t.runs["drying"] = await t.post(
        operator,
        "/api/v1/transformations",
        {
            "facility_id": t.centre,
            "process": "drying",
            "started_at": _ago(2),
            "ended_at": _ago(1),
            "inputs": [{"lot_id": lot["L1"], "kg": 95}],
            "outputs": [{"kind": "scrap", "metal": "aluminium", "category": SORTED, "kg": 94}],
            "losses": [{"kind": "moisture", "kg": 1}],
        },
    )
    # L5 is on its way to the centre (receipt and cancel still possible).
    await ship("S2", point, t.centre, [lot["L5"]], vehicle_plate=PLATE)

    found = await t.call(operator, "GET", "/api/v1/discrepancies", status=200)
    (t.discrepancy,) = found["items"]
    t.user = await t.post(
        admin,
        "/api/v1/users",
        {
            "enterprise_id": str(w.enterprise_a),
            "username": "a.zhang.tenant",
            "display_name": "张会计",
            "password": "correct horse battery",
            "role": "viewer",
        },
    )
    t.api_key = await t.post(
        admin,
        "/api/v1/api-keys",
        {"enterprise_id": str(w.enterprise_a), "name": "A 用友 ERP", "role": "operator"},
    )
    device = await t.post(
        admin,
        "/api/v1/api-keys",
        {
            "enterprise_id": str(w.enterprise_a),
            "name": "A 地磅 centre",
            "role": "device",
            "facility_id": t.centre,
        },
    )
    t.a_device = Principal(device["secret"], Role.device, w.enterprise_a)
    t.ticket = await t.post(
        t.a_device,
        "/api/v1/weighbridge/tickets",
        {
            "ticket_no": TICKET_NO,
            "vehicle_plate": PLATE,
            "gross_kg": 15030,
            "tare_kg": 15000,
            "net_kg": 30,
            "weighed_at": _ago(0.5),
        },
    )
    await t.post(
        w.guiyang_supervisor,
        f"/api/v1/facilities/{t.warehouse}/suspend",
        {"reason": "permit lapsed"},
        200,
    )
    await t.post(
        w.b_admin,
        "/api/v1/users",
        {
            "enterprise_id": str(w.enterprise_b),
            "username": "b.wang.viewer",
            "display_name": "王看",
            "password": B_PASSWORD,
            "role": "viewer",
        },
    )
    login = await t.client.post(
        "/api/v1/auth/token", data={"username": "b.wang.viewer", "password": B_PASSWORD}
    )
    assert login.status_code == 200, login.text
    t.b_user = Principal(login.json()["access_token"], Role.viewer, w.enterprise_b)
    # B's own lot, so that B's lists have something of B's in them.
    b_point = str(w.facility_b)
    response = await t.client.post(
        "/api/v1/lots", json=lot_body(b_point, 80), headers=w.b_admin.headers
    )
    assert response.status_code == 201, response.text
    t.b_lot = response.json()["id"]
    for kind, path in (
        ("enterprise", f"/api/v1/enterprises/{w.enterprise_a}"),
        ("facility", f"/api/v1/facilities/{w.facility_a}"),
    ):
        read = await t.client.get(path, headers=admin.headers)
        assert read.status_code == 200, read.text
        t.versions[kind] = read.headers["etag"]


async def _seal(t: Tenancy) -> None:
    """Every committed event sealed (the audit trail, EPCIS and webhooks show sealed events
    only), then A's webhook's deliveries queued, as the relay would."""
    maker = t.app.state.sessionmaker

    async def sealed() -> bool:
        async with maker() as session:
            await audit.seal(session, t.app.state.signer)
            await session.commit()
        conn = await asyncpg.connect(t.dsn)
        try:
            return not await conn.fetchval("SELECT count(*) FROM event WHERE seq IS NULL")
        finally:
            await conn.close()

    await eventually("every committed event sealed", sealed)
    async with maker() as session:
        assert await webhooks.plan(session, now=datetime.now(UTC)) > 0
        await session.commit()
    found = await t.call(
        t.world.a_admin, "GET", f"/api/v1/webhooks/{t.webhook['id']}/deliveries", status=200
    )
    t.delivery_id = found["items"][0]["id"]


async def _names(t: Tenancy) -> None:
    """A's (and C's, and the Guiyang and province authorities') names and numbers, and A's keys
    made by tests.conftest (their ids are in no response)."""
    w = t.world
    async with t.app.state.sessionmaker() as session:
        for enterprise in await session.scalars(
            select(Enterprise).where(col(Enterprise.id).in_([w.enterprise_a, t.c_enterprise]))
        ):
            t.secrets.update({str(enterprise.id), enterprise.name, enterprise.uscc})
        keys = await session.scalars(
            select(col(ApiKey.id)).where(col(ApiKey.enterprise_id) == w.enterprise_a)
        )
        t.secrets.update(str(key) for key in keys)
        for authority in (w.guiyang_authority, w.province_authority):
            found = await registry.get_authority(session, SYSTEM, authority)
            t.secrets.update({str(authority), found.name})
    t.secrets.update(
        {
            "point 520102",  # facility A's name (tests.conftest._facility)
            "A 花溪预处理中心",
            "A 清镇再生铝厂",
            "A 白云仓库",
            "C 白云型材厂",
            HOOK_URL,
            SELLER["name"],
            SELLER["id_number"],
            PLATE,
            TICKET_NO,
            t.certificate["number"],
            t.user["username"],
            t.api_key["name"],
            *(lot["code"] for lot in t.lots.values()),
            *(o["code"] for run in t.runs.values() for o in run["outputs"]),
        }
    )
    # The world's other ids, which A's responses name but which are not A's.
    t.secrets -= {str(w.enterprise_b), str(w.facility_b)}


async def build_tenancy(app: FastAPI, client: httpx.AsyncClient, world: World, dsn: str) -> Tenancy:
    t = Tenancy(app, client, world, dsn)
    await _setting(t)
    await _play(t)
    await _seal(t)
    await _names(t)
    return t
