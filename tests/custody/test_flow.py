"""The custody path end to end over HTTP: register, ship, weigh, refuse, discrepancy, history."""

from __future__ import annotations

from tests.custody.conftest import Custody


async def test_register_ship_and_receive_with_a_partial_refusal(custody: Custody) -> None:
    world, client = custody.world, custody.client
    lot = await custody.register(1000.5)
    assert lot["status"] == "active"
    assert lot["net_kg"] == 1000.5
    assert lot["composition"] == {"post_consumer_kg": 1000.5, "pre_consumer_kg": 0, "primary_kg": 0}
    assert lot["seller"] == {
        "kind": "individual",
        "name": "王**",
        "id_number": "5201************3X",
    }
    assert lot["holder_facility_id"] == custody.point_a

    shipped = await custody.ship([lot["id"]])
    assert shipped.status_code == 201, shipped.text
    shipment = shipped.json()
    assert shipment["status"] == "dispatched"
    assert shipment["dispatched_kg"] == 1000.5

    in_transit = await client.get(f"/api/v1/lots/{lot['id']}", headers=world.a_viewer.headers)
    assert in_transit.json()["status"] == "in_transit"

    # 980 kg arrive (19.5 kg lost: above 1 %), 80 kg of them refused.
    received = await custody.receive(
        shipment["id"],
        [{"lot_id": lot["id"], "received_kg": 980, "refused_kg": 80, "refusal_reason": "wet"}],
    )
    assert received.status_code == 201, received.text
    body = received.json()
    assert body["status"] == "partially_refused"
    (item,) = body["items"]
    assert item["difference_kg"] == 20.5
    assert item["refused_kg"] == 80

    accepted = await client.get(f"/api/v1/lots/{lot['id']}", headers=world.b_admin.headers)
    assert accepted.status_code == 200
    assert accepted.json()["net_kg"] == 900
    assert accepted.json()["holder_facility_id"] == custody.centre_b
    refused = await client.get(
        f"/api/v1/lots/{item['refused_lot_id']}", headers=world.a_admin.headers
    )
    assert refused.json()["status"] == "refused"
    assert refused.json()["net_kg"] == 80
    assert refused.json()["holder_facility_id"] == custody.point_a
    assert refused.json()["parent_lot_id"] == lot["id"]

    discrepancies = await client.get("/api/v1/discrepancies", headers=world.a_admin.headers)
    (discrepancy,) = discrepancies.json()["items"]
    assert discrepancy["difference_kg"] == 20.5
    assert discrepancy["tolerance_kg"] == 10.005

    history = await client.get(f"/api/v1/lots/{lot['id']}/history", headers=world.a_admin.headers)
    assert [e["type"] for e in history.json()] == [
        "lot.registered",
        "shipment.dispatched",
        "shipment.received",
        "discrepancy.opened",
    ]
