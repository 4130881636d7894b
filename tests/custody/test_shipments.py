"""Shipments (DESIGN §2.3, issue 3 points 6-9): dispatch, receipt with weights and refusals,
discrepancies, cancel, lists; races decided by the database with real concurrent requests;
Idempotency-Key on dispatch and receipt; bad input is 422 with pointers and changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from api.app import create_app
from domain.actor import SYSTEM, Role
from domain.shipments.models import Shipment, ShipmentItem
from integrations.settings import Settings
from tests.conftest import Live, Principal, World, make_key
from tests.custody.conftest import Custody, lot_body
from tests.factories import random_uscc

Json = dict[str, Any]
SHIPMENTS = "/api/v1/shipments"


# --- helpers ----------------------------------------------------------------------------------


def problem(response: httpx.Response, status: int, code: str | None = None) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: Json = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


def pointers(body: Json) -> set[str]:
    return {error["pointer"] for error in body.get("errors") or []}


def created(response: httpx.Response) -> Json:
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def accept(lot: Json, received_kg: float | None = None, refused_kg: float = 0, **more: Any) -> Json:
    return {
        "lot_id": lot["id"],
        "received_kg": lot["net_kg"] if received_kg is None else received_kg,
        "refused_kg": refused_kg,
        **more,
    }


async def get_lot(custody: Custody, lot_id: str, who: Principal | None = None) -> Json:
    response = await custody.client.get(
        f"/api/v1/lots/{lot_id}", headers=(who or custody.world.a_admin).headers
    )
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def history(custody: Custody, lot_id: str, who: Principal | None = None) -> list[Json]:
    response = await custody.client.get(
        f"/api/v1/lots/{lot_id}/history", headers=(who or custody.world.a_admin).headers
    )
    assert response.status_code == 200, response.text
    events: list[Json] = response.json()
    return events


async def get_shipment(custody: Custody, shipment_id: str, who: Principal | None = None) -> Json:
    response = await custody.client.get(
        f"{SHIPMENTS}/{shipment_id}", headers=(who or custody.world.a_admin).headers
    )
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def listed(custody: Custody, who: Principal, **params: Any) -> list[Json]:
    response = await custody.client.get(
        SHIPMENTS, params={"limit": 500, **params}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


async def discrepancies(custody: Custody, who: Principal, **params: Any) -> list[Json]:
    response = await custody.client.get(
        "/api/v1/discrepancies", params={"limit": 500, **params}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


async def shipped(custody: Custody, *lots: Json) -> Json:
    return created(await custody.ship([lot["id"] for lot in lots]))


async def cancel(
    custody: Custody, shipment_id: str, who: Principal | None = None, reason: str = "truck broke"
) -> httpx.Response:
    return await custody.client.post(
        f"{SHIPMENTS}/{shipment_id}/cancel",
        json={"reason": reason},
        headers=(who or custody.world.a_operator).headers,
    )


async def suspend(custody: Custody, what: str, record_id: str | uuid.UUID) -> None:
    response = await custody.client.post(
        f"/api/v1/{what}/{record_id}/suspend",
        json={"reason": "permit expired during inspection"},
        headers=custody.world.province_supervisor.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "suspended"


def composition_sum(lot: Json) -> Decimal:
    return sum((Decimal(str(v)) for v in lot["composition"].values()), Decimal(0))


async def register_for_b(custody: Custody, net_kg: float = 50) -> Json:
    """A lot of B's, at B's own collection point."""
    return created(
        await custody.client.post(
            "/api/v1/lots",
            json=lot_body(str(custody.world.facility_b), net_kg),
            headers=custody.world.b_admin.headers,
        )
    )


@pytest.fixture
async def outsider(session: AsyncSession, world: World) -> Principal:
    """The admin of a third enterprise, party to nothing."""
    from domain.registry import service as registry

    enterprise = await registry.create_enterprise(
        session,
        SYSTEM,
        name="C recycling",
        uscc=random_uscc("520402"),
        roles=["recycler", "pretreater"],
        region_code="520402",
    )
    principal = await make_key(session, Role.admin, enterprise.id)
    await session.commit()
    return principal


@pytest.fixture
async def anshun_supervisor(custody: Custody) -> Principal:
    """A supervisor of Anshun (5204): no jurisdiction over A (Guiyang) or B (Zunyi)."""
    client, admin = custody.client, custody.world.admin
    authority = created(
        await client.post(
            "/api/v1/authorities",
            json={"name": "Anshun bureau", "jurisdiction": "5204"},
            headers=admin.headers,
        )
    )
    key = created(
        await client.post(
            "/api/v1/api-keys",
            json={
                "name": "anshun supervisor",
                "role": "supervisor",
                "authority_id": authority["id"],
            },
            headers=admin.headers,
        )
    )
    return Principal(key["secret"], Role.supervisor, authority_id=uuid.UUID(authority["id"]))


# --- 1. dispatch ------------------------------------------------------------------------------


async def test_dispatch_puts_the_lots_in_transit(custody: Custody) -> None:
    first, second = await custody.register(100.5), await custody.register("200.255")
    response = await custody.ship(
        [first["id"], second["id"]], carrier="贵阳顺达物流", vehicle_plate="贵A12345"
    )
    shipment = created(response)
    assert response.headers["Location"] == f"{SHIPMENTS}/{shipment['id']}"
    assert response.headers["ETag"] == '"1"'
    assert shipment["status"] == "dispatched"
    assert shipment["dispatched_kg"] == 300.755
    assert shipment["from_facility_id"] == custody.point_a
    assert shipment["to_facility_id"] == custody.centre_b
    assert shipment["sender_enterprise_id"] == str(custody.world.enterprise_a)
    assert shipment["receiver_enterprise_id"] == str(custody.world.enterprise_b)
    assert shipment["vehicle_energy"] == "lng"
    assert shipment["distance_km"] == 140
    assert shipment["carrier"] == "贵阳顺达物流"
    assert {i["lot_id"]: i["dispatched_kg"] for i in shipment["items"]} == {
        first["id"]: 100.5,
        second["id"]: 200.255,
    }
    assert all(i["received_kg"] is None for i in shipment["items"])

    for lot in (first, second):
        now = await get_lot(custody, lot["id"])
        assert now["status"] == "in_transit"
        assert now["holder_facility_id"] == custody.point_a
        assert now["version"] == lot["version"] + 1
        events = await history(custody, lot["id"])
        assert [e["type"] for e in events] == ["lot.registered", "shipment.dispatched"]
        assert events[-1]["subject_id"] == shipment["id"]
        assert events[-1]["payload"]["dispatched_g"] == 300755
    # the receiver sees it too
    assert (await get_shipment(custody, shipment["id"], custody.world.b_admin))["id"] == (
        shipment["id"]
    )


@pytest.mark.parametrize(
    ("case", "pointer", "code"),
    [
        ("same facility", "/to_facility_id", "invalid_input"),
        ("duplicate lot", "/lot_ids/1", "invalid_input"),
        ("unknown facility", "/to_facility_id", "unknown_facility"),
        ("no lots", "/lot_ids", "validation_failed"),
        ("bad vehicle energy", "/vehicle_energy", "validation_failed"),
        ("negative distance", "/distance_km", "validation_failed"),
    ],
)
async def test_bad_dispatch_is_422_with_a_pointer_and_changes_nothing(
    custody: Custody, case: str, pointer: str, code: str
) -> None:
    lot = await custody.register(100)
    body: Json = {
        "same facility": {"lot_ids": [lot["id"]], "to_facility_id": custody.point_a},
        "duplicate lot": {"lot_ids": [lot["id"], lot["id"]]},
        "unknown facility": {"lot_ids": [lot["id"]], "to_facility_id": str(uuid.uuid4())},
        "no lots": {"lot_ids": []},
        "bad vehicle energy": {"lot_ids": [lot["id"]], "vehicle_energy": "coal"},
        "negative distance": {"lot_ids": [lot["id"]], "distance_km": -1},
    }[case]
    lot_ids = body.pop("lot_ids")
    answer = problem(await custody.ship(lot_ids, **body), 422, code)
    assert pointer in pointers(answer), answer

    after = await get_lot(custody, lot["id"])
    assert (after["status"], after["version"]) == ("active", lot["version"])
    assert await listed(custody, custody.world.a_admin, direction="sent") == []
    assert [e["type"] for e in await history(custody, lot["id"])] == ["lot.registered"]


async def test_a_lot_not_held_by_the_caller_is_404(custody: Custody) -> None:
    mine, theirs = await custody.register(100), await register_for_b(custody)
    answer = problem(await custody.ship([mine["id"], theirs["id"]]), 404, "not_found")
    assert pointers(answer) == {"/lot_ids/1"}
    answer = problem(await custody.ship([str(uuid.uuid4())]), 404, "not_found")
    assert pointers(answer) == {"/lot_ids/0"}

    assert (await get_lot(custody, mine["id"]))["status"] == "active"
    theirs_now = await get_lot(custody, theirs["id"], custody.world.b_admin)
    assert (theirs_now["status"], theirs_now["version"]) == ("active", theirs["version"])
    assert await listed(custody, custody.world.a_admin, direction="sent") == []


async def test_a_lot_in_transit_is_409_lot_not_available(custody: Custody) -> None:
    lot, other = await custody.register(100), await custody.register(10)
    await shipped(custody, lot)
    answer = problem(await custody.ship([other["id"], lot["id"]]), 409, "lot_not_available")
    assert pointers(answer) == {"/lot_ids/1"}
    assert (await get_lot(custody, other["id"]))["status"] == "active"
    assert len(await listed(custody, custody.world.a_admin, direction="sent")) == 1


async def test_dispatch_from_a_facility_of_another_enterprise_is_404(custody: Custody) -> None:
    lot = await custody.register(100)
    problem(
        await custody.ship([lot["id"]], from_facility_id=str(custody.world.facility_b)),
        404,
        "not_found",
    )
    assert (await get_lot(custody, lot["id"]))["status"] == "active"


async def test_a_viewer_cannot_dispatch(custody: Custody) -> None:
    lot = await custody.register(100)
    response = await custody.client.post(
        SHIPMENTS,
        json={
            "from_facility_id": custody.point_a,
            "to_facility_id": custody.centre_b,
            "lot_ids": [lot["id"]],
        },
        headers=custody.world.a_viewer.headers,
    )
    problem(response, 403, "forbidden")
    assert (await get_lot(custody, lot["id"]))["status"] == "active"


async def test_a_suspended_sending_enterprise_cannot_dispatch(custody: Custody) -> None:
    lot = await custody.register(100)
    await suspend(custody, "enterprises", custody.world.enterprise_a)
    problem(await custody.ship([lot["id"]]), 403, "enterprise_suspended")
    assert (await get_lot(custody, lot["id"]))["status"] == "active"


async def test_a_suspended_sending_facility_cannot_dispatch(custody: Custody) -> None:
    lot = await custody.register(100)
    await suspend(custody, "facilities", custody.point_a)
    problem(await custody.ship([lot["id"]]), 403, "facility_suspended")
    assert (await get_lot(custody, lot["id"]))["status"] == "active"


async def test_a_suspended_receiving_facility_cannot_be_shipped_to(custody: Custody) -> None:
    lot = await custody.register(100)
    await suspend(custody, "facilities", custody.centre_b)
    problem(await custody.ship([lot["id"]]), 403, "facility_suspended")
    assert (await get_lot(custody, lot["id"]))["status"] == "active"


async def test_a_suspended_receiving_enterprise_cannot_be_shipped_to(custody: Custody) -> None:
    lot = await custody.register(100)
    await suspend(custody, "enterprises", custody.world.enterprise_b)
    problem(await custody.ship([lot["id"]]), 403, "enterprise_suspended")
    assert (await get_lot(custody, lot["id"]))["status"] == "active"


# --- 2. receipt -------------------------------------------------------------------------------


async def test_only_the_receiver_receives(custody: Custody, outsider: Principal) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    url = f"{SHIPMENTS}/{shipment['id']}/receipt"
    body = {"items": [accept(lot)]}
    problem(await custody.client.post(url, json=body, headers=custody.world.a_admin.headers), 403)
    problem(await custody.client.post(url, json=body, headers=outsider.headers), 404, "not_found")
    inspector = custody.world.province_inspector
    problem(await custody.client.post(url, json=body, headers=inspector.headers), 403)
    assert (await get_shipment(custody, shipment["id"]))["status"] == "dispatched"
    assert (await get_lot(custody, lot["id"]))["status"] == "in_transit"


def _bad_receipt(case: str, one: Json, two: Json, stranger: Json) -> Json:
    both = [accept(one), accept(two)]
    return {
        "missing": {"items": [accept(one)]},
        "extra": {"items": [*both, accept(stranger)]},
        "duplicated": {"items": [*both, accept(one)]},
        "refused more than received": {
            "items": [accept(one, 100, 100.001, refusal_reason="wet"), accept(two)]
        },
        "refusal without reason": {"items": [accept(one, 100, 10), accept(two)]},
        "blank refusal reason": {
            "items": [accept(one, 100, 10, refusal_reason="   "), accept(two)]
        },
        "nothing received": {"items": [accept(one, 0), accept(two)]},
        "negative received": {"items": [accept(one, -1), accept(two)]},
        "more than 3 decimals": {"items": [accept(one, 99.0001), accept(two)]},
        "before the dispatch": {"items": both, "received_at": "2020-01-01T08:00:00+08:00"},
        "in the future": {"items": both, "received_at": "2099-01-01T08:00:00+08:00"},
        "no items": {"items": []},
    }[case]


@pytest.mark.parametrize(
    ("case", "pointer"),
    [
        ("missing", "/items"),
        ("extra", "/items/2/lot_id"),
        ("duplicated", "/items/2/lot_id"),
        ("refused more than received", "/items/0/refused_kg"),
        ("refusal without reason", "/items/0/refusal_reason"),
        ("blank refusal reason", "/items/0/refusal_reason"),
        ("nothing received", "/items/0/received_kg"),
        ("negative received", "/items/0/received_kg"),
        ("more than 3 decimals", "/items/0/received_kg"),
        ("before the dispatch", "/received_at"),
        ("in the future", "/received_at"),
        ("no items", "/items"),
    ],
)
async def test_bad_receipt_is_422_with_a_pointer_and_changes_nothing(
    custody: Custody, case: str, pointer: str
) -> None:
    one, two, stranger = (
        await custody.register(100),
        await custody.register(50),
        await custody.register(7),
    )
    shipment = await shipped(custody, one, two)
    body = _bad_receipt(case, one, two, stranger)
    response = await custody.receive(shipment["id"], body.pop("items"), **body)
    answer = problem(response, 422)
    assert pointer in pointers(answer), answer

    after = await get_shipment(custody, shipment["id"])
    assert (after["status"], after["version"]) == ("dispatched", shipment["version"])
    assert all(i["received_kg"] is None for i in after["items"])
    for lot in (one, two):
        now = await get_lot(custody, lot["id"])
        assert (now["status"], now["net_kg"]) == ("in_transit", lot["net_kg"])
        assert now["holder_facility_id"] == custody.point_a
    assert (await get_lot(custody, stranger["id"]))["status"] == "active"
    assert await discrepancies(custody, custody.world.a_admin) == []


async def test_full_acceptance_at_the_exact_weight(custody: Custody) -> None:
    lot = await custody.register("812.345")
    shipment = await shipped(custody, lot)
    response = await custody.receive(
        shipment["id"],
        [accept(lot)],
        weighbridge_ticket_no="ZY-2026-000123",
    )
    body = created(response)
    assert body["status"] == "received"
    assert body["weighbridge_ticket_no"] == "ZY-2026-000123"
    assert body["received_at"] is not None
    (item,) = body["items"]
    assert (item["received_kg"], item["refused_kg"], item["difference_kg"]) == (812.345, 0, 0)
    assert item["refused_lot_id"] is None

    now = await get_lot(custody, lot["id"], custody.world.b_admin)
    assert now["status"] == "active"
    assert now["holder_facility_id"] == custody.centre_b
    assert now["holder_enterprise_id"] == str(custody.world.enterprise_b)
    assert now["net_kg"] == 812.345
    assert now["composition"] == {
        "post_consumer_kg": 812.345,
        "pre_consumer_kg": 0,
        "primary_kg": 0,
    }
    # the sender, a past holder, still sees it; the history tells the whole story
    assert (await get_lot(custody, lot["id"]))["holder_facility_id"] == custody.centre_b
    assert [e["type"] for e in await history(custody, lot["id"])] == [
        "lot.registered",
        "shipment.dispatched",
        "shipment.received",
    ]
    assert await discrepancies(custody, custody.world.a_admin) == []
    assert await discrepancies(custody, custody.world.b_admin) == []

    # custody has passed: A, a past holder, can no longer ship it; B can send it on
    answer = problem(await custody.ship([lot["id"]]), 404, "not_found")
    assert pointers(answer) == {"/lot_ids/0"}
    onward = await custody.client.post(
        SHIPMENTS,
        json={
            "from_facility_id": custody.centre_b,
            "to_facility_id": str(custody.world.facility_b),
            "lot_ids": [lot["id"]],
        },
        headers=custody.world.b_admin.headers,
    )
    assert created(onward)["dispatched_kg"] == 812.345


async def test_the_receiver_cannot_ship_a_lot_still_in_transit(custody: Custody) -> None:
    lot = await custody.register(100)
    await shipped(custody, lot)
    response = await custody.client.post(
        SHIPMENTS,
        json={
            "from_facility_id": custody.centre_b,
            "to_facility_id": str(custody.world.facility_b),
            "lot_ids": [lot["id"]],
        },
        headers=custody.world.b_admin.headers,
    )
    problem(response, 404, "not_found")
    assert (await get_lot(custody, lot["id"]))["status"] == "in_transit"


@pytest.mark.parametrize(
    ("received_kg", "difference_kg", "opens"),
    [
        (995, 5, False),  # 0.5 % lost: recorded, within tolerance
        (990, 10, False),  # exactly 1 %: still within
        (989.999, 10.001, True),  # just above 1 %
        (1011, -11, True),  # a gain above 1 % is a discrepancy too
    ],
)
async def test_weight_difference_and_tolerance(
    custody: Custody, received_kg: float, difference_kg: float, opens: bool
) -> None:
    lot = await custody.register(1000)
    shipment = await shipped(custody, lot)
    body = created(await custody.receive(shipment["id"], [accept(lot, received_kg)]))
    assert body["status"] == "received"
    (item,) = body["items"]
    assert item["difference_kg"] == difference_kg
    assert (await get_lot(custody, lot["id"]))["net_kg"] == received_kg

    found = await discrepancies(custody, custody.world.a_admin)
    if not opens:
        assert found == []
        return
    (discrepancy,) = found
    assert discrepancy["status"] == "open"
    assert discrepancy["shipment_id"] == shipment["id"]
    assert discrepancy["lot_id"] == lot["id"]
    assert discrepancy["metal"] == "aluminium"
    assert discrepancy["dispatched_kg"] == 1000
    assert discrepancy["received_kg"] == received_kg
    assert discrepancy["difference_kg"] == difference_kg
    assert discrepancy["tolerance_kg"] == 10
    assert [e["type"] for e in await history(custody, lot["id"])][-1] == "discrepancy.opened"


async def test_full_refusal_returns_the_lot_to_the_sender(custody: Custody) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    body = created(
        await custody.receive(
            shipment["id"], [accept(lot, 99.5, 99.5, refusal_reason="radioactive contamination")]
        )
    )
    assert body["status"] == "refused"
    (item,) = body["items"]
    assert (item["received_kg"], item["refused_kg"], item["difference_kg"]) == (99.5, 99.5, 0.5)
    assert item["refusal_reason"] == "radioactive contamination"
    assert item["refused_lot_id"] is None  # the whole lot went back, no child

    back = await get_lot(custody, lot["id"])
    assert back["status"] == "refused"
    assert back["holder_facility_id"] == custody.point_a
    assert back["holder_enterprise_id"] == str(custody.world.enterprise_a)
    assert back["net_kg"] == 99.5
    assert composition_sum(back) == Decimal("99.5")
    assert await discrepancies(custody, custody.world.a_admin) == []

    # A may ship the refused lot again, e.g. to another receiver
    again = created(await custody.ship([lot["id"]], to_facility_id=str(custody.world.facility_b)))
    assert again["dispatched_kg"] == 99.5
    assert (await get_lot(custody, lot["id"]))["status"] == "in_transit"


async def test_partial_refusal_splits_off_a_refused_child_at_the_sender(custody: Custody) -> None:
    lot = await custody.register("1000.001", consumer_class="pre_consumer")
    shipment = await shipped(custody, lot)
    body = created(
        await custody.receive(
            shipment["id"],
            [accept(lot, 999.999, 333.333, refusal_reason="oil-coated, needs decoating")],
        )
    )
    assert body["status"] == "partially_refused"
    (item,) = body["items"]
    assert item["difference_kg"] == 0.002
    child_id = item["refused_lot_id"]
    assert child_id is not None

    accepted = await get_lot(custody, lot["id"], custody.world.b_admin)
    assert (accepted["status"], accepted["net_kg"]) == ("active", 666.666)
    assert accepted["holder_facility_id"] == custody.centre_b
    assert accepted["composition"]["pre_consumer_kg"] == 666.666
    assert composition_sum(accepted) == Decimal("666.666")

    child = await get_lot(custody, child_id)
    assert (child["status"], child["net_kg"]) == ("refused", 333.333)
    assert child["holder_facility_id"] == custody.point_a
    assert child["holder_enterprise_id"] == str(custody.world.enterprise_a)
    assert child["parent_lot_id"] == lot["id"]
    assert child["metal"] == lot["metal"] and child["category"] == lot["category"]
    assert child["code"] != lot["code"]
    assert composition_sum(child) == Decimal("333.333")
    assert child["composition"]["pre_consumer_kg"] == 333.333
    assert [e["type"] for e in await history(custody, child_id)] == ["shipment.received"]
    # the refused child goes on its own way
    created(await custody.ship([child_id], to_facility_id=str(custody.world.facility_b)))


async def test_a_multi_lot_receipt_with_mixed_outcomes(custody: Custody) -> None:
    kept, partly, refused, short = (
        await custody.register(100),
        await custody.register(200),
        await custody.register(300),
        await custody.register(400),
    )
    shipment = await shipped(custody, kept, partly, refused, short)
    assert shipment["dispatched_kg"] == 1000
    body = created(
        await custody.receive(
            shipment["id"],
            [
                accept(short, 380),  # 5 % lost: a discrepancy
                accept(refused, 300, 300, refusal_reason="not aluminium"),
                accept(kept),
                accept(partly, 199.5, 50, refusal_reason="wet"),
            ],
        )
    )
    assert body["status"] == "partially_refused"
    items = {i["lot_id"]: i for i in body["items"]}
    assert items[kept["id"]]["difference_kg"] == 0
    assert items[partly["id"]]["difference_kg"] == 0.5
    assert items[short["id"]]["difference_kg"] == 20

    at_b = {
        lot["id"]: await get_lot(custody, lot["id"], custody.world.b_admin)
        for lot in (kept, partly, short)
    }
    assert {k: (v["status"], v["net_kg"]) for k, v in at_b.items()} == {
        kept["id"]: ("active", 100),
        partly["id"]: ("active", 149.5),
        short["id"]: ("active", 380),
    }
    assert all(v["holder_facility_id"] == custody.centre_b for v in at_b.values())
    back = await get_lot(custody, refused["id"])
    assert (back["status"], back["net_kg"], back["holder_facility_id"]) == (
        "refused",
        300,
        custody.point_a,
    )
    child = await get_lot(custody, items[partly["id"]]["refused_lot_id"])
    assert (child["status"], child["net_kg"], child["parent_lot_id"]) == (
        "refused",
        50,
        partly["id"],
    )
    (discrepancy,) = await discrepancies(custody, custody.world.b_admin)
    assert discrepancy["lot_id"] == short["id"]


async def test_a_received_shipment_cannot_be_received_again(custody: Custody) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    created(await custody.receive(shipment["id"], [accept(lot)]))
    problem(
        await custody.receive(shipment["id"], [accept(lot, 90)]), 409, "shipment_not_in_transit"
    )
    assert (await get_lot(custody, lot["id"]))["net_kg"] == 100


async def test_a_cancelled_shipment_cannot_be_received(custody: Custody) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    assert (await cancel(custody, shipment["id"])).status_code == 200
    problem(await custody.receive(shipment["id"], [accept(lot)]), 409, "shipment_not_in_transit")
    now = await get_lot(custody, lot["id"])
    assert (now["status"], now["holder_facility_id"]) == ("active", custody.point_a)


async def test_a_suspended_receiving_enterprise_cannot_receive(custody: Custody) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    await suspend(custody, "enterprises", custody.world.enterprise_b)
    problem(await custody.receive(shipment["id"], [accept(lot)]), 403, "enterprise_suspended")
    assert (await get_shipment(custody, shipment["id"]))["status"] == "dispatched"
    assert (await get_lot(custody, lot["id"]))["status"] == "in_transit"


async def test_a_suspended_receiving_facility_cannot_receive(custody: Custody) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    await suspend(custody, "facilities", custody.centre_b)
    problem(await custody.receive(shipment["id"], [accept(lot)]), 403, "facility_suspended")
    assert (await get_lot(custody, lot["id"]))["status"] == "in_transit"


# --- 3. tolerance per metal -------------------------------------------------------------------


async def test_the_tolerance_is_configurable_per_metal(
    custody: Custody,
    settings: Settings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tolerant = create_app(
        settings.model_copy(
            update={
                "discrepancy_tolerance": {
                    "aluminium": Decimal("0.05"),
                    "copper": Decimal("0.01"),
                }
            }
        ),
        database_url,
        sessionmaker=sessionmaker,
    )
    try:
        transport = httpx.ASGITransport(app=tolerant)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            here = Custody(custody.world, client, custody.point_a, custody.centre_b)
            categories = await client.get(
                "/api/v1/reference/scrap-categories",
                params={"metal": "copper"},
                headers=custody.world.a_viewer.headers,
            )
            assert categories.status_code == 200, categories.text
            copper_category = categories.json()[0]["code"]
            aluminium = await here.register(100)
            copper = await here.register(100, metal="copper", category=copper_category)
            shipment = await shipped(here, aluminium, copper)
            body = created(
                await here.receive(shipment["id"], [accept(aluminium, 97), accept(copper, 97)])
            )
            assert {i["metal"]: i["difference_kg"] for i in body["items"]} == {
                "aluminium": 3,
                "copper": 3,
            }
            (discrepancy,) = await discrepancies(here, custody.world.a_admin)
            assert discrepancy["metal"] == "copper"
            assert discrepancy["lot_id"] == copper["id"]
            assert discrepancy["tolerance_kg"] == 1
    finally:
        await tolerant.state.engine.dispose()


# --- 4. discrepancies -------------------------------------------------------------------------


async def _discrepancy(custody: Custody) -> tuple[Json, Json]:
    lot = await custody.register(1000)
    shipment = await shipped(custody, lot)
    created(await custody.receive(shipment["id"], [accept(lot, 970)]))
    (found,) = await discrepancies(custody, custody.world.a_admin)
    return lot, found


async def test_a_discrepancy_acknowledged_by_the_sender_then_resolved(
    custody: Custody, anshun_supervisor: Principal
) -> None:
    world, client = custody.world, custody.client
    lot, found = await _discrepancy(custody)
    url = f"/api/v1/discrepancies/{found['id']}"
    assert found["status"] == "open"
    assert found["difference_kg"] == 30
    # both parties and supervisors with jurisdiction list it; Anshun does not see it
    assert [d["id"] for d in await discrepancies(custody, world.b_admin)] == [found["id"]]
    assert [d["id"] for d in await discrepancies(custody, world.a_admin, status="open")] == [
        found["id"]
    ]
    assert await discrepancies(custody, world.a_admin, status="resolved") == []
    for supervisor in (world.guiyang_supervisor, world.zunyi_supervisor):
        assert found["id"] in {d["id"] for d in await discrepancies(custody, supervisor)}
    assert found["id"] not in {d["id"] for d in await discrepancies(custody, anshun_supervisor)}
    problem(await client.get(url, headers=anshun_supervisor.headers), 404)
    assert (await client.get(url, headers=world.b_admin.headers)).status_code == 200

    note = {"note": "scale at our gate under-reads; agreed"}
    # the receiver cannot answer for the sender; a viewer cannot answer at all
    problem(await client.post(f"{url}/acknowledge", json=note, headers=world.b_admin.headers), 403)
    problem(await client.post(f"{url}/acknowledge", json=note, headers=world.a_viewer.headers), 403)
    problem(
        await client.post(f"{url}/acknowledge", json={"note": ""}, headers=world.a_admin.headers),
        422,
    )
    answered = await client.post(f"{url}/acknowledge", json=note, headers=world.a_admin.headers)
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "acknowledged"
    assert answered.json()["sender_note"] == note["note"]
    assert answered.json()["answered_at"] is not None
    for step in ("acknowledge", "dispute"):
        problem(
            await client.post(f"{url}/{step}", json=note, headers=world.a_admin.headers),
            409,
            "discrepancy_closed",
        )

    resolution = {"note": "checked both tickets: loss in transit accepted"}
    problem(
        await client.post(
            f"{url}/resolve", json=resolution, headers=world.province_inspector.headers
        ),
        403,
    )
    problem(
        await client.post(f"{url}/resolve", json=resolution, headers=anshun_supervisor.headers),
        404,
    )
    problem(
        await client.post(f"{url}/resolve", json=resolution, headers=world.a_admin.headers), 403
    )
    resolved = await client.post(
        f"{url}/resolve", json=resolution, headers=world.zunyi_supervisor.headers
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolution"] == resolution["note"]
    assert resolved.json()["resolved_at"] is not None
    problem(
        await client.post(
            f"{url}/resolve", json=resolution, headers=world.guiyang_supervisor.headers
        ),
        409,
        "discrepancy_closed",
    )
    assert [d["id"] for d in await discrepancies(custody, world.a_admin, status="resolved")] == [
        found["id"]
    ]

    events = await history(custody, lot["id"])
    assert [e["type"] for e in events][-3:] == [
        "discrepancy.opened",
        "discrepancy.acknowledged",
        "discrepancy.resolved",
    ]
    assert events[-2]["payload"]["note"] == note["note"]
    assert events[-2]["subject_id"] == found["id"]
    assert events[-1]["payload"]["note"] == resolution["note"]
    assert events[-1]["actor_authority_id"] is not None


@pytest.mark.parametrize("resolver", ["guiyang_supervisor", "province_supervisor"])
async def test_a_disputed_discrepancy_resolved_by_a_supervisor_with_jurisdiction(
    custody: Custody, resolver: str
) -> None:
    world, client = custody.world, custody.client
    lot, found = await _discrepancy(custody)
    url = f"/api/v1/discrepancies/{found['id']}"
    note = {"note": "our ticket says 1000 kg loaded"}
    disputed = await client.post(f"{url}/dispute", json=note, headers=world.a_operator.headers)
    assert disputed.status_code == 200, disputed.text
    assert disputed.json()["status"] == "disputed"
    problem(
        await client.post(f"{url}/acknowledge", json=note, headers=world.a_admin.headers),
        409,
        "discrepancy_closed",
    )
    supervisor: Principal = getattr(world, resolver)
    resolution = {"note": "re-weighed: 985 kg; difference split"}
    resolved = await client.post(f"{url}/resolve", json=resolution, headers=supervisor.headers)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    problem(
        await client.post(f"{url}/resolve", json=resolution, headers=supervisor.headers),
        409,
        "discrepancy_closed",
    )
    events = await history(custody, lot["id"])
    assert [(e["type"], e["payload"].get("note")) for e in events][-2:] == [
        ("discrepancy.disputed", note["note"]),
        ("discrepancy.resolved", resolution["note"]),
    ]


# --- 5. cancel --------------------------------------------------------------------------------


async def test_the_sender_cancels_before_receipt(custody: Custody) -> None:
    one, two = await custody.register(100), await custody.register(25)
    shipment = await shipped(custody, one, two)
    problem(await cancel(custody, shipment["id"], custody.world.b_admin), 403)
    problem(await cancel(custody, shipment["id"], custody.world.a_viewer), 403)
    problem(await cancel(custody, shipment["id"], reason=""), 422)
    assert (await get_shipment(custody, shipment["id"]))["status"] == "dispatched"

    response = await cancel(custody, shipment["id"], reason="customer called the order off")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["cancel_reason"] == "customer called the order off"
    assert body["cancelled_at"] is not None
    for lot in (one, two):
        now = await get_lot(custody, lot["id"])
        assert (now["status"], now["holder_facility_id"], now["net_kg"]) == (
            "active",
            custody.point_a,
            lot["net_kg"],
        )
        events = await history(custody, lot["id"])
        assert events[-1]["type"] == "shipment.cancelled"
        assert events[-1]["payload"]["reason"] == "customer called the order off"

    problem(await cancel(custody, shipment["id"]), 409, "shipment_not_in_transit")
    problem(await custody.receive(shipment["id"], [accept(one), accept(two)]), 409)
    # the lots can go out again
    created(await custody.ship([one["id"], two["id"]]))


async def test_a_retried_cancel_replays(custody: Custody) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    url = f"{SHIPMENTS}/{shipment['id']}/cancel"
    headers = {**custody.world.a_operator.headers, "Idempotency-Key": "cancel-1"}
    body = {"reason": "wrong destination"}
    first = await custody.client.post(url, json=body, headers=headers)
    assert first.status_code == 200, first.text
    retry = await custody.client.post(url, json=body, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    types = [e["type"] for e in await history(custody, lot["id"])]
    assert types.count("shipment.cancelled") == 1
    problem(await cancel(custody, shipment["id"]), 409, "shipment_not_in_transit")


async def test_a_received_shipment_cannot_be_cancelled(custody: Custody) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    created(await custody.receive(shipment["id"], [accept(lot)]))
    problem(await cancel(custody, shipment["id"]), 409, "shipment_not_in_transit")
    assert (await get_lot(custody, lot["id"]))["holder_facility_id"] == custody.centre_b


async def test_cancelling_a_reshipped_refused_lot_returns_it_refused(custody: Custody) -> None:
    lot, fresh = await custody.register(100), await custody.register(10)
    first = await shipped(custody, lot)
    created(await custody.receive(first["id"], [accept(lot, 100, 100, refusal_reason="wet")]))
    second = created(
        await custody.ship([lot["id"], fresh["id"]], to_facility_id=str(custody.world.facility_b))
    )
    assert (await cancel(custody, second["id"])).status_code == 200
    assert (await get_lot(custody, lot["id"]))["status"] == "refused"
    assert (await get_lot(custody, fresh["id"]))["status"] == "active"


# --- 6. lists ---------------------------------------------------------------------------------


async def test_lists_for_sender_receiver_and_authorities(
    custody: Custody, anshun_supervisor: Principal
) -> None:
    world = custody.world
    lots = [await custody.register(10 + i) for i in range(4)]
    received = await shipped(custody, lots[0])
    created(await custody.receive(received["id"], [accept(lots[0])]))
    in_transit = await shipped(custody, lots[1])
    cancelled = await shipped(custody, lots[2])
    assert (await cancel(custody, cancelled["id"])).status_code == 200
    to_point_b = created(await custody.ship([lots[3]["id"]], to_facility_id=str(world.facility_b)))
    # B moves one of its own lots inside Zunyi: nothing to do with Guiyang
    theirs = await register_for_b(custody)
    inside_zunyi = created(
        await custody.client.post(
            SHIPMENTS,
            json={
                "from_facility_id": str(world.facility_b),
                "to_facility_id": custody.centre_b,
                "lot_ids": [theirs["id"]],
            },
            headers=world.b_admin.headers,
        )
    )
    ours = {received["id"], in_transit["id"], cancelled["id"], to_point_b["id"]}

    def ids(items: list[Json]) -> set[str]:
        return {item["id"] for item in items}

    sent = await listed(custody, world.a_admin, direction="sent")
    assert ids(sent) == ours
    assert all(item["items"] is None for item in sent)
    assert await listed(custody, world.a_admin, direction="received") == []
    assert ids(await listed(custody, world.a_admin)) == ours
    # B's move inside Zunyi is both sent and received by B
    assert ids(await listed(custody, world.b_admin, direction="received")) == ours | {
        inside_zunyi["id"]
    }
    assert ids(await listed(custody, world.b_admin, direction="sent")) == {inside_zunyi["id"]}
    assert ids(await listed(custody, world.b_admin)) == ours | {inside_zunyi["id"]}

    by_status = {
        status: ids(await listed(custody, world.a_admin, direction="sent", status=status))
        for status in ("dispatched", "received", "cancelled", "refused")
    }
    assert by_status == {
        "dispatched": {in_transit["id"], to_point_b["id"]},
        "received": {received["id"]},
        "cancelled": {cancelled["id"]},
        "refused": set(),
    }
    assert ids(await listed(custody, world.b_admin, facility_id=str(world.facility_b))) == {
        to_point_b["id"],
        inside_zunyi["id"],
    }
    assert ids(await listed(custody, world.a_admin, facility_id=custody.centre_b)) == ours - {
        to_point_b["id"]
    }
    problem(
        await custody.client.get(
            SHIPMENTS, params={"status": "lost"}, headers=world.a_admin.headers
        ),
        422,
    )
    for window in (
        {"dispatched_from": "2099-01-01T00:00:00+08:00"},
        {"dispatched_to": "2000-01-01T00:00:00Z"},
    ):
        assert await listed(custody, world.a_admin, direction="sent", **window) == []
    window = {"dispatched_from": "2000-01-01T00:00:00Z", "dispatched_to": "2099-01-01T00:00:00Z"}
    assert ids(await listed(custody, world.a_admin, direction="sent", **window)) == ours
    problem(
        await custody.client.get(
            SHIPMENTS, params={"direction": "sideways"}, headers=world.a_admin.headers
        ),
        422,
    )

    # Authorities: everything touching their jurisdiction (narrowed to this test's facilities,
    # since committed data of other tests lives in the same regions).
    everything = ours | {inside_zunyi["id"]}
    mine = {"facility_id": custody.centre_b}
    for authority in (world.province_inspector, world.zunyi_supervisor):
        seen = ids(await listed(custody, authority, **mine)) | ids(
            await listed(custody, authority, facility_id=str(world.facility_b))
        )
        assert seen == everything
    guiyang = ids(await listed(custody, world.guiyang_supervisor, **mine)) | ids(
        await listed(custody, world.guiyang_supervisor, facility_id=str(world.facility_b))
    )
    assert guiyang == ours
    problem(
        await custody.client.get(
            f"{SHIPMENTS}/{inside_zunyi['id']}", headers=world.guiyang_supervisor.headers
        ),
        404,
    )
    assert (await get_shipment(custody, in_transit["id"], world.guiyang_supervisor))["id"] == (
        in_transit["id"]
    )
    assert await listed(custody, anshun_supervisor, **mine) == []
    for shipment_id in everything:
        problem(
            await custody.client.get(
                f"{SHIPMENTS}/{shipment_id}", headers=anshun_supervisor.headers
            ),
            404,
        )


async def test_a_third_party_sees_no_shipment(custody: Custody, outsider: Principal) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    assert await listed(custody, outsider) == []
    problem(
        await custody.client.get(f"{SHIPMENTS}/{shipment['id']}", headers=outsider.headers), 404
    )
    problem(await cancel(custody, shipment["id"], outsider), 404)


async def test_lists_page_with_a_cursor(custody: Custody) -> None:
    lots = [await custody.register(1 + i) for i in range(5)]
    expected = {(await shipped(custody, lot))["id"] for lot in lots}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: Json = {"direction": "sent", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await custody.client.get(
            SHIPMENTS, params=params, headers=custody.world.a_admin.headers
        )
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(expected) and set(seen) == expected


# --- 7. races with real concurrent requests ---------------------------------------------------


async def live_custody(live: Live) -> Custody:
    world = live.world
    centre = await live.client.post(
        "/api/v1/facilities",
        json={
            "enterprise_id": str(world.enterprise_b),
            "name": "遵义预处理中心",
            "kind": "pretreatment_center",
            "region_code": "520302",
            "address": "遵义",
        },
        headers=world.b_admin.headers,
    )
    assert centre.status_code == 201, centre.text
    return Custody(world, live.client, str(world.facility_a), centre.json()["id"])


async def shipments_of_lot(live: Live, lot_id: str) -> int:
    async with live.sessionmaker()() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ShipmentItem)
            .join(Shipment, col(Shipment.id) == col(ShipmentItem.shipment_id))
            .where(col(ShipmentItem.lot_id) == uuid.UUID(lot_id))
            .where(col(Shipment.status) != "cancelled")
        )
    return int(count or 0)


async def test_race_two_shipments_for_one_lot(live: Live) -> None:
    custody = await live_custody(live)
    other = str(live.world.facility_b)
    for _ in range(10):
        lot = await custody.register(100)
        one, two = await asyncio.gather(
            custody.ship([lot["id"]]), custody.ship([lot["id"]], to_facility_id=other)
        )
        assert sorted([one.status_code, two.status_code]) == [201, 409], (one.text, two.text)
        loser = one if one.status_code == 409 else two
        assert loser.json()["code"] == "lot_not_available"
        assert (await get_lot(custody, lot["id"]))["status"] == "in_transit"
        assert await shipments_of_lot(live, lot["id"]) == 1
    assert len(await listed(custody, live.world.a_admin, direction="sent")) == 10


async def test_race_overlapping_multi_lot_shipments_do_not_deadlock(live: Live) -> None:
    custody = await live_custody(live)
    for _ in range(5):
        x, y = await custody.register(10), await custody.register(20)
        one, two = await asyncio.gather(
            custody.ship([x["id"], y["id"]]), custody.ship([y["id"], x["id"]])
        )
        assert sorted([one.status_code, two.status_code]) == [201, 409], (one.text, two.text)
        loser = one if one.status_code == 409 else two
        assert loser.json()["code"] == "lot_not_available"
        assert await shipments_of_lot(live, x["id"]) == 1
        assert await shipments_of_lot(live, y["id"]) == 1


async def test_race_two_receipts_for_one_shipment(live: Live) -> None:
    custody = await live_custody(live)
    for _ in range(5):
        lot = await custody.register(100)
        shipment = await shipped(custody, lot)
        one, two = await asyncio.gather(
            custody.receive(shipment["id"], [accept(lot, 99)]),
            custody.receive(shipment["id"], [accept(lot, 98, 10, refusal_reason="wet")]),
        )
        assert sorted([one.status_code, two.status_code]) == [201, 409], (one.text, two.text)
        winner, loser = (one, two) if one.status_code == 201 else (two, one)
        assert loser.json()["code"] == "shipment_not_in_transit"
        now = await get_lot(custody, lot["id"], live.world.b_admin)
        assert now["status"] == "active" and now["holder_facility_id"] == custody.centre_b
        assert now["net_kg"] == (99 if winner is one else 88)
        events = [e["type"] for e in await history(custody, lot["id"])]
        assert events.count("shipment.received") == 1


async def test_race_a_receipt_against_a_cancel(live: Live) -> None:
    custody = await live_custody(live)
    for _ in range(8):
        lot = await custody.register(100)
        shipment = await shipped(custody, lot)
        receipt, cancelled = await asyncio.gather(
            custody.receive(shipment["id"], [accept(lot)]),
            cancel(custody, shipment["id"]),
        )
        wins = [receipt.status_code == 201, cancelled.status_code == 200]
        assert wins.count(True) == 1, (receipt.text, cancelled.text)
        loser = cancelled if wins[0] else receipt
        assert loser.status_code == 409 and loser.json()["code"] == "shipment_not_in_transit"
        final = await get_shipment(custody, shipment["id"])
        now = await get_lot(custody, lot["id"])
        assert now["status"] == "active"
        if wins[0]:
            assert final["status"] == "received"
            assert now["holder_facility_id"] == custody.centre_b
        else:
            assert final["status"] == "cancelled"
            assert now["holder_facility_id"] == custody.point_a
        types = [e["type"] for e in await history(custody, lot["id"])]
        assert types.count("shipment.received") + types.count("shipment.cancelled") == 1


async def test_concurrent_retries_with_one_idempotency_key_dispatch_once(live: Live) -> None:
    custody = await live_custody(live)
    lot = await custody.register(100)
    body = {
        "from_facility_id": custody.point_a,
        "to_facility_id": custody.centre_b,
        "lot_ids": [lot["id"]],
        "vehicle_energy": "electric",
    }
    headers = {**live.world.a_operator.headers, "Idempotency-Key": str(uuid.uuid4())}
    responses = await asyncio.gather(
        *(live.client.post(SHIPMENTS, json=body, headers=headers) for _ in range(20))
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, [
        r.text for r in responses if r.status_code not in (201, 409)
    ]
    ok = [r for r in responses if r.status_code == 201]
    assert ok, statuses
    assert len({r.json()["id"] for r in ok}) == 1
    assert sum(1 for r in ok if r.headers.get("Idempotent-Replayed") != "true") == 1
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.json()["code"] == "idempotency_in_flight", conflict.text
    assert len(await listed(custody, live.world.a_admin, direction="sent")) == 1
    assert await shipments_of_lot(live, lot["id"]) == 1

    # a later retry replays the same answer
    replay = await live.client.post(SHIPMENTS, json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == ok[0].json()["id"]
    assert replay.headers["Location"] == f"{SHIPMENTS}/{ok[0].json()['id']}"
    # the same key with another body is refused
    other = await custody.register(5)
    problem(
        await live.client.post(SHIPMENTS, json={**body, "lot_ids": [other["id"]]}, headers=headers),
        422,
        "idempotency_key_reused",
    )
    assert (await get_lot(custody, other["id"]))["status"] == "active"


async def test_a_retried_receipt_replays_and_applies_once(live: Live) -> None:
    custody = await live_custody(live)
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    url = f"{SHIPMENTS}/{shipment['id']}/receipt"
    body = {"items": [accept(lot, 98, 18, refusal_reason="wet")]}
    headers = {**live.world.b_admin.headers, "Idempotency-Key": "receipt-" + shipment["id"]}
    first = created(await live.client.post(url, json=body, headers=headers))
    assert first["status"] == "partially_refused"
    retry = await live.client.post(url, json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first

    now = await get_lot(custody, lot["id"], live.world.b_admin)
    assert now["net_kg"] == 80
    types = [e["type"] for e in await history(custody, lot["id"])]
    assert types.count("shipment.received") == 1
    async with live.sessionmaker()() as session:
        children = await session.scalar(
            select(func.count())
            .select_from(ShipmentItem)
            .where(col(ShipmentItem.shipment_id) == uuid.UUID(shipment["id"]))
            .where(col(ShipmentItem.refused_lot_id).is_not(None))
        )
    assert children == 1
    # without the key, a second receipt is refused
    problem(await custody.receive(shipment["id"], body["items"]), 409, "shipment_not_in_transit")


async def test_concurrent_receipts_with_one_idempotency_key_apply_once(live: Live) -> None:
    custody = await live_custody(live)
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    url = f"{SHIPMENTS}/{shipment['id']}/receipt"
    body = {"items": [accept(lot, 99)]}
    headers = {**live.world.b_admin.headers, "Idempotency-Key": str(uuid.uuid4())}
    responses = await asyncio.gather(
        *(live.client.post(url, json=body, headers=headers) for _ in range(10))
    )
    assert {r.status_code for r in responses} <= {201, 409}
    ok = [r for r in responses if r.status_code == 201]
    assert sum(1 for r in ok if r.headers.get("Idempotent-Replayed") != "true") == 1
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.json()["code"] == "idempotency_in_flight", conflict.text
    assert (await get_lot(custody, lot["id"]))["net_kg"] == 99
    types = [e["type"] for e in await history(custody, lot["id"])]
    assert types.count("shipment.received") == 1


async def test_the_refused_child_keeps_its_seller_on_record(custody: Custody) -> None:
    lot = await custody.register(100)
    shipment = await shipped(custody, lot)
    body = created(
        await custody.receive(shipment["id"], [accept(lot, 100, 40, refusal_reason="wet")])
    )
    child_id = body["items"][0]["refused_lot_id"]
    child = await get_lot(custody, child_id)
    assert child["seller"] == lot["seller"]
    for lot_id in (lot["id"], child_id):
        view = await custody.client.post(
            f"/api/v1/lots/{lot_id}/seller-view",
            json={"reason": "theft investigation 2026-117"},
            headers=custody.world.province_supervisor.headers,
        )
        assert view.status_code == 200, view.text
        assert view.json()["name"] == "王小明"
        assert view.json()["id_number"] == "52010219900101123X"


async def test_race_acknowledge_against_dispute(live: Live) -> None:
    custody = await live_custody(live)
    lot = await custody.register(1000)
    shipment = await shipped(custody, lot)
    created(await custody.receive(shipment["id"], [accept(lot, 950)]))
    (found,) = await discrepancies(custody, live.world.a_admin)
    url = f"/api/v1/discrepancies/{found['id']}"
    headers = live.world.a_operator.headers
    ack, dispute = await asyncio.gather(
        live.client.post(f"{url}/acknowledge", json={"note": "fine by us"}, headers=headers),
        live.client.post(f"{url}/dispute", json={"note": "we loaded 1000"}, headers=headers),
    )
    assert sorted([ack.status_code, dispute.status_code]) == [200, 409], (ack.text, dispute.text)
    loser = ack if ack.status_code == 409 else dispute
    assert loser.json()["code"] == "discrepancy_closed"
    final = (await live.client.get(url, headers=headers)).json()
    assert final["status"] == ("acknowledged" if ack.status_code == 200 else "disputed")
    types = [e["type"] for e in await history(custody, lot["id"])]
    assert types.count("discrepancy.acknowledged") + types.count("discrepancy.disputed") == 1
