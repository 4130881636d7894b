"""Process runs over HTTP: exact balance, pooled composition, lineage up and down, void."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM
from domain.registry import service as registry
from tests.custody.conftest import Custody

START, END = "2026-11-21T08:00:00+08:00", "2026-11-21T10:00:00+08:00"


async def _run(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/transformations",
        json={"started_at": START, "ended_at": END, **body},
        headers=headers,
    )


async def test_from_collection_to_molten_metal_and_back(
    custody: Custody, session: AsyncSession
) -> None:
    world, client = custody.world, custody.client
    smelter = await registry.create_facility(
        session,
        SYSTEM,
        enterprise_id=world.enterprise_b,
        name="B smelter",
        kind="smelter",
        region_code="520302",
        address="Zunyi",
    )
    await session.commit()
    post = await custody.register(600, consumer_class="post_consumer")
    pre = await custody.register(400, consumer_class="pre_consumer")
    shipment = (await custody.ship([post["id"], pre["id"]])).json()
    received = await custody.receive(
        shipment["id"],
        [{"lot_id": post["id"], "received_kg": 600}, {"lot_id": pre["id"], "received_kg": 400}],
    )
    assert received.status_code == 201, received.text

    # Shred 300 kg of the post-consumer lot and all of the pre-consumer lot.
    shredded = await _run(
        client,
        world.b_admin.headers,
        facility_id=custody.centre_b,
        process="shredding",
        inputs=[{"lot_id": post["id"], "kg": 300}, {"lot_id": pre["id"], "kg": 400}],
        outputs=[
            {"kind": "scrap", "metal": "aluminium", "category": "GB13586-FRAGMENTS", "kg": 690}
        ],
        losses=[{"kind": "non_metallic_residue", "kg": 10}],
    )
    assert shredded.status_code == 201, shredded.text
    run = shredded.json()
    (fragments,) = run["outputs"]
    assert fragments["composition"] == {
        "post_consumer_kg": 295.714,
        "pre_consumer_kg": 394.286,
        "primary_kg": 0,
    }
    assert run["losses"][0]["post_consumer_kg"] + run["losses"][0]["pre_consumer_kg"] == 10
    rest = (await client.get(f"/api/v1/lots/{post['id']}", headers=world.b_admin.headers)).json()
    assert rest["net_kg"] == 300 and rest["status"] == "active"
    gone = (await client.get(f"/api/v1/lots/{pre['id']}", headers=world.b_admin.headers)).json()
    assert gone["status"] == "consumed"

    unbalanced = await _run(
        client,
        world.b_admin.headers,
        facility_id=custody.centre_b,
        process="sorting",
        inputs=[{"lot_id": post["id"], "kg": 100}],
        outputs=[{"kind": "scrap", "metal": "aluminium", "category": "GB13586-WROUGHT", "kg": 99}],
    )
    assert unbalanced.status_code == 422
    assert unbalanced.json()["code"] == "mass_unbalanced"
    assert "100000 g" in unbalanced.json()["detail"] and "99000 g" in unbalanced.json()["detail"]

    # Move the fragments to the smelter (same enterprise) and melt them with primary metal.
    moved = await client.post(
        "/api/v1/shipments",
        json={
            "from_facility_id": custody.centre_b,
            "to_facility_id": str(smelter.id),
            "lot_ids": [fragments["id"]],
        },
        headers=world.b_admin.headers,
    )
    assert moved.status_code == 201, moved.text
    assert (
        await client.post(
            f"/api/v1/shipments/{moved.json()['id']}/receipt",
            json={"items": [{"lot_id": fragments["id"], "received_kg": 690}]},
            headers=world.b_admin.headers,
        )
    ).status_code == 201
    melted = await _run(
        client,
        world.b_admin.headers,
        facility_id=str(smelter.id),
        process="melting",
        inputs=[{"lot_id": fragments["id"], "kg": 690}],
        primary_inputs=[{"metal": "aluminium", "kg": 310, "description": "AL99.70"}],
        outputs=[
            {
                "kind": "product",
                "metal": "aluminium",
                "kg": 960,
                "product_form": "molten",
                "destination_use": "direct_alloying",
            }
        ],
        losses=[{"kind": "dross", "kg": 40}],
    )
    assert melted.status_code == 201, melted.text
    (product,) = melted.json()["outputs"]
    assert product["kind"] == "product"
    composition = product["composition"]
    assert round(sum(composition.values()), 3) == 960

    upstream = await client.get(
        f"/api/v1/lots/{product['id']}/lineage",
        params={"direction": "upstream"},
        headers=world.b_admin.headers,
    )
    assert upstream.status_code == 200, upstream.text
    tree = upstream.json()
    sources = {lot["lot_id"]: lot["kg"] for lot in tree["lots"] if lot["end"]}
    assert set(sources) == {post["id"], pre["id"]}
    assert round(sum(sources.values()) + tree["primary_kg"], 3) == 960
    assert abs(tree["primary_kg"] - 960 * 310 / 1000) < 0.002
    (collection_point,) = tree["facilities"]
    assert collection_point["facility_id"] == custody.point_a

    downstream = await client.get(
        f"/api/v1/lots/{pre['id']}/lineage",
        params={"direction": "downstream"},
        headers=world.a_admin.headers,  # the recycler follows the fate of its scrap
    )
    assert downstream.status_code == 200, downstream.text
    reached = {lot["lot_id"]: lot for lot in downstream.json()["lots"]}
    assert product["id"] in reached
    # 400 of the 700 kg shredded were this lot's: 4/7 of the fragments, and so of the 690 melted.
    assert abs(reached[product["id"]]["kg"] - 690 * 4 / 7 * 960 / 1000) < 0.01

    # The melt cannot be voided once... it can while the product has not moved:
    voided = await client.post(
        f"/api/v1/transformations/{melted.json()['id']}/void",
        json={"reason": "wrong furnace"},
        headers=world.b_admin.headers,
    )
    assert voided.status_code == 200, voided.text
    back = (
        await client.get(f"/api/v1/lots/{fragments['id']}", headers=world.b_admin.headers)
    ).json()
    assert back["status"] == "active" and back["net_kg"] == 690
    assert back["composition"] == fragments["composition"]
    product_now = (
        await client.get(f"/api/v1/lots/{product['id']}", headers=world.b_admin.headers)
    ).json()
    assert product_now["status"] == "voided"
