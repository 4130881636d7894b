"""Custody fixtures: a recycler's collection point (A, Guiyang), a pretreatment centre of
another enterprise (B, Zunyi), and helpers to register and ship lots over HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM
from domain.registry import service as registry
from tests.conftest import World

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
