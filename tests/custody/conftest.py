"""Custody fixtures: a recycler's collection point (A, Guiyang), a pretreatment centre of
another enterprise (B, Zunyi), and helpers to register and ship lots over HTTP; B's smelter and
helpers to record and void runs (`plant`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM, Role
from domain.registry import service as registry
from tests.conftest import Json, Principal, World, make_key
from tests.factories import random_uscc

NOW = "2026-11-20T08:00:00+08:00"


@dataclass
class Custody:
    world: World
    client: httpx.AsyncClient
    point_a: str  # A's collection point (the world's facility_a)
    centre_b: str  # B's pretreatment centre in Zunyi

    async def register(self, net_kg: float | str = 100, **overrides: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/lots",
            json=lot_body(self.point_a, net_kg, **overrides),
            headers=self.world.a_operator.headers,
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def ship(self, lot_ids: list[str], **overrides: Any) -> httpx.Response:
        body = {
            "from_facility_id": self.point_a,
            "to_facility_id": self.centre_b,
            "lot_ids": lot_ids,
            "vehicle_energy": "lng",
            "distance_km": 140,
            **overrides,
        }
        return await self.client.post(
            "/api/v1/shipments", json=body, headers=self.world.a_operator.headers
        )

    async def receive(
        self, shipment_id: str, items: list[dict[str, Any]], **extra: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/shipments/{shipment_id}/receipt",
            json={"items": items, **extra},
            headers=self.world.b_admin.headers,
        )


def lot_body(facility_id: str, net_kg: float | str = 100, **overrides: Any) -> dict[str, Any]:
    return {
        "facility_id": facility_id,
        "metal": "aluminium",
        "category": "GB13586-WROUGHT",
        "net_kg": net_kg if isinstance(net_kg, float | int) else float(Decimal(net_kg)),
        "consumer_class": "post_consumer",
        "channel": "offline",
        "collected_at": NOW,
        "seller": {"kind": "individual", "name": "王小明", "id_number": "52010219900101123X"},
        **overrides,
    }


@pytest.fixture
async def custody(session: AsyncSession, world: World, client: httpx.AsyncClient) -> Custody:
    return await build_custody(session, world, client)


async def build_custody(session: AsyncSession, world: World, client: httpx.AsyncClient) -> Custody:
    """B's pretreatment centre, committed (the app sees it)."""
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
    return Custody(world, client, str(world.facility_a), str(centre.id))


# --- a smelter and a bystander: runs over HTTP ------------------------------------------------

START, END = "2026-11-21T08:00:00+08:00", "2026-11-21T10:00:00+08:00"
PROBLEM_JSON = "application/problem+json"
AL_SCRAP = "GB13586-FRAGMENTS"
CU_SCRAP = "GB13587-I"


@dataclass
class Plant:
    """The custody world plus B's smelter (Zunyi) and a third enterprise that sees nothing."""

    custody: Custody
    smelter: str
    c_admin: Principal

    @property
    def world(self) -> World:
        return self.custody.world

    @property
    def client(self) -> httpx.AsyncClient:
        return self.custody.client

    @property
    def centre(self) -> str:
        return self.custody.centre_b

    @property
    def b(self) -> dict[str, str]:
        return self.world.b_admin.headers


async def build_plant(session: AsyncSession, custody: Custody) -> Plant:
    """B's smelter and a third enterprise C, committed (the app sees them)."""
    world = custody.world
    smelter = await registry.create_facility(
        session,
        SYSTEM,
        enterprise_id=world.enterprise_b,
        name="B smelter",
        kind="smelter",
        region_code="520302",
        address="Zunyi",
    )
    third = await registry.create_enterprise(
        session,
        SYSTEM,
        name="C recycling",
        uscc=random_uscc("520402"),
        roles=["recycler"],
        region_code="520402",
    )
    c_admin = await make_key(session, Role.admin, third.id)
    await session.commit()
    return Plant(custody, str(smelter.id), c_admin)


@pytest.fixture
async def plant(custody: Custody, session: AsyncSession) -> Plant:
    return await build_plant(session, custody)


# --- transformation helpers -------------------------------------------------------------------


def grams(kg: Any) -> int:
    return int(Decimal(str(kg)) * 1000)


def composition_g(lot: Json) -> tuple[int, int, int]:
    c = lot["composition"]
    return grams(c["post_consumer_kg"]), grams(c["pre_consumer_kg"]), grams(c["primary_kg"])


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: Json = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


def pointers(response: httpx.Response) -> list[str]:
    return [error["pointer"] for error in response.json().get("errors") or []]


async def counts(session: AsyncSession) -> tuple[int, ...]:
    """Rows that any write of a run would add to, as seen inside the test's transaction."""
    row = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM lot), (SELECT count(*) FROM event),"
                " (SELECT count(*) FROM transformation), (SELECT count(*) FROM lot_source),"
                " (SELECT count(*) FROM transformation_input)"
            )
        )
    ).one()
    return tuple(int(v) for v in row)


async def at_centre(plant: Plant, *kgs: float, **overrides: Any) -> list[Json]:
    """Lots registered by A and received in full at B's pretreatment centre."""
    custody = plant.custody
    lots = [await custody.register(kg, **overrides) for kg in kgs]
    shipped = await custody.ship([lot["id"] for lot in lots])
    assert shipped.status_code == 201, shipped.text
    received = await custody.receive(
        shipped.json()["id"], [{"lot_id": lot["id"], "received_kg": lot["net_kg"]} for lot in lots]
    )
    assert received.status_code == 201, received.text
    return [await get_lot(plant, lot["id"]) for lot in lots]


async def dispatch(
    plant: Plant, lot_ids: list[str], to: str, source: str | None = None
) -> httpx.Response:
    return await plant.client.post(
        "/api/v1/shipments",
        json={"from_facility_id": source or plant.centre, "to_facility_id": to, "lot_ids": lot_ids},
        headers=plant.b,
    )


async def to_smelter(plant: Plant, lots: list[Json]) -> list[Json]:
    """B moves lots from its centre to its smelter and receives them in full."""
    shipped = await dispatch(plant, [lot["id"] for lot in lots], plant.smelter)
    assert shipped.status_code == 201, shipped.text
    received = await plant.client.post(
        f"/api/v1/shipments/{shipped.json()['id']}/receipt",
        json={"items": [{"lot_id": lot["id"], "received_kg": lot["net_kg"]} for lot in lots]},
        headers=plant.b,
    )
    assert received.status_code == 201, received.text
    return [await get_lot(plant, lot["id"]) for lot in lots]


async def get_lot(plant: Plant, lot_id: str, headers: dict[str, str] | None = None) -> Json:
    response = await plant.client.get(f"/api/v1/lots/{lot_id}", headers=headers or plant.b)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def run(plant: Plant, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    body = {"facility_id": plant.centre, "started_at": START, "ended_at": END, **body}
    return await plant.client.post("/api/v1/transformations", json=body, headers=headers or plant.b)


def scrap(kg: float, category: str = AL_SCRAP, metal: str = "aluminium") -> Json:
    return {"kind": "scrap", "metal": metal, "category": category, "kg": kg}


def take(lot: Json, kg: float | None = None) -> Json:
    return {"lot_id": lot["id"], "kg": lot["net_kg"] if kg is None else kg}


async def void(
    plant: Plant, run_id: str, headers: dict[str, str] | None = None, **extra: str
) -> httpx.Response:
    return await plant.client.post(
        f"/api/v1/transformations/{run_id}/void",
        json={"reason": "wrong furnace"},
        headers={**(headers or plant.b), **extra},
    )
