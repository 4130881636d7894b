"""Regulators' reports on a small scenario computed by hand, in two prefectures no other test
uses (Qiandongnan 5226 and Qiannan 5227), so the figures of their authorities are exact:

    A collection point in Kaili (522601) buys 100 kg and 50 kg of post-consumer aluminium scrap
    and ships both to a pretreatment centre in Duyun (522701): LNG truck, 140 km.
    The centre weighs 97 kg and 50 kg: 3 kg missing on the first lot against a 1 kg tolerance
    (1%) -> a weight discrepancy.
    It shreds all 147 kg into 140 kg of fragments, losing 7 kg (4.76% > the 3% threshold for
    shredding -> a loss anomaly), and ships them 10 km by electric truck to a smelter in Duyun.
    The smelter melts the 140 kg with 60 kg of primary aluminium into 150 kg of molten aluminium
    for direct alloying, 40 kg of molten aluminium for casting, and 10 kg of dross.

    flows (prefecture level): 5226 -> 5227: 1 shipment, 150 kg dispatched, 147 kg accepted;
                              5227 -> 5227: 1 shipment, 140 kg.
    direct alloying rate: 150 / (150 + 40) = 78.95%, below the plan's 90%.
    recycled share of aluminium made: the pool is 140 recycled + 60 primary = 70% recycled.
    clean transport: LNG 0.150 t x 140 km = 21 t-km, electric 0.140 t x 10 km = 1.4 t-km
                     -> 1.4 / 22.4 = 6.25%.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM, Role
from domain.registry import service as registry
from tests.conftest import World, make_key
from tests.custody.conftest import lot_body
from tests.factories import random_uscc

Json = dict[str, Any]
PERIOD = {"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}


@dataclass
class Scenario:
    client: httpx.AsyncClient
    kaili: dict[str, str]  # the recycler's operator
    duyun: dict[str, str]  # the centre's and smelter's operator
    qiandongnan: dict[str, str]  # authority 5226 inspector
    qiannan: dict[str, str]  # authority 5227 inspector
    discrepancy_id: str
    shredding_id: str


async def _enterprise(session: AsyncSession, region: str, roles: list[str]) -> uuid.UUID:
    enterprise = await registry.create_enterprise(
        session,
        SYSTEM,
        name=f"E {region} {uuid.uuid4().hex[:6]}",
        uscc=random_uscc(region),
        roles=roles,
        region_code=region,
    )
    return enterprise.id


async def _facility(session: AsyncSession, enterprise: uuid.UUID, region: str, kind: str) -> str:
    facility = await registry.create_facility(
        session,
        SYSTEM,
        enterprise_id=enterprise,
        name=f"{kind} {region}",
        kind=kind,
        region_code=region,
        address="somewhere",
    )
    return str(facility.id)


async def _inspector(session: AsyncSession, jurisdiction: str) -> dict[str, str]:
    authority = await registry.create_authority(
        session, SYSTEM, name=f"authority {jurisdiction}", jurisdiction=jurisdiction
    )
    return (await make_key(session, Role.inspector, authority_id=authority.id)).headers


def _ok(response: httpx.Response, status: int = 201) -> Json:
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def scenario(session: AsyncSession, client: httpx.AsyncClient) -> Scenario:
    recycler = await _enterprise(session, "522601", ["recycler"])
    processor = await _enterprise(session, "522701", ["pretreater", "smelter"])
    point = await _facility(session, recycler, "522601", "collection_point")
    centre = await _facility(session, processor, "522701", "pretreatment_center")
    smelter = await _facility(session, processor, "522701", "smelter")
    kaili = (await make_key(session, Role.operator, recycler)).headers
    duyun = (await make_key(session, Role.operator, processor)).headers
    qiandongnan = await _inspector(session, "5226")
    qiannan = await _inspector(session, "5227")
    await session.commit()

    lots = [
        _ok(await client.post("/api/v1/lots", json=lot_body(point, kg), headers=kaili))
        for kg in (100, 50)
    ]
    shipment = _ok(
        await client.post(
            "/api/v1/shipments",
            json={
                "from_facility_id": point,
                "to_facility_id": centre,
                "lot_ids": [lot["id"] for lot in lots],
                "vehicle_energy": "lng",
                "distance_km": 140,
            },
            headers=kaili,
        )
    )
    _ok(
        await client.post(
            f"/api/v1/shipments/{shipment['id']}/receipt",
            json={
                "items": [
                    {"lot_id": lots[0]["id"], "received_kg": 97},
                    {"lot_id": lots[1]["id"], "received_kg": 50},
                ]
            },
            headers=duyun,
        )
    )
    opened = _ok(await client.get("/api/v1/discrepancies", headers=kaili), 200)["items"]
    (discrepancy,) = [d for d in opened if d["shipment_id"] == shipment["id"]]
    shredding = _ok(
        await client.post(
            "/api/v1/transformations",
            json={
                "facility_id": centre,
                "process": "shredding",
                "started_at": "2026-11-21T08:00:00+08:00",
                "ended_at": "2026-11-21T10:00:00+08:00",
                "inputs": [
                    {"lot_id": lot["id"], "kg": kg} for lot, kg in zip(lots, (97, 50), strict=True)
                ],
                "outputs": [
                    {
                        "kind": "scrap",
                        "metal": "aluminium",
                        "category": "GB13586-FRAGMENTS",
                        "kg": 140,
                    }
                ],
                "losses": [{"kind": "non_metallic_residue", "kg": 7}],
            },
            headers=duyun,
        )
    )
    fragments = shredding["outputs"][0]
    onward = _ok(
        await client.post(
            "/api/v1/shipments",
            json={
                "from_facility_id": centre,
                "to_facility_id": smelter,
                "lot_ids": [fragments["id"]],
                "vehicle_energy": "electric",
                "distance_km": 10,
            },
            headers=duyun,
        )
    )
    _ok(
        await client.post(
            f"/api/v1/shipments/{onward['id']}/receipt",
            json={"items": [{"lot_id": fragments["id"], "received_kg": 140}]},
            headers=duyun,
        )
    )
    _ok(
        await client.post(
            "/api/v1/transformations",
            json={
                "facility_id": smelter,
                "process": "melting",
                "started_at": "2026-11-22T08:00:00+08:00",
                "ended_at": "2026-11-22T12:00:00+08:00",
                "inputs": [{"lot_id": fragments["id"], "kg": 140}],
                "primary_inputs": [
                    {"metal": "aluminium", "kg": 60, "description": "AL99.70 ingot"}
                ],
                "outputs": [
                    {"kind": "product", "metal": "aluminium", "product_form": "molten",
                     "destination_use": "direct_alloying", "kg": 150},
                    {"kind": "product", "metal": "aluminium", "product_form": "molten",
                     "destination_use": "casting", "kg": 40},
                ],
                "losses": [{"kind": "dross", "kg": 10}],
            },
            headers=duyun,
        )
    )  # fmt: skip
    return Scenario(client, kaili, duyun, qiandongnan, qiannan, discrepancy["id"], shredding["id"])


async def _report(scenario: Scenario, name: str, headers: dict[str, str], **params: str) -> Json:
    response = await scenario.client.get(
        f"/api/v1/reports/{name}", params={**PERIOD, **params}, headers=headers
    )
    return _ok(response, 200)


def _flows(report: Json) -> dict[tuple[str, str], tuple[int, Decimal, Decimal]]:
    return {
        (f["from_region"], f["to_region"]): (
            f["shipments"],
            Decimal(str(f["dispatched_kg"])),
            Decimal(str(f["accepted_kg"])),
        )
        for f in report["flows"]
        if f["metal"] == "aluminium"
    }


async def test_flows_between_prefectures_as_computed_by_hand(scenario: Scenario) -> None:
    qiannan = await _report(scenario, "flows", scenario.qiannan)
    assert _flows(qiannan) == {
        ("5226", "5227"): (1, Decimal(150), Decimal(147)),
        ("5227", "5227"): (1, Decimal(140), Decimal(140)),
    }
    assert Decimal(str(qiannan["within_province_kg"]["aluminium"])) == 290
    # Qiandongnan sees what leaves it, not what moves inside Qiannan.
    assert set(_flows(await _report(scenario, "flows", scenario.qiandongnan))) == {("5226", "5227")}
    province = await _report(scenario, "flows", scenario.qiannan, level="province")
    assert _flows(province)[("52", "52")][1] == 290


async def test_guiyang_sees_nothing_of_a_flow_between_two_other_prefectures(
    scenario: Scenario, world: World
) -> None:
    guiyang = await _report(scenario, "flows", world.guiyang_supervisor.headers)
    touched = {code for f in guiyang["flows"] for code in (f["from_region"], f["to_region"])}
    assert not touched & {"5226", "5227"}


async def test_indicators_as_computed_by_hand(scenario: Scenario) -> None:
    report = await _report(scenario, "indicators", scenario.qiannan)
    found = {i["key"]: i for i in report["indicators"]}
    direct = found["direct_alloying_rate"]
    assert Decimal(str(direct["value"])) == Decimal("78.95")
    assert Decimal(str(direct["target"])) == 90
    assert direct["met"] is False
    assert Decimal(str(found["recycled_share_aluminium"]["value"])) == Decimal("70.00")
    clean = found["clean_transport_share"]
    assert Decimal(str(clean["value"])) == Decimal("6.25")
    assert Decimal(str(clean["denominator"])) == Decimal("22.4")
    coverage = found["pretreatment_coverage"]
    assert [d["prefecture"] for d in coverage["detail"]] == ["5227"]
    assert coverage["detail"][0]["centres"] == 1
    assert Decimal(str(coverage["detail"][0]["handled_kg"])) == 147


async def test_anomalies_name_the_discrepancy_and_the_high_loss(scenario: Scenario) -> None:
    report = await _report(scenario, "anomalies", scenario.qiannan)
    kinds = {(a["kind"], a["subject_id"]) for a in report["anomalies"]}
    assert ("weight_discrepancy", scenario.discrepancy_id) in kinds
    assert ("loss_above_threshold", scenario.shredding_id) in kinds
    loss = next(a for a in report["anomalies"] if a["kind"] == "loss_above_threshold")
    assert "4.76%" in loss["detail"]


async def test_enterprises_get_404_on_reports(scenario: Scenario) -> None:
    for name in ("flows", "indicators", "anomalies"):
        response = await scenario.client.get(
            f"/api/v1/reports/{name}", params=PERIOD, headers=scenario.duyun
        )
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_period_before_everything_is_empty_and_a_bad_one_is_422(
    scenario: Scenario,
) -> None:
    empty = await _report(
        scenario, "flows", scenario.qiannan, **{"from": "2001-01-01T00:00:00Z",
                                                "to": "2001-02-01T00:00:00Z"}
    )  # fmt: skip
    assert empty["flows"] == []
    bad = await scenario.client.get(
        "/api/v1/reports/flows",
        params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=scenario.qiannan,
    )
    assert bad.status_code == 422
