"""Credit fixtures: the custody plant (A's collection point, B's pretreatment centre and smelter,
a bystander C), and helpers that melt scrap into products at B's smelter, issue certificates and
read the ledger over HTTP.

The standard melt: 120 kg post-consumer scrap, 40 kg pre-consumer scrap and 40 kg primary
aluminium make 192 kg of ingots and 8 kg of dross. The pool is 60 % post-consumer, 20 %
pre-consumer and 20 % primary, so 192 kg of product holds 115.2 kg post-consumer and 38.4 kg
pre-consumer metal: B is credited those, whatever way the 192 kg are cut into products."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM
from domain.registry import service as registry
from tests.conftest import Json, World
from tests.custody.conftest import (
    Plant,
    at_centre,
    build_custody,
    build_plant,
    run,
    take,
    to_smelter,
)
from tests.factories import random_uscc

CERTIFICATES = "/api/v1/certificates"


@pytest.fixture
async def plant(session: AsyncSession, world: World, client: httpx.AsyncClient) -> Plant:
    return await build_plant(session, await build_custody(session, world, client))


def kg(value: Any) -> Decimal:
    """A JSON number of kilograms, exactly."""
    return Decimal(str(value))


@dataclass
class Melt:
    run: Json
    products: list[Json]  # the product lots made, in the order asked for


async def melt(
    plant: Plant,
    products_kg: list[float | str] | None = None,
    *,
    post_kg: float = 120,
    pre_kg: float = 40,
    primary_kg: float = 40,
    dross_kg: float | None = None,
) -> Melt:
    """Scrap of A's collection point goes through B's centre to B's smelter and is melted there,
    with primary metal, into ingots (one product per entry of `products_kg`); the rest is dross
    unless stated."""
    products_kg = products_kg or [192]
    if dross_kg is None:
        dross = kg(post_kg) + kg(pre_kg) + kg(primary_kg) - sum(kg(p) for p in products_kg)
        dross_kg = float(dross)
    lots = []
    if post_kg:
        lots += await at_centre(plant, post_kg)
    if pre_kg:
        lots += await at_centre(plant, pre_kg, consumer_class="pre_consumer")
    lots = await to_smelter(plant, lots)
    outputs = [
        {"kind": "product", "metal": "aluminium", "kg": float(kg(p)), "product_form": "ingot"}
        for p in products_kg
    ]
    response = await run(
        plant,
        facility_id=plant.smelter,
        process="melting",
        inputs=[take(lot) for lot in lots],
        primary_inputs=(
            [{"metal": "aluminium", "kg": primary_kg, "description": "AL99.70"}]
            if primary_kg
            else []
        ),
        outputs=outputs,
        losses=[{"kind": "dross", "kg": dross_kg}] if dross_kg else [],
    )
    assert response.status_code == 201, response.text
    recorded = response.json()
    assert [o["kind"] for o in recorded["outputs"]] == ["product"] * len(outputs)
    return Melt(recorded, recorded["outputs"])


async def issue(
    plant: Plant,
    lot: Json | str,
    recipient: uuid.UUID | str,
    method: str = "proportional",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    """B (by default) certifies a lot to a recipient."""
    body = {
        "lot_id": lot if isinstance(lot, str) else lot["id"],
        "recipient_enterprise_id": str(recipient),
        "method": method,
        **extra,
    }
    return await plant.client.post(CERTIFICATES, json=body, headers=headers or plant.b)


async def credits(
    plant: Plant,
    enterprise_id: uuid.UUID | str,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> Json:
    """The whole ledger of an enterprise (all pages) with its balances."""
    path = f"/api/v1/enterprises/{enterprise_id}/credits"
    items: list[Json] = []
    cursor = None
    while True:
        query = {**params, "limit": 100, **({"cursor": cursor} if cursor else {})}
        response = await plant.client.get(path, params=query, headers=headers or plant.b)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            page["items"] = items
            return page  # type: ignore[no-any-return]


def balances(ledger: Json) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """(metal, class) → (balance kg, expired kg)."""
    return {
        (b["metal"], b["recycled_class"]): (kg(b["balance_kg"]), kg(b["expired_kg"]))
        for b in ledger["balances"]
    }


def entries(ledger: Json, kind: str | None = None, recycled_class: str | None = None) -> list[Json]:
    return [
        e
        for e in ledger["items"]
        if (kind is None or e["kind"] == kind)
        and (recycled_class is None or e["recycled_class"] == recycled_class)
    ]


def total(rows: list[Json], field: str = "kg") -> Decimal:
    return sum((kg(r[field]) for r in rows), Decimal(0))


async def new_enterprise(session: AsyncSession, name: str = "D processing") -> uuid.UUID:
    """Another enterprise (a recipient), committed."""
    enterprise = await registry.create_enterprise(
        session,
        SYSTEM,
        name=name,
        uscc=random_uscc("520102"),
        roles=["processor"],
        region_code="520102",
    )
    await session.commit()
    return enterprise.id
