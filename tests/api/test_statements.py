"""Enterprise statements over HTTP (DESIGN §2.6, §2.7), against figures computed by hand.

The chain: recycler R (world A, Guiyang) buys two aluminium lots at its collection point and ships
them to pretreater P's centre (world B, Zunyi), which refuses part of one; P shreds what it took,
with a loss, and ships the shreds to smelter S (Anshun); S melts them with primary aluminium into
an ingot, ships it to processor M (Bijie) and certifies its recycled content to M. Every figure of
the four statements is checked against the arithmetic written next to it. Factor set 1 (the
shipped one): primary aluminium 16.0 and recycled aluminium 0.5 tCO2e/t, road freight diesel 0.08
and LNG 0.07 kgCO2e/t-km."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM, Role
from domain.registry import service as registry
from tests.conftest import Json, Principal, World, make_key
from tests.custody.conftest import Custody, build_custody
from tests.factories import random_uscc

PROBLEM_JSON = "application/problem+json"
WROUGHT, FRAGMENTS, SHREDDED = "GB13586-WROUGHT", "GB13586-FRAGMENTS", "GB38472-SHREDDED"


def iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass
class Chain:
    custody: Custody
    smelter_enterprise: uuid.UUID
    smelter: str
    s_admin: Principal
    processor_enterprise: uuid.UUID
    plant: str
    m_admin: Principal

    @property
    def world(self) -> World:
        return self.custody.world

    @property
    def client(self) -> httpx.AsyncClient:
        return self.custody.client

    @property
    def centre(self) -> str:
        return self.custody.centre_b


@pytest.fixture
async def chain(session: AsyncSession, world: World, client: httpx.AsyncClient) -> Chain:
    custody = await build_custody(session, world, client)
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
    chain = Chain(
        custody=custody,
        smelter_enterprise=smelting.id,
        smelter=str(smelter.id),
        s_admin=await make_key(session, Role.admin, smelting.id),
        processor_enterprise=processing.id,
        plant=str(plant.id),
        m_admin=await make_key(session, Role.admin, processing.id),
    )
    await session.commit()
    return chain


async def ok(response: httpx.Response, status: int = 201) -> Json:
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


async def ship(
    chain: Chain, principal: Principal, source: str, target: str, lot_ids: list[str], **extra: Any
) -> Json:
    body = {"from_facility_id": source, "to_facility_id": target, "lot_ids": lot_ids, **extra}
    return await ok(
        await chain.client.post("/api/v1/shipments", json=body, headers=principal.headers)
    )


async def receive(
    chain: Chain, principal: Principal, shipment: Json, items: list[dict[str, Any]]
) -> Json:
    return await ok(
        await chain.client.post(
            f"/api/v1/shipments/{shipment['id']}/receipt",
            json={"items": items},
            headers=principal.headers,
        )
    )


async def record_run(chain: Chain, principal: Principal, **body: Any) -> Json:
    return await ok(
        await chain.client.post("/api/v1/transformations", json=body, headers=principal.headers)
    )


@dataclass
class Flow:
    now: datetime
    ingot: str  # the 980 kg ingot S made
    old_ingot: str  # the 100 kg ingot of S's run ten days ago
    certificate: Json


async def run_chain(chain: Chain) -> Flow:
    world, custody = chain.world, chain.custody
    now = datetime.now(UTC)

    # R buys two lots: 603 kg post-consumer wrought offline, 410 kg pre-consumer fragments online.
    l1 = await custody.register(603, category=WROUGHT, channel="offline")
    l2 = await custody.register(
        410, category=FRAGMENTS, channel="online", consumer_class="pre_consumer"
    )
    # R → P by diesel truck, 120 km, 603 + 410 = 1013 kg on board.
    first = await ship(
        chain,
        world.a_operator,
        custody.point_a,
        chain.centre,
        [l1["id"], l2["id"]],
        vehicle_energy="diesel",
        distance_km=120,
    )
    # P weighs L1 at 600 kg (3 kg short, inside the 1 % tolerance) and refuses 10 kg of L2:
    # P accepts 600 + 400 = 1000 kg; a 10 kg refused part of L2 goes back to R.
    receipt = await receive(
        chain,
        world.b_admin,
        first,
        [
            {"lot_id": l1["id"], "received_kg": 600},
            {"lot_id": l2["id"], "received_kg": 410, "refused_kg": 10, "refusal_reason": "wet"},
        ],
    )
    refused_part = next(i["refused_lot_id"] for i in receipt["items"] if i["refused_lot_id"])
    # R sends the refused part again by LNG truck, with no distance given; still in transit.
    await ship(
        chain,
        world.a_operator,
        custody.point_a,
        chain.centre,
        [refused_part],
        vehicle_energy="lng",
    )

    # P shreds L1 (600 post) + L2 (400 pre) = 1000 kg into 950 kg of shreds and 50 kg of residue;
    # the shreds are 950 × 600/1000 = 570 kg post- and 380 kg pre-consumer.
    shredded = await record_run(
        chain,
        world.b_admin,
        facility_id=chain.centre,
        process="shredding",
        started_at=iso(now - timedelta(hours=3)),
        ended_at=iso(now - timedelta(hours=2)),
        inputs=[{"lot_id": l1["id"], "kg": 600}, {"lot_id": l2["id"], "kg": 400}],
        outputs=[{"kind": "scrap", "metal": "aluminium", "category": SHREDDED, "kg": 950}],
        losses=[{"kind": "non_metallic_residue", "kg": 50}],
    )
    shreds = shredded["outputs"][0]
    # P → S by LNG truck, 200 km, 950 kg; S accepts all of it.
    third = await ship(
        chain,
        world.b_admin,
        chain.centre,
        chain.smelter,
        [shreds["id"]],
        vehicle_energy="lng",
        distance_km=200,
    )
    await receive(chain, chain.s_admin, third, [{"lot_id": shreds["id"], "received_kg": 950}])

    # Ten days ago (outside the current period) S melted 100 kg of the shreds (60 post, 40 pre)
    # into a 100 kg ingot.
    old = await record_run(
        chain,
        chain.s_admin,
        facility_id=chain.smelter,
        process="melting",
        started_at=iso(now - timedelta(days=10, hours=2)),
        ended_at=iso(now - timedelta(days=10)),
        inputs=[{"lot_id": shreds["id"], "kg": 100}],
        outputs=[{"kind": "product", "metal": "aluminium", "product_form": "ingot", "kg": 100}],
    )
    # Now S melts the other 850 kg (510 post, 340 pre) with 150 kg of primary aluminium: 1000 kg
    # in, a 980 kg ingot and 20 kg of dross out. The ingot is 98 % of the pool: 499.8 kg post,
    # 333.2 kg pre, 147 kg primary.
    melted = await record_run(
        chain,
        chain.s_admin,
        facility_id=chain.smelter,
        process="melting",
        started_at=iso(now - timedelta(hours=1)),
        ended_at=iso(now - timedelta(minutes=1)),
        inputs=[{"lot_id": shreds["id"], "kg": 850}],
        primary_inputs=[{"metal": "aluminium", "kg": 150, "description": "AL99.70 ingot"}],
        outputs=[{"kind": "product", "metal": "aluminium", "product_form": "ingot", "kg": 980}],
        losses=[{"kind": "dross", "kg": 20}],
    )
    ingot = melted["outputs"][0]
    assert ingot["composition"] == {
        "post_consumer_kg": 499.8,
        "pre_consumer_kg": 333.2,
        "primary_kg": 147.0,
    }
    # S certifies the ingot to M, proportionally: 499.8 + 333.2 = 833 kg recycled of 980 kg.
    certificate = await ok(
        await chain.client.post(
            "/api/v1/certificates",
            json={
                "lot_id": ingot["id"],
                "recipient_enterprise_id": str(chain.processor_enterprise),
                "method": "proportional",
            },
            headers=chain.s_admin.headers,
        )
    )
    # S → M by diesel truck, 50 km, 980 kg; M accepts all of it.
    fourth = await ship(
        chain,
        chain.s_admin,
        chain.smelter,
        chain.plant,
        [ingot["id"]],
        vehicle_energy="diesel",
        distance_km=50,
    )
    await receive(chain, chain.m_admin, fourth, [{"lot_id": ingot["id"], "received_kg": 980}])
    return Flow(now, ingot["id"], old["outputs"][0]["id"], certificate)


async def get_statement(
    chain: Chain, enterprise: uuid.UUID, principal: Principal, **params: Any
) -> httpx.Response:
    return await chain.client.get(
        f"/api/v1/enterprises/{enterprise}/statement", params=params, headers=principal.headers
    )


def period(flow: Flow, days: int = 1) -> dict[str, str]:
    return {"from": iso(flow.now - timedelta(days=days)), "to": iso(flow.now + timedelta(hours=1))}


async def statement(
    chain: Chain, enterprise: uuid.UUID, principal: Principal, flow: Flow, **params: Any
) -> Json:
    params = {**period(flow), **params}
    return await ok(await get_statement(chain, enterprise, principal, **params), 200)


def aluminium(body: Json) -> Json:
    (section,) = [m for m in body["metals"] if m["metal"] == "aluminium"]
    return section  # type: ignore[no-any-return]


NO_SMELTING = {
    "runs": 0,
    "recycled_input": {"post_consumer_kg": 0.0, "pre_consumer_kg": 0.0, "total_kg": 0.0},
    "scrap_input_kg": 0.0,
    "primary_input_kg": 0.0,
    "total_metal_input_kg": 0.0,
    "recycled_content_percent": None,
    "remelted_product_kg": 0.0,
    "product_output_kg": 0.0,
}
NO_COLLECTION = {"lots": 0, "kg": 0.0, "by_category_and_channel": []}
NO_HANDLING = {
    "received_kg": 0.0,
    "received_by_category_and_channel": [],
    "pretreatment_input_kg": 0.0,
    "pretreatment_by_process": [],
}
NO_PROCESSING = {
    "certificates": 0,
    "certified_mass_kg": 0.0,
    "certified_recycled": {"post_consumer_kg": 0.0, "pre_consumer_kg": 0.0, "total_kg": 0.0},
    "product_received_kg": 0.0,
    "product_received_by_form": [],
    "certified_recycled_percent": None,
}
AL_FACTORS_V1 = {
    "primary_factor": {"key": "primary_aluminium_china", "value": 16.0, "unit": "tCO2e/t"},
    "recycled_factor": {"key": "recycled_aluminium", "value": 0.5, "unit": "tCO2e/t"},
}
DIESEL_V1 = {"key": "road_freight_diesel", "value": 0.08, "unit": "kgCO2e/t-km"}
LNG_V1 = {"key": "road_freight_lng", "value": 0.07, "unit": "kgCO2e/t-km"}


def no_transport(version: int = 1) -> Json:
    return {
        "shipments": 0,
        "shipments_without_distance": 0,
        "shipments_without_factor": 0,
        "kg": 0.0,
        "tonne_km": 0.0,
        "emissions_kgco2e": 0.0,
        "factor_set_version": version,
        "by_vehicle_energy": [],
    }


def smelting_without_avoided(section: Json) -> Json:
    smelting = dict(section["smelting"])
    avoided = smelting.pop("avoided_emissions")
    assert avoided["factor_set_version"] >= 1
    return smelting


# --- the four statements ----------------------------------------------------------------------


async def test_recycler_statement(chain: Chain) -> None:
    flow = await run_chain(chain)
    world = chain.world
    body = await statement(chain, world.enterprise_a, world.a_viewer, flow)
    assert body["enterprise_id"] == str(world.enterprise_a)
    assert body["factor_set"]["version"] == 1
    assert [m["metal"] for m in body["metals"]] == ["aluminium", "copper"]
    al = aluminium(body)
    # Collected: the two lots as registered, 603 + 410 = 1013 kg; the 10 kg refused part that
    # came back is not a new purchase.
    assert al["collection"] == {
        "lots": 2,
        "kg": 1013.0,
        "by_category_and_channel": [
            {"category": FRAGMENTS, "channel": "online", "lots": 1, "kg": 410.0},
            {"category": WROUGHT, "channel": "offline", "lots": 1, "kg": 603.0},
        ],
    }
    assert al["handling"] == NO_HANDLING
    assert smelting_without_avoided(al) == NO_SMELTING
    assert al["smelting"]["avoided_emissions"] == {
        "kgco2e": 0.0,
        "factor_set_version": 1,
        **AL_FACTORS_V1,
    }
    assert al["processing"] == NO_PROCESSING
    # Diesel: 1013 kg × 120 km = 1.013 t × 120 km = 121.56 t-km; × 0.08 = 9.7248 → 9.725 kg CO2e.
    # LNG: the 10 kg refused part, no distance: counted, no t-km.
    assert al["transport"] == {
        "shipments": 2,
        "shipments_without_distance": 1,
        "shipments_without_factor": 0,
        "kg": 1023.0,
        "tonne_km": 121.56,
        "emissions_kgco2e": 9.725,
        "factor_set_version": 1,
        "by_vehicle_energy": [
            {
                "vehicle_energy": "diesel",
                "shipments": 1,
                "shipments_without_distance": 0,
                "kg": 1013.0,
                "kg_without_distance": 0.0,
                "tonne_km": 121.56,
                "emissions_kgco2e": 9.725,
                "factor_set_version": 1,
                "factor": DIESEL_V1,
            },
            {
                "vehicle_energy": "lng",
                "shipments": 1,
                "shipments_without_distance": 1,
                "kg": 10.0,
                "kg_without_distance": 10.0,
                "tonne_km": 0.0,
                "emissions_kgco2e": 0.0,
                "factor_set_version": 1,
                "factor": LNG_V1,
            },
        ],
    }
    copper = next(m for m in body["metals"] if m["metal"] == "copper")
    assert copper["collection"] == NO_COLLECTION
    assert copper["transport"] == no_transport()


async def test_pretreatment_centre_statement(chain: Chain) -> None:
    flow = await run_chain(chain)
    world = chain.world
    body = await statement(chain, world.enterprise_b, world.b_admin, flow, metal="aluminium")
    assert [m["metal"] for m in body["metals"]] == ["aluminium"]
    al = aluminium(body)
    assert al["collection"] == NO_COLLECTION
    # Accepted at the centre: L1 600 kg (as weighed) and L2 410 − 10 refused = 400 kg.
    # Shredded: 1000 kg in, 950 kg out, 50 kg lost.
    assert al["handling"] == {
        "received_kg": 1000.0,
        "received_by_category_and_channel": [
            {"category": FRAGMENTS, "channel": "online", "lots": 1, "kg": 400.0},
            {"category": WROUGHT, "channel": "offline", "lots": 1, "kg": 600.0},
        ],
        "pretreatment_input_kg": 1000.0,
        "pretreatment_by_process": [
            {
                "process": "shredding",
                "runs": 1,
                "input_kg": 1000.0,
                "output_kg": 950.0,
                "loss_kg": 50.0,
            }
        ],
    }
    assert smelting_without_avoided(al) == NO_SMELTING
    assert al["processing"] == NO_PROCESSING
    # LNG: 0.95 t × 200 km = 190 t-km; × 0.07 = 13.3 kg CO2e.
    assert al["transport"] == {
        "shipments": 1,
        "shipments_without_distance": 0,
        "shipments_without_factor": 0,
        "kg": 950.0,
        "tonne_km": 190.0,
        "emissions_kgco2e": 13.3,
        "factor_set_version": 1,
        "by_vehicle_energy": [
            {
                "vehicle_energy": "lng",
                "shipments": 1,
                "shipments_without_distance": 0,
                "kg": 950.0,
                "kg_without_distance": 0.0,
                "tonne_km": 190.0,
                "emissions_kgco2e": 13.3,
                "factor_set_version": 1,
                "factor": LNG_V1,
            }
        ],
    }


async def test_smelter_statement(chain: Chain) -> None:
    flow = await run_chain(chain)
    body = await statement(chain, chain.smelter_enterprise, chain.s_admin, flow)
    al = aluminium(body)
    # The run of this period: 510 kg post + 340 kg pre recycled, of 850 kg scrap + 150 kg
    # primary = 1000 kg; 850 / 1000 = 85.00 %. Avoided: 850 kg × (16.0 − 0.5) = 13175 kg CO2e.
    assert al["smelting"] == {
        "runs": 1,
        "recycled_input": {"post_consumer_kg": 510.0, "pre_consumer_kg": 340.0, "total_kg": 850.0},
        "scrap_input_kg": 850.0,
        "primary_input_kg": 150.0,
        "total_metal_input_kg": 1000.0,
        "recycled_content_percent": 85.0,
        "remelted_product_kg": 0.0,
        "product_output_kg": 980.0,
        "avoided_emissions": {"kgco2e": 13175.0, "factor_set_version": 1, **AL_FACTORS_V1},
    }
    # Accepted: the 950 kg of shreds (made by a run: no channel).
    assert al["handling"] == {
        "received_kg": 950.0,
        "received_by_category_and_channel": [
            {"category": SHREDDED, "channel": None, "lots": 1, "kg": 950.0}
        ],
        "pretreatment_input_kg": 0.0,
        "pretreatment_by_process": [],
    }
    assert al["collection"] == NO_COLLECTION
    assert al["processing"] == NO_PROCESSING  # S issued the certificate; it received none
    # Diesel: 0.98 t × 50 km = 49 t-km; × 0.08 = 3.92 kg CO2e.
    assert al["transport"]["tonne_km"] == 49.0
    assert al["transport"]["emissions_kgco2e"] == 3.92
    assert al["transport"]["by_vehicle_energy"][0]["factor"] == DIESEL_V1


async def test_processor_statement(chain: Chain) -> None:
    flow = await run_chain(chain)
    body = await statement(chain, chain.processor_enterprise, chain.m_admin, flow)
    al = aluminium(body)
    # Certified to M: 499.8 kg post + 333.2 kg pre = 833 kg of the 980 kg ingot it received;
    # 833 / 980 = 85.00 %.
    assert al["processing"] == {
        "certificates": 1,
        "certified_mass_kg": 980.0,
        "certified_recycled": {
            "post_consumer_kg": 499.8,
            "pre_consumer_kg": 333.2,
            "total_kg": 833.0,
        },
        "product_received_kg": 980.0,
        "product_received_by_form": [
            {"category": "ingot", "channel": None, "lots": 1, "kg": 980.0}
        ],
        "certified_recycled_percent": 85.0,
    }
    assert al["handling"] == NO_HANDLING  # a product is not scrap handled
    assert smelting_without_avoided(al) == NO_SMELTING
    assert al["transport"] == no_transport()


async def test_a_revoked_certificate_leaves_the_processor_statement(chain: Chain) -> None:
    flow = await run_chain(chain)
    revoked = await chain.client.post(
        f"/api/v1/certificates/{flow.certificate['id']}/revoke",
        json={"reason": "issued to the wrong plant"},
        headers=chain.s_admin.headers,
    )
    assert revoked.status_code == 200, revoked.text
    al = aluminium(await statement(chain, chain.processor_enterprise, chain.m_admin, flow))
    assert al["processing"]["certificates"] == 0
    assert al["processing"]["certified_recycled"]["total_kg"] == 0.0
    assert al["processing"]["product_received_kg"] == 980.0
    assert al["processing"]["certified_recycled_percent"] == 0.0


# --- the period -------------------------------------------------------------------------------


async def test_the_period_leaves_out_runs_that_ended_outside_it(chain: Chain) -> None:
    flow = await run_chain(chain)
    # Over the last 30 days the run of ten days ago counts too: 570 post + 380 pre = 950 kg
    # recycled of 950 + 150 = 1100 kg, 86.3636… → 86.36 %; products 980 + 100 = 1080 kg;
    # avoided 950 × 15.5 = 14725 kg CO2e.
    wide = aluminium(
        await statement(chain, chain.smelter_enterprise, chain.s_admin, flow, **period(flow, 30))
    )
    assert wide["smelting"] == {
        "runs": 2,
        "recycled_input": {"post_consumer_kg": 570.0, "pre_consumer_kg": 380.0, "total_kg": 950.0},
        "scrap_input_kg": 950.0,
        "primary_input_kg": 150.0,
        "total_metal_input_kg": 1100.0,
        "recycled_content_percent": 86.36,
        "remelted_product_kg": 0.0,
        "product_output_kg": 1080.0,
        "avoided_emissions": {"kgco2e": 14725.0, "factor_set_version": 1, **AL_FACTORS_V1},
    }
    # Only the old run: [11 days ago, 9 days ago).
    old = aluminium(
        await statement(
            chain,
            chain.smelter_enterprise,
            chain.s_admin,
            flow,
            **{"from": iso(flow.now - timedelta(days=11)), "to": iso(flow.now - timedelta(days=9))},
        )
    )
    assert old["smelting"]["runs"] == 1
    assert old["smelting"]["recycled_input"]["total_kg"] == 100.0
    assert old["smelting"]["recycled_content_percent"] == 100.0
    assert old["handling"]["received_kg"] == 0.0  # the shreds arrived today
    assert old["transport"] == no_transport()
    # The period is half-open: ending exactly when a run ended leaves it out.
    run_ended = flow.now - timedelta(minutes=1)
    before = aluminium(
        await statement(
            chain,
            chain.smelter_enterprise,
            chain.s_admin,
            flow,
            **{"from": iso(run_ended - timedelta(hours=1)), "to": iso(run_ended)},
        )
    )
    assert before["smelting"]["runs"] == 0
    starting = aluminium(
        await statement(
            chain,
            chain.smelter_enterprise,
            chain.s_admin,
            flow,
            **{"from": iso(run_ended), "to": iso(run_ended + timedelta(seconds=1))},
        )
    )
    assert starting["smelting"]["runs"] == 1


async def test_without_a_period_the_statement_covers_the_last_12_months(chain: Chain) -> None:
    flow = await run_chain(chain)
    response = await get_statement(chain, chain.smelter_enterprise, chain.s_admin)
    body = await ok(response, 200)
    start = datetime.fromisoformat(body["period"]["from"])
    end = datetime.fromisoformat(body["period"]["to"])
    assert end >= flow.now
    assert start == end.replace(year=end.year - 1)
    assert aluminium(body)["smelting"]["runs"] == 2


async def test_a_remelted_product_is_not_counted_as_recycled_input_again(chain: Chain) -> None:
    flow = await run_chain(chain)
    # S casts the old 100 kg ingot (60 post, 40 pre) into billets: the metal was counted as
    # recycled input when it was first melted.
    await record_run(
        chain,
        chain.s_admin,
        facility_id=chain.smelter,
        process="casting",
        started_at=iso(flow.now - timedelta(minutes=30)),
        ended_at=iso(flow.now - timedelta(minutes=20)),
        inputs=[{"lot_id": flow.old_ingot, "kg": 100}],
        outputs=[{"kind": "product", "metal": "aluminium", "product_form": "billet", "kg": 100}],
    )
    smelting = aluminium(await statement(chain, chain.smelter_enterprise, chain.s_admin, flow))[
        "smelting"
    ]
    assert smelting["runs"] == 2
    assert smelting["recycled_input"]["total_kg"] == 850.0
    assert smelting["total_metal_input_kg"] == 1000.0
    assert smelting["remelted_product_kg"] == 100.0
    assert smelting["product_output_kg"] == 1080.0
    assert smelting["avoided_emissions"]["kgco2e"] == 13175.0


async def test_a_voided_run_leaves_the_statement(chain: Chain) -> None:
    flow = await run_chain(chain)
    cast = await record_run(
        chain,
        chain.s_admin,
        facility_id=chain.smelter,
        process="casting",
        started_at=iso(flow.now - timedelta(minutes=30)),
        ended_at=iso(flow.now - timedelta(minutes=20)),
        inputs=[{"lot_id": flow.old_ingot, "kg": 100}],
        outputs=[{"kind": "product", "metal": "aluminium", "product_form": "billet", "kg": 100}],
    )
    voided = await chain.client.post(
        f"/api/v1/transformations/{cast['id']}/void",
        json={"reason": "wrong mould"},
        headers=chain.s_admin.headers,
    )
    assert voided.status_code == 200, voided.text
    smelting = aluminium(await statement(chain, chain.smelter_enterprise, chain.s_admin, flow))[
        "smelting"
    ]
    assert smelting["runs"] == 1
    assert smelting["product_output_kg"] == 980.0


# --- who sees a statement ---------------------------------------------------------------------


async def test_members_authorities_in_jurisdiction_and_admins_see_it(chain: Chain) -> None:
    flow = await run_chain(chain)
    world = chain.world
    allowed = [
        (chain.smelter_enterprise, chain.s_admin),
        (chain.smelter_enterprise, world.province_inspector),  # S is in Anshun, inside 52
        (chain.smelter_enterprise, world.admin),
        (world.enterprise_b, world.zunyi_supervisor),  # P's centre is in Zunyi
        (world.enterprise_a, world.guiyang_supervisor),
        (world.enterprise_a, world.a_viewer),
    ]
    for enterprise, principal in allowed:
        response = await get_statement(chain, enterprise, principal, **period(flow))
        assert response.status_code == 200, (principal.role, response.text)


async def test_everyone_else_gets_the_404_of_a_missing_enterprise(chain: Chain) -> None:
    flow = await run_chain(chain)
    world = chain.world
    missing = await get_statement(chain, uuid.uuid4(), world.admin, **period(flow))
    assert missing.status_code == 404
    hidden = [
        (chain.smelter_enterprise, chain.m_admin),  # its customer is another enterprise
        (world.enterprise_b, world.a_admin),  # its supplier too
        (chain.smelter_enterprise, world.guiyang_supervisor),  # Anshun is outside Guiyang
        (world.enterprise_a, world.zunyi_supervisor),  # Guiyang is outside Zunyi
    ]
    for enterprise, principal in hidden:
        response = await get_statement(chain, enterprise, principal, **period(flow))
        assert response.status_code == 404, (principal.role, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["code"] == missing.json()["code"] == "not_found"
        assert response.json()["title"] == missing.json()["title"]
    anonymous = await chain.client.get(f"/api/v1/enterprises/{world.enterprise_a}/statement")
    assert anonymous.status_code == 401


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code", "pointer"),
    [
        (
            {"from": "2026-11-02T00:00:00+08:00", "to": "2026-11-01T00:00:00+08:00"},
            "invalid_period",
            "/from",
        ),
        (
            {"from": "2026-11-01T00:00:00+08:00", "to": "2026-11-01T00:00:00+08:00"},
            "invalid_period",
            "/from",
        ),
        ({"to": "0001-01-01T00:00:00+14:00"}, "invalid_period", "/to"),  # outside 1900-9000
        ({"from": "2026-11-01T00:00:00"}, "validation_failed", "/from"),  # no offset
        ({"to": "yesterday"}, "validation_failed", "/to"),
        ({"metal": "iron"}, "validation_failed", "/metal"),
        ({"factor_set": "99999"}, "unknown_factor_set", "/factor_set"),
        ({"factor_set": "0"}, "validation_failed", "/factor_set"),
        ({"factor_set": "latest"}, "validation_failed", "/factor_set"),
    ],
)
async def test_bad_query_parameters_are_422(
    chain: Chain, params: dict[str, str], code: str, pointer: str
) -> None:
    response = await get_statement(chain, chain.smelter_enterprise, chain.s_admin, **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["code"] == code
    assert pointer in [e["pointer"] for e in problem["errors"]]


async def test_a_bad_query_for_a_hidden_enterprise_is_still_404(chain: Chain) -> None:
    """Visibility first: a 422 would tell a stranger that the enterprise exists."""
    response = await get_statement(
        chain, chain.smelter_enterprise, chain.m_admin, factor_set="99999"
    )
    assert response.status_code == 404


# --- emission factors -------------------------------------------------------------------------

AL_PRIMARY_17 = {
    "key": "primary_aluminium_china",
    "value": 17.0,
    "unit": "tCO2e/t",
    "year": 2026,
    "scope": "cradle-to-gate primary aluminium on a coal-heavy grid",
    "source": "provincial review 2026",
    "confidence": "medium",
}


def factor_set_body(*factors: Json) -> Json:
    return {
        "label": "2026 review",
        "source": "Guizhou DRC",
        "factors": list(factors or [AL_PRIMARY_17]),
    }


async def test_a_new_factor_version_changes_avoided_emissions_and_says_so(chain: Chain) -> None:
    flow = await run_chain(chain)
    world = chain.world
    published = await ok(
        await chain.client.post(
            "/api/v1/reference/emission-factors",
            json=factor_set_body(),
            headers=world.province_supervisor.headers,
        )
    )
    assert published["version"] == 2
    latest = await statement(chain, chain.smelter_enterprise, chain.s_admin, flow)
    assert latest["factor_set"]["version"] == 2
    al = aluminium(latest)
    # 850 kg × (17.0 − 0.5) = 14025 kg CO2e.
    assert al["smelting"]["avoided_emissions"] == {
        "kgco2e": 14025.0,
        "factor_set_version": 2,
        "primary_factor": {"key": "primary_aluminium_china", "value": 17.0, "unit": "tCO2e/t"},
        "recycled_factor": {"key": "recycled_aluminium", "value": 0.5, "unit": "tCO2e/t"},
    }
    # Transport factors were carried over: same figure, stated with the new version.
    assert al["transport"]["emissions_kgco2e"] == 3.92
    assert al["transport"]["factor_set_version"] == 2
    assert al["transport"]["by_vehicle_energy"][0]["factor_set_version"] == 2
    # The older version can still be asked for.
    older = aluminium(
        await statement(chain, chain.smelter_enterprise, chain.s_admin, flow, factor_set=1)
    )
    assert older["smelting"]["avoided_emissions"]["kgco2e"] == 13175.0
    assert older["smelting"]["avoided_emissions"]["factor_set_version"] == 1


async def test_publishing_carries_over_keys_not_given_and_records_an_event(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    before = await ok(
        await client.get("/api/v1/reference/emission-factors", headers=world.a_viewer.headers), 200
    )
    new_key = {
        "key": "road_freight_hydrogen",
        "value": 0.02,
        "unit": "kgCO2e/t-km",
        "scope": "fuel-cell truck",
        "source": "estimate",
        "confidence": "low",
    }
    response = await client.post(
        "/api/v1/reference/emission-factors",
        json=factor_set_body(AL_PRIMARY_17, new_key),
        headers=world.province_supervisor.headers,
    )
    published = await ok(response)
    version = before["version"] + 1
    assert published["version"] == version
    assert response.headers["location"] == f"/api/v1/reference/emission-factors?version={version}"
    old = {f["key"]: f for f in before["factors"]}
    new = {f["key"]: f for f in published["factors"]}
    assert set(new) == set(old) | {"road_freight_hydrogen"}
    assert new["primary_aluminium_china"]["value"] == 17.0
    assert new["primary_aluminium_china"]["year"] == 2026
    carried = sorted(set(old) - {"primary_aluminium_china"})
    assert published["carried_over"] == carried
    assert all(new[key] == old[key] for key in carried)
    # GET answers the latest, or the version asked for.
    latest = await ok(
        await client.get("/api/v1/reference/emission-factors", headers=world.a_viewer.headers), 200
    )
    assert latest["version"] == version
    assert {f["key"]: f for f in latest["factors"]} == new
    first = await ok(
        await client.get(
            "/api/v1/reference/emission-factors",
            params={"version": before["version"]},
            headers=world.a_viewer.headers,
        ),
        200,
    )
    assert first == before
    event = (
        await session.execute(
            text(
                "SELECT subject_id, actor_authority_id, region_codes, payload FROM event"
                " WHERE type = 'emission_factors.published'"
            )
        )
    ).one()
    assert event.subject_id == str(version)
    assert event.actor_authority_id == world.province_authority
    assert event.region_codes == ["52"]
    assert event.payload["previous_version"] == before["version"]
    assert [f["key"] for f in event.payload["factors"]] == [
        "primary_aluminium_china",
        "road_freight_hydrogen",
    ]
    assert event.payload["factors"][0]["previous_value"] == "16.000000"
    assert event.payload["carried_over"] == carried


async def test_publishing_is_idempotent_with_a_key(client: httpx.AsyncClient, world: World) -> None:
    headers = {**world.province_supervisor.headers, "Idempotency-Key": "factors-2026-review"}
    first = await client.post(
        "/api/v1/reference/emission-factors", json=factor_set_body(), headers=headers
    )
    again = await client.post(
        "/api/v1/reference/emission-factors", json=factor_set_body(), headers=headers
    )
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    latest = await client.get("/api/v1/reference/emission-factors", headers=world.admin.headers)
    assert latest.json()["version"] == first.json()["version"]


@pytest.mark.parametrize("who", ["province_inspector", "a_admin", "b_admin"])
async def test_only_supervisors_and_admins_publish(
    client: httpx.AsyncClient, world: World, who: str
) -> None:
    response = await client.post(
        "/api/v1/reference/emission-factors",
        json=factor_set_body(),
        headers=getattr(world, who).headers,
    )
    assert response.status_code == 403, response.text
    allowed = await client.post(
        "/api/v1/reference/emission-factors", json=factor_set_body(), headers=world.admin.headers
    )
    assert allowed.status_code == 201, allowed.text


@pytest.mark.parametrize(
    ("factors", "pointer"),
    [
        ([{**AL_PRIMARY_17, "value": -0.1}], "/factors/0/value"),
        ([AL_PRIMARY_17, {**AL_PRIMARY_17, "value": 18}], "/factors/1/key"),
        ([{**AL_PRIMARY_17, "unit": "kgCO2e/t-km"}], "/factors/0/unit"),
        ([{**AL_PRIMARY_17, "key": "Primary Al"}], "/factors/0/key"),
        ([{**AL_PRIMARY_17, "confidence": "sure"}], "/factors/0/confidence"),
        ([{**AL_PRIMARY_17, "value": "1.0000001"}], "/factors/0/value"),
        ([], "/factors"),
    ],
)
async def test_bad_factor_sets_are_422_and_publish_nothing(
    client: httpx.AsyncClient, world: World, factors: list[Json], pointer: str
) -> None:
    before = await client.get("/api/v1/reference/emission-factors", headers=world.admin.headers)
    response = await client.post(
        "/api/v1/reference/emission-factors",
        json={"label": "bad", "source": "bad", "factors": factors},
        headers=world.province_supervisor.headers,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert pointer in [e["pointer"] for e in response.json()["errors"]]
    after = await client.get("/api/v1/reference/emission-factors", headers=world.admin.headers)
    assert after.json()["version"] == before.json()["version"]


async def test_an_unknown_factor_version_is_422(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get(
        "/api/v1/reference/emission-factors",
        params={"version": 4242},
        headers=world.admin.headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_factor_set"
