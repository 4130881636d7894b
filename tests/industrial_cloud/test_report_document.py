"""The industrial-cloud report's figures, computed by hand for a small month, and checked against
the enterprise statement of the same month.

A (Guiyang) buys 603 kg of post-consumer aluminium offline and 410 kg of pre-consumer aluminium
online and ships both (1013 kg, LNG truck, 140 km) to B's pretreatment centre (Zunyi). B weighs
the first at 600 kg and refuses 10 kg of the second: it accepts 1000 kg. B shreds the 1000 kg
into 950 kg (570 post-, 380 pre-consumer) and 50 kg of residue using 120 kWh, moves the shreds to
its smelter (no vehicle stated) and melts them with 150 kg of primary aluminium into a 1080 kg
ingot and 20 kg of dross, using 800 kWh and 50.5 m³ of natural gas. Factor set 1: primary
aluminium 16.0, recycled 0.5 tCO2e/t, LNG freight 0.07 kgCO2e/t-km, Guizhou grid 0.4989
kgCO2/kWh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from domain.industrial_cloud import service as cloud_service
from domain.industrial_cloud.rules import CHINA, SCHEMA, SCHEMA_VERSION, Period, parse_period
from tests.conftest import Json, World
from tests.custody.conftest import (
    Plant,
    build_custody,
    build_plant,
    get_lot,
    run,
    to_smelter,
)

SHREDDED = "GB38472-SHREDDED"
METAL_KEYS = {
    "metal",
    "collected_kg",
    "collected_lots",
    "collected_online_kg",
    "collected_offline_kg",
    "received_kg",
    "processed_kg",
    "pretreated_kg",
    "melted_scrap_kg",
    "primary_input_kg",
    "recycled_input_kg",
    "recycled_post_consumer_kg",
    "recycled_pre_consumer_kg",
    "produced_kg",
    "recycled_ratio_percent",
    "energy",
    "emissions",
}


def iso(moment: datetime) -> str:
    return moment.isoformat()


def month_of(moment: datetime) -> Period:
    period = parse_period(moment.astimezone(CHINA).strftime("%Y-%m"))
    assert period is not None
    return period


async def ok(response: httpx.Response, status: int = 201) -> Json:
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def plant(session: AsyncSession, world: World, client: httpx.AsyncClient) -> Plant:
    return await build_plant(session, await build_custody(session, world, client))


@pytest.fixture
async def month(plant: Plant) -> Period:
    custody, world = plant.custody, plant.world
    now = datetime.now(UTC)
    offline = await custody.register(603, channel="offline")
    online = await custody.register(410, channel="online", consumer_class="pre_consumer")
    shipped = await custody.ship([offline["id"], online["id"]])
    assert shipped.status_code == 201, shipped.text
    await ok(
        await custody.receive(
            shipped.json()["id"],
            [
                {"lot_id": offline["id"], "received_kg": 600},
                {"lot_id": online["id"], "received_kg": 410, "refused_kg": 10,
                 "refusal_reason": "wet"},
            ],
        )
    )  # fmt: skip
    shredded = await ok(
        await run(
            plant,
            process="shredding",
            started_at=iso(now - timedelta(minutes=4)),
            ended_at=iso(now - timedelta(minutes=3)),
            inputs=[{"lot_id": offline["id"], "kg": 600}, {"lot_id": online["id"], "kg": 400}],
            outputs=[{"kind": "scrap", "metal": "aluminium", "category": SHREDDED, "kg": 950}],
            losses=[{"kind": "non_metallic_residue", "kg": 50}],
            energy={"electricity_kwh": 120},
        )
    )
    shreds = await get_lot(plant, shredded["outputs"][0]["id"])
    await to_smelter(plant, [shreds])
    await ok(
        await run(
            plant,
            facility_id=plant.smelter,
            process="melting",
            started_at=iso(now - timedelta(minutes=2)),
            ended_at=iso(now - timedelta(minutes=1)),
            inputs=[{"lot_id": shreds["id"], "kg": 950}],
            primary_inputs=[{"metal": "aluminium", "kg": 150, "description": "AL99.70"}],
            outputs=[{"kind": "product", "metal": "aluminium", "product_form": "ingot",
                      "kg": 1080}],
            losses=[{"kind": "dross", "kg": 20}],
            energy={"electricity_kwh": 800, "natural_gas_m3": 50.5},
        )
    )  # fmt: skip
    assert world.enterprise_b
    return month_of(now)


def section(document: Json, metal: str = "aluminium") -> Json:
    (found,) = [m for m in document["metals"] if m["metal"] == metal]
    return found  # type: ignore[no-any-return]


async def report(session: AsyncSession, enterprise: Any, period: Period) -> Json:
    return await cloud_service.enterprise_report(
        session, enterprise, period, datetime(2026, 12, 1, tzinfo=UTC)
    )


async def test_the_recycler_report(plant: Plant, month: Period, session: AsyncSession) -> None:
    document = await report(session, plant.world.enterprise_a, month)
    assert document["schema"] == SCHEMA
    assert document["schema_version"] == SCHEMA_VERSION == "1.0"
    assert document["enterprise"]["id"] == str(plant.world.enterprise_a)
    assert document["enterprise"]["region_code"] == "520102"
    assert document["generated_at"] == "2026-12-01T00:00:00+00:00"
    assert document["emission_factor_set_version"] == 1
    aluminium = section(document)
    assert set(aluminium) == METAL_KEYS
    assert aluminium["collected_kg"] == 1013.0
    assert aluminium["collected_lots"] == 2
    assert (aluminium["collected_online_kg"], aluminium["collected_offline_kg"]) == (410.0, 603.0)
    assert aluminium["received_kg"] == aluminium["processed_kg"] == aluminium["produced_kg"] == 0
    assert aluminium["recycled_ratio_percent"] is None  # no melt
    # 1.013 t × 140 km = 141.82 t-km by LNG truck × 0.07 = 9.9274 kg CO2e.
    emissions = aluminium["emissions"]
    assert (emissions["transport_tonne_km"], emissions["transport_kgco2e"]) == (141.82, 9.927)
    assert emissions["avoided_kgco2e"] == 0.0
    assert aluminium["energy"]["runs"] == 0
    copper = section(document, "copper")
    assert copper["collected_kg"] == 0.0 and copper["emissions"]["transport_kgco2e"] == 0.0
    assert document["totals"]["emissions"]["transport_kgco2e"] == 9.927


async def test_the_pretreater_and_smelter_report(
    plant: Plant, month: Period, session: AsyncSession
) -> None:
    document = await report(session, plant.world.enterprise_b, month)
    aluminium = section(document)
    assert aluminium["collected_kg"] == 0.0
    # Accepted at the centre 600 + 400, at the smelter the 950 kg of shreds.
    assert aluminium["received_kg"] == 1950.0
    assert (aluminium["pretreated_kg"], aluminium["melted_scrap_kg"]) == (1000.0, 950.0)
    assert aluminium["processed_kg"] == 1950.0
    assert aluminium["produced_kg"] == 1080.0
    assert aluminium["primary_input_kg"] == 150.0
    assert (
        aluminium["recycled_post_consumer_kg"],
        aluminium["recycled_pre_consumer_kg"],
        aluminium["recycled_input_kg"],
    ) == (570.0, 380.0, 950.0)
    assert aluminium["recycled_ratio_percent"] == 86.36  # 950 / 1100
    assert aluminium["energy"] == {
        "runs": 2,
        "runs_reporting_energy": 2,
        "electricity_kwh": 920.0,
        "natural_gas_m3": 50.5,
        "other_fuel_kgce": 0.0,
    }
    emissions = aluminium["emissions"]
    assert emissions["avoided_kgco2e"] == 14725.0  # 950 kg × (16.0 − 0.5)
    assert emissions["electricity_kgco2"] == 458.988  # 920 kWh × 0.4989 (Guizhou grid)
    # The move to the smelter named no vehicle: no tonne-km, no factor.
    assert (emissions["transport_tonne_km"], emissions["transport_kgco2e"]) == (0.0, 0.0)
    assert emissions["transport_shipments_without_factor"] == 1
    assert document["totals"] == {
        "energy": {"electricity_kwh": 920.0, "natural_gas_m3": 50.5, "other_fuel_kgce": 0.0},
        "emissions": {
            "avoided_kgco2e": 14725.0,
            "transport_kgco2e": 0.0,
            "electricity_kgco2": 458.988,
        },
    }


async def test_the_report_agrees_with_the_enterprise_statement(
    plant: Plant, month: Period, session: AsyncSession
) -> None:
    document = await report(session, plant.world.enterprise_b, month)
    statement = await ok(
        await plant.client.get(
            f"/api/v1/enterprises/{plant.world.enterprise_b}/statement",
            params={"from": iso(month.start), "to": iso(month.end), "metal": "aluminium"},
            headers=plant.b,
        ),
        200,
    )
    (metal,) = statement["metals"]
    aluminium = section(document)
    smelting = metal["smelting"]
    assert aluminium["recycled_ratio_percent"] == smelting["recycled_content_percent"]
    assert aluminium["recycled_input_kg"] == smelting["recycled_input"]["total_kg"]
    assert aluminium["produced_kg"] == smelting["product_output_kg"]
    assert aluminium["emissions"]["avoided_kgco2e"] == smelting["avoided_emissions"]["kgco2e"]
    assert aluminium["received_kg"] == metal["handling"]["received_kg"]
    assert aluminium["pretreated_kg"] == metal["handling"]["pretreatment_input_kg"]


async def test_another_month_is_empty(plant: Plant, month: Period, session: AsyncSession) -> None:
    before = month_of(month.start - timedelta(days=1))
    assert before.end == month.start
    document = await report(session, plant.world.enterprise_b, before)
    aluminium = section(document)
    assert aluminium["received_kg"] == aluminium["produced_kg"] == 0.0
    assert aluminium["energy"]["runs"] == 0
    assert document["period"]["month"] == before.month
