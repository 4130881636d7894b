"""Weighbridges (issue 7 point 2): device keys bound to one facility post tickets and can do
nothing else; net = gross − tare or 422; a repeated ticket number at a facility is 409, an event
and an anomaly for the regulators; a receipt naming a ticket takes its net mass (one lot) or must
sum to it (several lots); a ticket weighs one receipt only."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import SYSTEM
from domain.registry import service as registry
from domain.weighbridge.models import WeighbridgeDuplicate, WeighbridgeTicket
from tests.conftest import Json, Live, Principal
from tests.custody.conftest import Custody, assert_problem, pointers
from tests.routes import api_routes, needs_principal

TICKETS = "/api/v1/weighbridge/tickets"
WEIGHED = "2026-11-20T09:42:17+08:00"


def ticket(
    number: str = "ZY-2026-000123",
    gross: float = 31840.5,
    tare: float = 14220.0,
    net: float = 17620.5,
    **more: Any,
) -> Json:
    return {
        "ticket_no": number,
        "vehicle_plate": "贵C12345",
        "gross_kg": gross,
        "tare_kg": tare,
        "net_kg": net,
        "weighed_at": WEIGHED,
        **more,
    }


async def device_key(client: httpx.AsyncClient, admin: Principal, facility_id: str) -> Principal:
    response = await client.post(
        "/api/v1/api-keys",
        json={
            "name": "gate weighbridge",
            "role": "device",
            "enterprise_id": str(admin.enterprise_id),
            "facility_id": facility_id,
        },
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["role"] == "device"
    assert body["facility_id"] == facility_id
    return Principal(body["secret"], admin.role, admin.enterprise_id)


@pytest.fixture
async def scale(custody: Custody) -> Principal:
    """The device key of B's pretreatment centre's weighbridge."""
    return await device_key(custody.client, custody.world.b_admin, custody.centre_b)


async def post(custody: Custody, scale: Principal, body: Json) -> httpx.Response:
    return await custody.client.post(TICKETS, json=body, headers=scale.headers)


async def posted(custody: Custody, scale: Principal, **overrides: Any) -> Json:
    response = await post(custody, scale, ticket(**overrides))
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


async def shipped(custody: Custody, *kgs: float) -> tuple[str, list[Json]]:
    lots = [await custody.register(kg) for kg in kgs]
    response = await custody.ship([lot["id"] for lot in lots])
    assert response.status_code == 201, response.text
    return response.json()["id"], lots


def at(problem: Json) -> set[str]:
    return {error["pointer"] for error in problem.get("errors") or []}


async def events(session: AsyncSession, event_type: str) -> list[Any]:
    rows = await session.execute(
        text("SELECT subject_id, payload FROM event WHERE type = :t ORDER BY id"), {"t": event_type}
    )
    return list(rows.all())


# --- device keys ------------------------------------------------------------------------------


async def test_the_enterprise_admin_binds_a_device_key_to_its_own_facility(
    custody: Custody,
) -> None:
    client, world = custody.client, custody.world

    async def create(principal: Principal, **body: Any) -> httpx.Response:
        body = {"name": "scale", "role": "device", **body}
        return await client.post("/api/v1/api-keys", json=body, headers=principal.headers)

    b = str(world.enterprise_b)
    key = await create(world.b_admin, enterprise_id=b, facility_id=custody.centre_b)
    assert key.status_code == 201, key.text
    assert key.json()["facility_id"] == custody.centre_b

    # Another enterprise's facility reads as an unknown one; a device needs its facility.
    foreign = await create(world.b_admin, enterprise_id=b, facility_id=custody.point_a)
    assert "/facility_id" in at(assert_problem(foreign, 422))
    missing = await create(world.b_admin, enterprise_id=b)
    assert "/facility_id" in at(assert_problem(missing, 422))
    unknown = await create(world.b_admin, enterprise_id=b, facility_id=str(uuid.uuid4()))
    assert_problem(unknown, 422)
    # Only device keys name a facility; only B's admin (or a platform admin) manages B's keys.
    operator = await create(world.b_admin, enterprise_id=b, facility_id=custody.centre_b)
    assert operator.status_code == 201
    not_device = await client.post(
        "/api/v1/api-keys",
        json={
            "name": "erp",
            "role": "operator",
            "enterprise_id": b,
            "facility_id": custody.centre_b,
        },
        headers=world.b_admin.headers,
    )
    assert "/facility_id" in at(assert_problem(not_device, 422))
    assert_problem(await create(world.a_admin, enterprise_id=b, facility_id=custody.centre_b), 404)
    assert_problem(await create(world.a_viewer, enterprise_id=b, facility_id=custody.centre_b), 403)
    # People are not devices.
    user = await client.post(
        "/api/v1/users",
        json={
            "username": "scale.user",
            "display_name": "scale",
            "password": "correct horse battery",
            "role": "device",
            "enterprise_id": b,
        },
        headers=world.b_admin.headers,
    )
    assert "/role" in at(assert_problem(user, 422))


async def test_a_device_key_posts_tickets_for_its_facility_and_nothing_else(
    custody: Custody, scale: Principal, session: AsyncSession
) -> None:
    client, world = custody.client, custody.world
    lot = await custody.register(50)
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

    refused = [
        await client.get("/api/v1/me", headers=scale.headers),
        await client.get("/api/v1/lots", headers=scale.headers),
        await client.get(f"/api/v1/lots/{lot['id']}", headers=scale.headers),
        await client.get(f"/api/v1/facilities/{custody.centre_b}", headers=scale.headers),
        await client.get(TICKETS, params={"facility_id": custody.centre_b}, headers=scale.headers),
        await client.post(
            "/api/v1/shipments",
            json={
                "from_facility_id": custody.centre_b,
                "to_facility_id": custody.point_a,
                "lot_ids": [lot["id"]],
            },
            headers=scale.headers,
        ),
        await client.post(
            "/api/v1/api-keys",
            json={"name": "x", "role": "admin", "enterprise_id": str(world.enterprise_b)},
            headers=scale.headers,
        ),
        # Tickets for another facility: its own enterprise's smelter, or A's collection point.
        await post(custody, scale, ticket(facility_id=str(smelter.id))),
        await post(custody, scale, ticket(facility_id=custody.point_a)),
    ]
    for response in refused:
        assert_problem(response, 403, "forbidden")
    # People may not post tickets either: the scale does.
    assert_problem(await post(custody, world.b_admin, ticket()), 403)

    response = await post(custody, scale, ticket(facility_id=custody.centre_b))
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"{TICKETS}/{body['id']}"
    assert body["facility_id"] == custody.centre_b
    assert body["enterprise_id"] == str(world.enterprise_b)
    assert (body["gross_kg"], body["tare_kg"], body["net_kg"]) == (31840.5, 14220.0, 17620.5)
    assert body["shipment_id"] is None
    assert body["device_key_id"] is not None

    (recorded,) = await events(session, "weighbridge.ticket_recorded")
    assert recorded.subject_id == body["id"]
    assert recorded.payload["net_g"] == 17_620_500
    assert recorded.payload["ticket_no"] == "ZY-2026-000123"


async def test_a_revoked_device_key_is_refused(custody: Custody, scale: Principal) -> None:
    keys = await custody.client.get("/api/v1/api-keys", headers=custody.world.b_admin.headers)
    device = next(k for k in keys.json()["items"] if k["role"] == "device")
    revoked = await custody.client.delete(
        f"/api/v1/api-keys/{device['id']}", headers=custody.world.b_admin.headers
    )
    assert revoked.status_code == 200, revoked.text
    assert_problem(await post(custody, scale, ticket()), 401)


# --- ticket figures ---------------------------------------------------------------------------


async def test_net_must_be_gross_less_tare(custody: Custody, scale: Principal) -> None:
    wrong = await post(custody, scale, ticket(net=17620.0))
    body = assert_problem(wrong, 422, "weighbridge_net_mismatch")
    assert (body["net_kg"], body["gross_less_tare_kg"]) == (17620.0, 17620.5)
    assert "17620.5" in body["detail"] and "17620" in body["detail"]
    assert "/net_kg" in pointers(wrong)

    above = await post(custody, scale, ticket(gross=1000, tare=1200, net=200))
    assert "/gross_kg" in at(assert_problem(above, 422))
    equal = await post(custody, scale, ticket(gross=1000, tare=1000, net=0.001))
    assert "/gross_kg" in at(assert_problem(equal, 422))
    for bad in (
        ticket(tare=0),
        ticket(gross=-1),
        ticket(net=1.0001),
        ticket(number=""),
        ticket(weighed_at="2026-11-20T09:42:17"),  # no offset
    ):
        assert_problem(await post(custody, scale, bad), 422, "validation_failed")
    future = await post(custody, scale, ticket(weighed_at="2099-01-01T00:00:00+08:00"))
    assert "/weighed_at" in at(assert_problem(future, 422))
    listed = await custody.client.get(
        TICKETS, params={"facility_id": custody.centre_b}, headers=custody.world.b_admin.headers
    )
    assert listed.json()["items"] == []


async def test_a_repeated_ticket_number_is_409_an_event_and_an_anomaly(
    custody: Custody, scale: Principal, session: AsyncSession
) -> None:
    first = await posted(custody, scale)
    again = await post(custody, scale, ticket(gross=32840.5, net=18620.5))
    body = assert_problem(again, 409, "duplicate_weighbridge_ticket")
    assert body["ticket_id"] == first["id"]
    # The same figures again (a resend without Idempotency-Key) are a duplicate too.
    assert_problem(await post(custody, scale, ticket()), 409, "duplicate_weighbridge_ticket")

    # The refusals are kept although the requests failed.
    duplicates = (
        await session.scalars(
            select(WeighbridgeDuplicate).where(col(WeighbridgeDuplicate.ticket_id) == first["id"])
        )
    ).all()
    assert sorted(d.net_g for d in duplicates) == [17_620_500, 18_620_500]
    refused = await events(session, "weighbridge.ticket_refused")
    assert len(refused) == 2
    assert {r.payload["recorded_ticket_id"] for r in refused} == {first["id"]}
    assert [r.payload["same_figures"] for r in refused] == [False, True]
    assert await session.scalar(select(func.count()).select_from(WeighbridgeTicket)) == 1

    anomalies = await custody.client.get(
        "/api/v1/reports/anomalies", headers=custody.world.province_inspector.headers
    )
    assert anomalies.status_code == 200, anomalies.text
    found = [
        a for a in anomalies.json()["anomalies"] if a["kind"] == "duplicate_weighbridge_ticket"
    ]
    assert [(a["subject_type"], a["subject_id"]) for a in found] == [
        ("weighbridge_ticket", first["id"])
    ] * 2
    assert {a["severity"] for a in found} == {"high", "medium"}
    assert all(a["region_code"] == "520302" for a in found)
    assert "18620.5" in found[0]["detail"] + found[1]["detail"]
    # Guiyang governs neither the centre nor the scale: nothing for it.
    guiyang = await custody.client.get(
        "/api/v1/reports/anomalies", headers=custody.world.guiyang_supervisor.headers
    )
    assert not [a for a in guiyang.json()["anomalies"] if a["kind"].startswith("duplicate_weigh")]


async def test_the_same_number_at_another_facility_is_another_ticket(
    custody: Custody, scale: Principal
) -> None:
    await posted(custody, scale)
    other = await device_key(custody.client, custody.world.a_admin, custody.point_a)
    assert (await post(custody, other, ticket())).status_code == 201


async def test_an_idempotent_resend_replays_instead_of_refusing(
    custody: Custody, scale: Principal
) -> None:
    headers = {**scale.headers, "Idempotency-Key": "scale-7f3a"}
    first = await custody.client.post(TICKETS, json=ticket(), headers=headers)
    again = await custody.client.post(TICKETS, json=ticket(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


async def test_concurrent_posts_of_one_number_record_one_ticket(live: Live) -> None:
    """The unique constraint decides, not a read before the write: one wins, the rest are 409
    and recorded as refused."""
    world = live.world
    async with live.sessionmaker()() as session:
        centre = await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=world.enterprise_b,
            name="race centre",
            kind="pretreatment_center",
            region_code="520302",
            address="Zunyi",
        )
        await session.commit()
    scale = await device_key(live.client, world.b_admin, str(centre.id))
    number = f"RACE-{uuid.uuid4().hex[:8]}"
    responses = await asyncio.gather(
        *(
            live.client.post(TICKETS, json=ticket(number=number), headers=scale.headers)
            for _ in range(8)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    async with live.sessionmaker()() as session:
        tickets = await session.scalar(
            select(func.count())
            .select_from(WeighbridgeTicket)
            .where(col(WeighbridgeTicket.facility_id) == centre.id)
        )
        refused = await session.scalar(
            select(func.count())
            .select_from(WeighbridgeDuplicate)
            .where(col(WeighbridgeDuplicate.facility_id) == centre.id)
        )
    assert (tickets, refused) == (1, 7)


# --- reading tickets --------------------------------------------------------------------------


async def test_the_facility_enterprise_and_authorities_over_it_read_tickets(
    custody: Custody, scale: Principal
) -> None:
    client, world = custody.client, custody.world
    one = await posted(custody, scale, number="T-1")
    two = await posted(custody, scale, number="T-2")
    params = {"facility_id": custody.centre_b}
    for reader in (world.b_admin, world.province_inspector, world.zunyi_supervisor, world.admin):
        listed = await client.get(TICKETS, params=params, headers=reader.headers)
        assert listed.status_code == 200, listed.text
        assert [t["id"] for t in listed.json()["items"]] == [one["id"], two["id"]]
        single = await client.get(f"{TICKETS}/{one['id']}", headers=reader.headers)
        assert single.json()["ticket_no"] == "T-1"
    for stranger in (world.a_admin, world.guiyang_supervisor):
        assert_problem(await client.get(TICKETS, params=params, headers=stranger.headers), 404)
        assert_problem(await client.get(f"{TICKETS}/{one['id']}", headers=stranger.headers), 404)
    by_number = await client.get(
        TICKETS, params={**params, "ticket_no": "T-2"}, headers=world.b_admin.headers
    )
    assert [t["id"] for t in by_number.json()["items"]] == [two["id"]]
    paged = await client.get(TICKETS, params={**params, "limit": 1}, headers=world.b_admin.headers)
    assert paged.json()["next_cursor"] is not None
    assert_problem(await client.get(TICKETS, headers=world.b_admin.headers), 422)


# --- receipts weighed by a ticket -------------------------------------------------------------


async def test_a_single_lot_receipt_takes_the_ticket_net(
    custody: Custody, scale: Principal, session: AsyncSession
) -> None:
    shipment_id, (lot,) = await shipped(custody, 100)
    weighed = await posted(custody, scale, number="R-1", gross=15099.5, tare=15000, net=99.5)
    response = await custody.receive(
        shipment_id, [{"lot_id": lot["id"]}], weighbridge_ticket_no="R-1"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    (item,) = body["items"]
    assert (item["received_kg"], item["difference_kg"]) == (99.5, 0.5)
    assert body["weighbridge_ticket_no"] == "R-1"

    used = await custody.client.get(
        f"{TICKETS}/{weighed['id']}", headers=custody.world.b_admin.headers
    )
    assert used.json()["shipment_id"] == shipment_id
    assert used.json()["used_at"] is not None
    (received,) = [
        e for e in await events(session, "shipment.received") if e.subject_id == shipment_id
    ]
    assert received.payload["weighbridge_ticket_id"] == weighed["id"]
    unused = await custody.client.get(
        TICKETS,
        params={"facility_id": custody.centre_b, "unused": "true"},
        headers=custody.world.b_admin.headers,
    )
    assert unused.json()["items"] == []


async def test_a_single_lot_stated_mass_must_equal_the_ticket(
    custody: Custody, scale: Principal
) -> None:
    shipment_id, (lot,) = await shipped(custody, 100)
    await posted(custody, scale, number="R-2", gross=15099.5, tare=15000, net=99.5)
    wrong = await custody.receive(
        shipment_id, [{"lot_id": lot["id"], "received_kg": 99.4}], weighbridge_ticket_no="R-2"
    )
    body = assert_problem(wrong, 422, "weighbridge_mass_mismatch")
    assert (body["ticket_net_kg"], body["items_kg"]) == (99.5, 99.4)
    assert "/items/0/received_kg" in pointers(wrong)
    right = await custody.receive(
        shipment_id, [{"lot_id": lot["id"], "received_kg": 99.5}], weighbridge_ticket_no="R-2"
    )
    assert right.status_code == 201, right.text


async def test_several_lots_must_sum_to_the_ticket_net(custody: Custody, scale: Principal) -> None:
    shipment_id, (one, two) = await shipped(custody, 60, 40)
    await posted(custody, scale, number="R-3", gross=15099.25, tare=15000, net=99.25)

    short = await custody.receive(
        shipment_id,
        [{"lot_id": one["id"], "received_kg": 60}, {"lot_id": two["id"], "received_kg": 39}],
        weighbridge_ticket_no="R-3",
    )
    body = assert_problem(short, 422, "weighbridge_mass_mismatch")
    assert (body["ticket_net_kg"], body["items_kg"]) == (99.25, 99.0)
    assert "99 kg" in body["detail"] and "99.25 kg" in body["detail"]
    unstated = await custody.receive(
        shipment_id,
        [{"lot_id": one["id"], "received_kg": 60}, {"lot_id": two["id"]}],
        weighbridge_ticket_no="R-3",
    )
    assert "/items/1/received_kg" in at(assert_problem(unstated, 422))

    good = await custody.receive(
        shipment_id,
        [
            {"lot_id": one["id"], "received_kg": 59.75},
            {"lot_id": two["id"], "received_kg": 39.5, "refused_kg": 1, "refusal_reason": "wet"},
        ],
        weighbridge_ticket_no="R-3",
    )
    assert good.status_code == 201, good.text
    assert [i["received_kg"] for i in good.json()["items"]] == [59.75, 39.5]


async def test_a_ticket_weighs_one_receipt_only(custody: Custody, scale: Principal) -> None:
    first, (one,) = await shipped(custody, 100)
    second, (two,) = await shipped(custody, 100)
    await posted(custody, scale, number="R-4", gross=15100, tare=15000, net=100)
    used = await custody.receive(first, [{"lot_id": one["id"]}], weighbridge_ticket_no="R-4")
    assert used.status_code == 201, used.text
    again = await custody.receive(second, [{"lot_id": two["id"]}], weighbridge_ticket_no="R-4")
    body = assert_problem(again, 409, "weighbridge_ticket_used")
    assert body["shipment_id"] == first
    assert (await custody.client.get(
        f"/api/v1/shipments/{second}", headers=custody.world.b_admin.headers
    )).json()["status"] == "dispatched"  # fmt: skip


async def test_tickets_are_per_facility_and_free_text_numbers_still_work(
    custody: Custody, scale: Principal
) -> None:
    """A's collection point has a ticket R-5; B's centre has none of that number: the receipt
    at B keeps the number as written and needs its masses; without a number it always does."""
    other = await device_key(custody.client, custody.world.a_admin, custody.point_a)
    assert (await post(custody, other, ticket(number="R-5"))).status_code == 201
    shipment_id, (lot,) = await shipped(custody, 100)
    unweighed = await custody.receive(
        shipment_id, [{"lot_id": lot["id"]}], weighbridge_ticket_no="R-5"
    )
    assert "/items/0/received_kg" in at(assert_problem(unweighed, 422))
    plain = await custody.receive(shipment_id, [{"lot_id": lot["id"]}])
    assert "/items/0/received_kg" in at(assert_problem(plain, 422))
    written = await custody.receive(
        shipment_id, [{"lot_id": lot["id"], "received_kg": 100}], weighbridge_ticket_no="R-5"
    )
    assert written.status_code == 201, written.text
    assert written.json()["weighbridge_ticket_no"] == "R-5"


async def test_every_authenticated_route_refuses_a_device_key(
    app: FastAPI, custody: Custody, scale: Principal
) -> None:
    """Walks the application's routes: whatever needs a principal answers a device key 403,
    but the one that posts tickets. (Public routes need no principal at all.)"""
    checked = 0
    for route in api_routes(app.routes):
        if not needs_principal(route.dependant):
            continue
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
        for method in route.methods:
            if (method, route.path) == ("POST", TICKETS):
                continue
            response = await custody.client.request(method, url, json={}, headers=scale.headers)
            assert response.status_code == 403, (method, route.path, response.text)
            assert response.json()["code"] == "forbidden"
            checked += 1
    assert checked > 40
