"""Lots over HTTP (issue 3, points 1-5, 8, 9): registration and who may do it, bad input that
changes nothing, the seller's personal data, batches, splits, reading and visibility, retries."""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.lots.rules import resident_id_check_digit
from tests.conftest import Principal
from tests.custody.conftest import Custody, lot_body
from tests.factories import random_uscc

Json = dict[str, Any]
LOTS = "/api/v1/lots"
PROBLEM_JSON = "application/problem+json"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CHECK = _CROCKFORD + "*~$=U"
CODE_SHAPE = re.compile(
    r"^(?P<metal>[AC])(?P<year>\d{2})-(?P<body>[0-9A-HJKMNP-TV-Z]{6,})(?P<check>.)$"
)


# --- helpers ----------------------------------------------------------------------------------


async def counts(session: AsyncSession) -> tuple[int, int]:
    """Rows in `lot` and `event`, as seen inside the test's transaction."""
    row = (
        await session.execute(
            text("SELECT (SELECT count(*) FROM lot), (SELECT count(*) FROM event)")
        )
    ).one()
    return int(row[0]), int(row[1])


def pointers(response: httpx.Response) -> list[str]:
    return [error["pointer"] for error in response.json().get("errors") or []]


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: Json = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


def code_is_well_formed(code: str, metal: str) -> bool:
    """`A26-0000K7X`: metal letter, year, Crockford base-32 serial, mod-37 check symbol."""
    match = CODE_SHAPE.match(code)
    if match is None or match["metal"] != metal[0].upper():
        return False
    serial = 0
    for symbol in match["body"]:
        serial = serial * 32 + _CROCKFORD.index(symbol)
    return match["check"] == _CHECK[serial % 37]


def random_resident_id() -> str:
    born = f"{random.randint(1950, 2000)}{random.randint(1, 12):02d}{random.randint(1, 28):02d}"
    first17 = "520102" + born + f"{random.randint(0, 999):03d}"
    return first17 + resident_id_check_digit(first17)


def random_name() -> str:
    return "测" + "".join(random.choice("甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未") for _ in range(3))


def composition_sum(lot: Json) -> float:
    parts = lot["composition"]
    return round(parts["post_consumer_kg"] + parts["pre_consumer_kg"] + parts["primary_kg"], 3)


async def post_lot(
    custody: Custody, body: Json, principal: Principal | None = None, **headers: str
) -> httpx.Response:
    who = principal or custody.world.a_operator
    return await custody.client.post(LOTS, json=body, headers={**who.headers, **headers})


async def new_enterprise_admin(
    custody: Custody, roles: list[str], region: str = "520102"
) -> tuple[str, Principal]:
    """An enterprise created through the API by the platform admin, and a key of its admin."""
    client, admin = custody.client, custody.world.admin
    created = await client.post(
        "/api/v1/enterprises",
        json={
            "name": f"企业 {uuid.uuid4().hex[:8]}",
            "uscc": random_uscc(region),
            "roles": roles,
            "region_code": region,
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    enterprise_id = created.json()["id"]
    key = await client.post(
        "/api/v1/api-keys",
        json={"name": "its admin", "role": "admin", "enterprise_id": enterprise_id},
        headers=admin.headers,
    )
    assert key.status_code == 201, key.text
    principal = Principal(key.json()["secret"], key.json()["role"], uuid.UUID(enterprise_id))
    return enterprise_id, principal


async def new_facility(
    custody: Custody, enterprise_id: str, kind: str, principal: Principal, region: str = "520102"
) -> str:
    created = await custody.client.post(
        "/api/v1/facilities",
        json={
            "enterprise_id": enterprise_id,
            "name": f"{kind} {uuid.uuid4().hex[:6]}",
            "kind": kind,
            "region_code": region,
            "address": "贵阳市南明区",
        },
        headers=principal.headers,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def list_all(client: httpx.AsyncClient, principal: Principal, **params: Any) -> list[Json]:
    response = await client.get(LOTS, params={"limit": 500, **params}, headers=principal.headers)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[Json] = response.json()["items"]
    return items


# --- 1. registration --------------------------------------------------------------------------


async def test_registration_answers_the_lot_and_writes_its_event(custody: Custody) -> None:
    client, world = custody.client, custody.world
    response = await post_lot(custody, lot_body(custody.point_a, 1250.5))
    assert response.status_code == 201, response.text
    lot = response.json()
    assert response.headers["location"] == f"{LOTS}/{lot['id']}"
    assert code_is_well_formed(lot["code"], "aluminium"), lot["code"]
    assert lot["version"] == 1
    assert lot["status"] == "active"
    assert lot["kind"] == "scrap"
    assert lot["holder_facility_id"] == custody.point_a
    assert lot["registered_facility_id"] == custody.point_a
    assert lot["holder_enterprise_id"] == str(world.enterprise_a)
    assert lot["parent_lot_id"] is None
    assert lot["net_kg"] == 1250.5
    assert lot["composition"] == {
        "post_consumer_kg": 1250.5,
        "pre_consumer_kg": 0,
        "primary_kg": 0,
    }

    pre = await post_lot(custody, lot_body(custody.point_a, 12.345, consumer_class="pre_consumer"))
    assert pre.status_code == 201, pre.text
    assert pre.json()["composition"] == {
        "post_consumer_kg": 0,
        "pre_consumer_kg": 12.345,
        "primary_kg": 0,
    }
    assert composition_sum(pre.json()) == pre.json()["net_kg"] == 12.345

    copper = await post_lot(
        custody, lot_body(custody.point_a, 7.001, metal="copper", category="GB13587-I")
    )
    assert copper.status_code == 201, copper.text
    assert code_is_well_formed(copper.json()["code"], "copper"), copper.json()["code"]
    assert len({lot["code"], pre.json()["code"], copper.json()["code"]}) == 3

    history = await client.get(f"{LOTS}/{lot['id']}/history", headers=world.a_viewer.headers)
    assert history.status_code == 200, history.text
    (event,) = history.json()
    assert event["type"] == "lot.registered"
    assert event["subject_id"] == lot["id"]
    assert event["actor_enterprise_id"] == str(world.enterprise_a)
    assert event["payload"]["code"] == lot["code"]
    assert event["payload"]["net_g"] == 1_250_500
    payload = json.dumps(event["payload"], ensure_ascii=False)
    assert "王小明" not in payload
    assert "52010219900101123X" not in payload
    assert "1123X" not in payload


async def test_registration_only_at_own_collection_point(
    custody: Custody, session: AsyncSession
) -> None:
    world = custody.world
    before = await counts(session)

    other = await post_lot(custody, lot_body(str(world.facility_b)))
    assert_problem(other, 404, "not_found")

    centre = await new_facility(
        custody, str(world.enterprise_a), "pretreatment_center", world.a_admin
    )
    after_centre = await counts(session)
    wrong = await post_lot(custody, lot_body(centre))
    assert_problem(wrong, 422, "wrong_facility")

    viewer = await post_lot(custody, lot_body(custody.point_a), world.a_viewer)
    assert_problem(viewer, 403)

    assert await counts(session) == after_centre
    assert after_centre[0] == before[0]


async def test_an_enterprise_without_the_recycler_role_cannot_register(
    custody: Custody, session: AsyncSession
) -> None:
    enterprise, its_admin = await new_enterprise_admin(custody, ["pretreater", "smelter"])
    point = await new_facility(custody, enterprise, "collection_point", custody.world.admin)
    before = await counts(session)
    refused = await post_lot(custody, lot_body(point), its_admin)
    assert_problem(refused, 403)
    assert await counts(session) == before


async def test_a_suspended_facility_cannot_register(
    custody: Custody, session: AsyncSession
) -> None:
    world = custody.world
    suspended = await custody.client.post(
        f"/api/v1/facilities/{custody.point_a}/suspend",
        json={"reason": "permit expired"},
        headers=world.province_supervisor.headers,
    )
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    before = await counts(session)
    refused = await post_lot(custody, lot_body(custody.point_a))
    assert_problem(refused, 403, "facility_suspended")
    assert await counts(session) == before


async def test_a_suspended_enterprise_cannot_register(
    custody: Custody, session: AsyncSession
) -> None:
    world = custody.world
    suspended = await custody.client.post(
        f"/api/v1/enterprises/{world.enterprise_a}/suspend",
        json={"reason": "cable theft investigation"},
        headers=world.province_supervisor.headers,
    )
    assert suspended.status_code == 200, suspended.text
    before = await counts(session)
    refused = await post_lot(custody, lot_body(custody.point_a))
    assert_problem(refused, 403, "enterprise_suspended")
    assert await counts(session) == before


# --- 2. bad input -----------------------------------------------------------------------------


def _tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


def _without_seller(body: Json) -> Json:
    return {k: v for k, v in body.items() if k != "seller"}


IMPORT = {
    "type": "import",
    "country": "JP",
    "customs_declaration_no": "123456789012345678",
    "conformity_standard": "GB/T 40382",
}

BAD_INPUT: list[tuple[str, Callable[[Json], Json], str]] = [
    ("zero mass", lambda b: {**b, "net_kg": 0}, "/net_kg"),
    ("negative mass", lambda b: {**b, "net_kg": -5}, "/net_kg"),
    ("four decimals", lambda b: {**b, "net_kg": 0.0001}, "/net_kg"),
    ("above the bound", lambda b: {**b, "net_kg": 1_000_000.001}, "/net_kg"),
    ("far above the bound", lambda b: {**b, "net_kg": 5e9}, "/net_kg"),
    ("unknown category", lambda b: {**b, "category": "NO-SUCH-CATEGORY"}, "/category"),
    ("category of the other metal", lambda b: {**b, "metal": "copper"}, "/category"),
    ("collected tomorrow", lambda b: {**b, "collected_at": _tomorrow()}, "/collected_at"),
    (
        "copper standard for aluminium",
        lambda b: {**b, "origin": {**IMPORT, "conformity_standard": "GB/T 38471"}},
        "/origin/conformity_standard",
    ),
    (
        "import without customs number",
        lambda b: {
            **b,
            "origin": {k: v for k, v in IMPORT.items() if k != "customs_declaration_no"},
        },
        "/origin/customs_declaration_no",
    ),
    (
        "bad ID check digit",
        lambda b: {
            **b,
            "seller": {"kind": "individual", "name": "王小明", "id_number": "520102199001011230"},
        },
        "/seller/id_number",
    ),
    (
        "individual seller without a name",
        lambda b: {**b, "seller": {"kind": "individual", "id_number": "52010219900101123X"}},
        "/seller/name",
    ),
    ("unknown field", lambda b: {**b, "colour": "grey"}, "/colour"),
    ("missing seller", _without_seller, "/seller"),
]


@pytest.mark.parametrize(
    ("change", "pointer"), [(c, p) for _, c, p in BAD_INPUT], ids=[n for n, _, _ in BAD_INPUT]
)
async def test_bad_input_is_422_with_a_pointer_and_writes_nothing(
    custody: Custody, session: AsyncSession, change: Callable[[Json], Json], pointer: str
) -> None:
    before = await counts(session)
    response = await post_lot(custody, change(lot_body(custody.point_a)))
    body = assert_problem(response, 422)
    assert pointer in pointers(response), body
    assert await counts(session) == before


async def test_a_valid_import_is_registered(custody: Custody) -> None:
    """The control for the import cases above: a right standard and number pass."""
    response = await post_lot(custody, lot_body(custody.point_a, origin=IMPORT))
    assert response.status_code == 201, response.text
    assert response.json()["origin"] == IMPORT


# --- 3. seller identity -----------------------------------------------------------------------


async def _find_in_database(session: AsyncSession, needle: str) -> list[str]:
    """Every table (as row text) and every bytea column holding `needle` in clear."""
    hits = []
    tables = await session.scalars(
        text(
            "SELECT quote_ident(table_name) FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    )
    for table in tables.all():
        found = await session.scalar(
            text(f"SELECT count(*) FROM {table} AS r WHERE r::text LIKE :p"),  # noqa: S608
            {"p": f"%{needle}%"},
        )
        if found:
            hits.append(table)
    columns = await session.execute(
        text(
            "SELECT quote_ident(table_name), quote_ident(column_name) "
            "FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = 'bytea'"
        )
    )
    for table, column in columns.all():
        found = await session.scalar(
            text(
                f"SELECT count(*) FROM {table} "  # noqa: S608
                f"WHERE position(convert_to(:p, 'UTF8') IN {column}) > 0"
            ),
            {"p": needle},
        )
        if found:
            hits.append(f"{table}.{column}")
    return hits


async def test_the_seller_is_never_in_clear(custody: Custody, session: AsyncSession) -> None:
    client, world = custody.client, custody.world
    name, number = random_name(), random_resident_id()
    seller = {"kind": "individual", "name": name, "id_number": number}
    created = await post_lot(
        custody,
        lot_body(custody.point_a, seller=seller),
        **{"Idempotency-Key": f"seller-{uuid.uuid4()}"},
    )
    assert created.status_code == 201, created.text
    lot = created.json()
    assert lot["seller"] == {
        "kind": "individual",
        "name": name[0] + "***",
        "id_number": number[:4] + "*" * 12 + number[-2:],
    }
    responses = [
        created,
        await client.get(f"{LOTS}/{lot['id']}", headers=world.a_viewer.headers),
        await client.get(LOTS, headers=world.a_viewer.headers),
        await client.get(f"{LOTS}/{lot['id']}/history", headers=world.a_viewer.headers),
        await client.get(f"{LOTS}/{lot['id']}", headers=world.province_supervisor.headers),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert lot["id"] in response.text
        for shown in (response.text, json.dumps(response.json(), ensure_ascii=False)):
            assert name not in shown
            assert number not in shown

    assert await _find_in_database(session, name) == []
    assert await _find_in_database(session, number) == []
    sealed = await session.scalar(
        text("SELECT seller_sealed FROM lot WHERE id = :id"), {"id": lot["id"]}
    )
    assert sealed is not None
    assert len(sealed) > len(number)
    assert name.encode() not in sealed
    assert number.encode() not in sealed


async def test_a_province_supervisor_sees_the_seller_and_the_view_is_audited(
    custody: Custody, session: AsyncSession
) -> None:
    client, world = custody.client, custody.world
    name, number = random_name(), random_resident_id()
    lot = await custody.register(seller={"kind": "individual", "name": name, "id_number": number})
    url = f"{LOTS}/{lot['id']}/seller-view"
    reason = "cable theft case 2026-117"

    _, events_before = await counts(session)
    for refused, status in (
        (world.province_inspector, 403),
        (world.a_admin, 403),
        (world.zunyi_supervisor, 404),
    ):
        response = await client.post(url, json={"reason": reason}, headers=refused.headers)
        assert_problem(response, status)
        assert name not in response.text
        assert number not in response.text
    assert (await counts(session))[1] == events_before

    seen = await client.post(
        url, json={"reason": reason}, headers=world.province_supervisor.headers
    )
    assert seen.status_code == 200, seen.text
    assert seen.json() == {"name": name, "id_number": number}

    me = (await client.get("/api/v1/me", headers=world.province_supervisor.headers)).json()
    rows = (
        await session.execute(
            text(
                "SELECT actor_principal_id, actor_role, actor_authority_id, payload, region_codes "
                "FROM event WHERE type = 'lot.seller_viewed' AND subject_id = :id"
            ),
            {"id": lot["id"]},
        )
    ).all()
    assert len(rows) == 1
    principal_id, role, authority_id, payload, regions = rows[0]
    assert regions == ["520102"]  # found by the region's own audit queries
    assert str(principal_id) == me["principal_id"]
    assert role == "supervisor"
    assert authority_id == world.province_authority
    assert payload["reason"] == reason
    assert name not in json.dumps(payload, ensure_ascii=False)
    assert number not in json.dumps(payload)


async def test_an_organisation_seller_is_shown_and_has_nothing_to_reveal(
    custody: Custody,
) -> None:
    client, world = custody.client, custody.world
    uscc = random_uscc("520103")
    seller = {"kind": "organisation", "name": "贵阳拆迁工程有限公司", "uscc": uscc}
    lot = await custody.register(seller=seller)
    assert lot["seller"] == {"kind": "organisation", "name": seller["name"], "id_number": uscc}
    got = await client.get(f"{LOTS}/{lot['id']}", headers=world.a_viewer.headers)
    assert got.json()["seller"]["name"] == seller["name"]
    view = await client.post(
        f"{LOTS}/{lot['id']}/seller-view",
        json={"reason": "checking the buyer"},
        headers=world.province_supervisor.headers,
    )
    assert_problem(view, 404)


# --- 4. batch ---------------------------------------------------------------------------------


async def test_a_batch_registers_every_lot_in_order(
    custody: Custody, session: AsyncSession
) -> None:
    before = await counts(session)
    masses = [10.5, 0.001, 999.999]
    response = await custody.client.post(
        f"{LOTS}/batch",
        json={"lots": [lot_body(custody.point_a, m) for m in masses]},
        headers=custody.world.a_operator.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["count"] == 3
    assert [lot["net_kg"] for lot in body["lots"]] == masses
    assert len({lot["code"] for lot in body["lots"]}) == 3
    assert all(code_is_well_formed(lot["code"], "aluminium") for lot in body["lots"])
    rows = dict(
        (
            await session.execute(
                text("SELECT id::text, net_g FROM lot WHERE id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": [lot["id"] for lot in body["lots"]]},
            )
        ).all()
    )
    assert [rows[lot["id"]] for lot in body["lots"]] == [10_500, 1, 999_999]
    assert await counts(session) == (before[0] + 3, before[1] + 3)


async def test_a_batch_of_5000_lots(custody: Custody, session: AsyncSession) -> None:
    before = await counts(session)
    lots = [lot_body(custody.point_a, round(100 + i / 1000, 3)) for i in range(5000)]
    started = time.perf_counter()
    response = await custody.client.post(
        f"{LOTS}/batch", json={"lots": lots}, headers=custody.world.a_operator.headers
    )
    elapsed = time.perf_counter() - started
    print(f"\nbatch of 5,000 lots: {elapsed:.3f} s ({5000 / elapsed:,.0f} lots/s, in-process)")
    assert response.status_code == 201, response.text[:500]
    body = response.json()
    assert body["count"] == 5000
    assert len({lot["code"] for lot in body["lots"]}) == 5000
    assert body["lots"][4321]["net_kg"] == 104.321
    assert await counts(session) == (before[0] + 5000, before[1] + 5000)
    total = await session.scalar(
        text("SELECT sum(net_g) FROM lot WHERE holder_facility_id = :f"), {"f": custody.point_a}
    )
    assert total == sum(100_000 + i for i in range(5000))


async def test_a_bad_batch_names_every_bad_item_and_writes_nothing(
    custody: Custody, session: AsyncSession
) -> None:
    lots = [lot_body(custody.point_a, 10 + i) for i in range(6)]
    lots[2]["category"] = "NO-SUCH-CATEGORY"
    lots[4]["net_kg"] = 0
    before = await counts(session)
    response = await custody.client.post(
        f"{LOTS}/batch", json={"lots": lots}, headers=custody.world.a_operator.headers
    )
    body = assert_problem(response, 422)
    assert "/lots/2/category" in pointers(response), body
    assert "/lots/4/net_kg" in pointers(response), body
    assert await counts(session) == before


async def test_a_bad_batch_item_in_the_domain_rules_alone_writes_nothing(
    custody: Custody, session: AsyncSession
) -> None:
    lots = [lot_body(custody.point_a, 10 + i) for i in range(6)]
    lots[2]["category"] = "NO-SUCH-CATEGORY"
    lots[5]["metal"] = "copper"
    before = await counts(session)
    response = await custody.client.post(
        f"{LOTS}/batch", json={"lots": lots}, headers=custody.world.a_operator.headers
    )
    assert_problem(response, 422)
    assert pointers(response) == ["/lots/2/category", "/lots/5/category"]
    assert await counts(session) == before


@pytest.mark.parametrize("size", [0, 5001])
async def test_a_batch_must_hold_1_to_5000_lots(
    custody: Custody, session: AsyncSession, size: int
) -> None:
    before = await counts(session)
    response = await custody.client.post(
        f"{LOTS}/batch",
        json={"lots": [lot_body(custody.point_a, 1)] * size},
        headers=custody.world.a_operator.headers,
    )
    assert_problem(response, 422)
    assert "/lots" in pointers(response)
    assert await counts(session) == before


# --- 5. split ---------------------------------------------------------------------------------


async def split(
    custody: Custody, lot_id: str, parts: list[Any], principal: Principal | None = None
) -> httpx.Response:
    who = principal or custody.world.a_operator
    return await custody.client.post(
        f"{LOTS}/{lot_id}/split", json={"parts_kg": parts}, headers=who.headers
    )


async def test_parts_that_do_not_sum_are_refused_with_both_sums(
    custody: Custody, session: AsyncSession
) -> None:
    lot = await custody.register(100)
    before = await counts(session)
    response = await split(custody, lot["id"], [30, 70.5])
    body = assert_problem(response, 422)
    detail = body["detail"]
    assert ("100.5" in detail and "100 kg" in detail) or (
        "100500 g" in detail and "100000 g" in detail
    ), detail
    assert "/parts_kg" in pointers(response)
    assert await counts(session) == before
    again = await custody.client.get(f"{LOTS}/{lot['id']}", headers=custody.world.a_admin.headers)
    assert again.json()["status"] == "active"
    assert again.json()["version"] == 1


async def test_a_split_keeps_every_gram_and_the_composition(
    custody: Custody, session: AsyncSession
) -> None:
    world = custody.world
    lot = await custody.register(100, category="GB13586-CAST", channel="online")
    # A composition no scrap registration produces (melts will): every class must be apportioned.
    await session.execute(
        text(
            "UPDATE lot SET post_consumer_g = 70001, pre_consumer_g = 19999, primary_g = 10000 "
            "WHERE id = :id"
        ),
        {"id": lot["id"]},
    )
    await session.commit()
    before = await counts(session)

    response = await split(custody, lot["id"], [33.333, 33.333, 33.334])
    assert response.status_code == 201, response.text
    parent, children = response.json()["parent"], response.json()["children"]
    assert parent["id"] == lot["id"]
    assert parent["status"] == "split"
    assert parent["version"] == 2
    assert [c["net_kg"] for c in children] == [33.333, 33.333, 33.334]
    assert len({lot["code"], *(c["code"] for c in children)}) == 4
    classes = ("post_consumer_kg", "pre_consumer_kg", "primary_kg")
    whole = {"post_consumer_kg": 70001, "pre_consumer_kg": 19999, "primary_kg": 10000}
    for child in children:
        assert child["status"] == "active"
        assert child["parent_lot_id"] == lot["id"]
        assert child["holder_facility_id"] == custody.point_a
        assert child["holder_enterprise_id"] == str(world.enterprise_a)
        assert child["category"] == "GB13586-CAST"
        assert child["channel"] == "online"
        assert child["seller"] == lot["seller"]
        assert child["version"] == 1
        assert composition_sum(child) == child["net_kg"]
        for cls in classes:
            grams = round(child["composition"][cls] * 1000)
            exact = round(child["net_kg"] * 1000) * whole[cls] / 100_000
            assert abs(grams - exact) < 1, (cls, grams, exact)
    for cls in classes:
        assert sum(round(c["composition"][cls] * 1000) for c in children) == whole[cls]
    assert await counts(session) == (before[0] + 3, before[1] + 1)

    history = await custody.client.get(f"{LOTS}/{lot['id']}/history", headers=world.a_admin.headers)
    assert [e["type"] for e in history.json()] == ["lot.registered", "lot.split"]
    listed = await list_all(custody.client, world.a_admin, status="active")
    assert {c["id"] for c in children} <= {item["id"] for item in listed}
    assert lot["id"] not in {item["id"] for item in listed}


async def test_a_split_of_a_pure_post_consumer_lot(custody: Custody) -> None:
    lot = await custody.register(100)
    response = await split(custody, lot["id"], [33.333, 33.333, 33.334])
    assert response.status_code == 201, response.text
    children = response.json()["children"]
    assert [c["composition"]["post_consumer_kg"] for c in children] == [33.333, 33.333, 33.334]
    assert all(c["composition"]["pre_consumer_kg"] == 0 for c in children)


async def test_a_lot_in_transit_cannot_be_split(custody: Custody) -> None:
    lot = await custody.register(100)
    shipped = await custody.ship([lot["id"]])
    assert shipped.status_code == 201, shipped.text
    assert_problem(await split(custody, lot["id"], [50, 50]), 409, "lot_not_available")


async def test_only_the_holder_splits(custody: Custody, session: AsyncSession) -> None:
    world = custody.world
    lot = await custody.register(100)
    before = await counts(session)
    assert_problem(await split(custody, lot["id"], [50, 50], world.b_admin), 404)
    assert_problem(await split(custody, lot["id"], [50, 50], world.a_viewer), 403)
    assert await counts(session) == before

    # After custody passed to B, A (a past holder) still sees it but may not split it.
    shipment = (await custody.ship([lot["id"]])).json()
    received = await custody.receive(
        shipment["id"], [{"lot_id": lot["id"], "received_kg": 100, "refused_kg": 0}]
    )
    assert received.status_code == 201, received.text
    assert (
        await custody.client.get(f"{LOTS}/{lot['id']}", headers=world.a_admin.headers)
    ).is_success
    assert_problem(await split(custody, lot["id"], [50, 50], world.a_admin), 404)
    by_b = await split(custody, lot["id"], [50, 50], world.b_admin)
    assert by_b.status_code == 201, by_b.text
    assert {c["holder_facility_id"] for c in by_b.json()["children"]} == {custody.centre_b}


async def test_a_part_of_zero_is_refused(custody: Custody, session: AsyncSession) -> None:
    lot = await custody.register(100)
    before = await counts(session)
    response = await split(custody, lot["id"], [100, 0])
    assert_problem(response, 422)
    assert "/parts_kg/1" in pointers(response)
    assert_problem(await split(custody, lot["id"], [100]), 422)
    assert_problem(await split(custody, lot["id"], [50.0001, 49.9999]), 422)
    assert await counts(session) == before


async def test_a_split_parent_cannot_be_split_again(custody: Custody) -> None:
    lot = await custody.register(100)
    assert (await split(custody, lot["id"], [40, 60])).status_code == 201
    assert_problem(await split(custody, lot["id"], [40, 60]), 409, "lot_not_available")


# --- 6. reading -------------------------------------------------------------------------------


async def test_every_list_filter_filters(custody: Custody) -> None:
    client, world = custody.client, custody.world
    point_2 = await new_facility(
        custody, str(world.enterprise_a), "collection_point", world.a_admin, region="520103"
    )
    early = await custody.register(10, collected_at="2026-11-01T08:00:00+08:00")
    copper = await custody.register(
        20, metal="copper", category="GB13587-II", collected_at="2026-11-10T08:00:00+08:00"
    )
    cast = await custody.register(
        30, category="GB13586-CAST", collected_at="2026-11-15T08:00:00+08:00"
    )
    elsewhere = await post_lot(custody, lot_body(point_2, 40))
    assert elsewhere.status_code == 201, elsewhere.text
    other = elsewhere.json()

    def ids(items: list[Json]) -> set[str]:
        return {item["id"] for item in items}

    everything = {early["id"], copper["id"], cast["id"], other["id"]}
    assert ids(await list_all(client, world.a_admin)) == everything
    assert ids(await list_all(client, world.a_admin, facility_id=point_2)) == {other["id"]}
    assert ids(await list_all(client, world.a_admin, facility_id=custody.point_a)) == (
        everything - {other["id"]}
    )
    assert ids(await list_all(client, world.a_admin, metal="copper")) == {copper["id"]}
    assert ids(await list_all(client, world.a_admin, metal="aluminium")) == (
        everything - {copper["id"]}
    )
    assert ids(await list_all(client, world.a_admin, category="GB13586-CAST")) == {cast["id"]}
    window = await list_all(
        client,
        world.a_admin,
        collected_from="2026-11-10T08:00:00+08:00",
        collected_to="2026-11-15T08:00:00+08:00",
    )
    assert ids(window) == {copper["id"]}
    assert ids(await list_all(client, world.a_admin, collected_from="2026-11-10T00:00:00Z")) == {
        copper["id"],
        cast["id"],
        other["id"],
    }

    shipped = await custody.ship([cast["id"]])
    assert shipped.status_code == 201, shipped.text
    assert ids(await list_all(client, world.a_admin, status="in_transit")) == {cast["id"]}
    assert ids(await list_all(client, world.a_admin, status="active")) == everything - {cast["id"]}
    assert ids(await list_all(client, world.a_admin, status="split")) == set()

    bad = await client.get(LOTS, params={"metal": "gold"}, headers=world.a_admin.headers)
    assert_problem(bad, 422)


async def test_keyset_paging_walks_every_lot_once(custody: Custody) -> None:
    client, world = custody.client, custody.world
    batch = await client.post(
        f"{LOTS}/batch",
        json={"lots": [lot_body(custody.point_a, 1 + i) for i in range(7)]},
        headers=world.a_operator.headers,
    )
    assert batch.status_code == 201, batch.text
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = await client.get(LOTS, params=params, headers=world.a_viewer.headers)
        assert page.status_code == 200, page.text
        pages += 1
        assert len(page.json()["items"]) <= 2
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
        # A lot registered while paging must not make the walk repeat or skip one.
        if pages == 2:
            await custody.register(99)
    assert len(seen) == len(set(seen))
    assert set(seen) == {lot["id"] for lot in await list_all(client, world.a_viewer)}
    assert {lot["id"] for lot in batch.json()["lots"]} <= set(seen)
    assert pages == 4  # 8 lots, 2 a page, the last page says there is no more
    bad = await client.get(LOTS, params={"cursor": "not-a-cursor"}, headers=world.a_viewer.headers)
    assert_problem(bad, 422)


async def test_visibility_follows_custody_and_jurisdiction(custody: Custody) -> None:
    client, world = custody.client, custody.world
    _, c_admin = await new_enterprise_admin(custody, ["recycler"], region="520102")
    lot = await custody.register(100)
    url = f"{LOTS}/{lot['id']}"

    async def sees(principal: Principal) -> bool:
        got = await client.get(url, headers=principal.headers)
        history = await client.get(f"{url}/history", headers=principal.headers)
        assert got.status_code in (200, 404), got.text
        assert history.status_code == got.status_code
        listed = lot["id"] in {item["id"] for item in await list_all(client, principal)}
        assert listed == (got.status_code == 200)
        return got.status_code == 200

    assert await sees(world.a_viewer)
    assert await sees(world.guiyang_supervisor)
    assert await sees(world.province_inspector)
    assert not await sees(world.b_admin)
    assert not await sees(world.zunyi_supervisor)
    assert not await sees(c_admin)

    shipment = (await custody.ship([lot["id"]])).json()
    assert not await sees(world.zunyi_supervisor)  # nothing in Zunyi has touched it yet
    received = await custody.receive(
        shipment["id"], [{"lot_id": lot["id"], "received_kg": 100, "refused_kg": 0}]
    )
    assert received.status_code == 201, received.text

    assert await sees(world.a_viewer)  # a past holder
    assert await sees(world.b_admin)  # the holder
    assert await sees(world.zunyi_supervisor)  # B's centre in 520302 touched it
    assert await sees(world.guiyang_supervisor)
    assert not await sees(c_admin)
    assert await list_all(client, c_admin) == []

    history = (await client.get(f"{url}/history", headers=world.b_admin.headers)).json()
    assert [e["type"] for e in history] == [
        "lot.registered",
        "shipment.dispatched",
        "shipment.received",
    ]
    assert [e["id"] for e in history] == sorted(e["id"] for e in history)
    times = [datetime.fromisoformat(e["occurred_at"]) for e in history]
    assert times == sorted(times)


async def test_an_unknown_lot_is_404(custody: Custody) -> None:
    missing = await custody.client.get(
        f"{LOTS}/{uuid.uuid4()}", headers=custody.world.admin.headers
    )
    assert_problem(missing, 404, "not_found")


# --- 7. idempotency ---------------------------------------------------------------------------


async def test_a_registration_retry_replays(custody: Custody, session: AsyncSession) -> None:
    headers = {**custody.world.a_operator.headers, "Idempotency-Key": f"lot-{uuid.uuid4()}"}
    body = lot_body(custody.point_a, 42.042)
    before = await counts(session)
    first = await custody.client.post(LOTS, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await custody.client.post(LOTS, json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert "idempotent-replayed" not in first.headers
    assert await counts(session) == (before[0] + 1, before[1] + 1)

    other = await custody.client.post(LOTS, json=lot_body(custody.point_a, 43), headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    assert await counts(session) == (before[0] + 1, before[1] + 1)


async def test_a_batch_retry_replays(custody: Custody, session: AsyncSession) -> None:
    headers = {**custody.world.a_operator.headers, "Idempotency-Key": f"batch-{uuid.uuid4()}"}
    body = {"lots": [lot_body(custody.point_a, m) for m in (1, 2, 3)]}
    before = await counts(session)
    first = await custody.client.post(f"{LOTS}/batch", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await custody.client.post(f"{LOTS}/batch", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert [lot["code"] for lot in again.json()["lots"]] == [
        lot["code"] for lot in first.json()["lots"]
    ]
    assert again.json() == first.json()
    assert await counts(session) == (before[0] + 3, before[1] + 3)


async def test_a_split_retry_replays(custody: Custody, session: AsyncSession) -> None:
    lot = await custody.register(100)
    headers = {**custody.world.a_operator.headers, "Idempotency-Key": f"split-{uuid.uuid4()}"}
    body = {"parts_kg": [25, 75]}
    url = f"{LOTS}/{lot['id']}/split"
    before = await counts(session)
    first = await custody.client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await custody.client.post(url, json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert [c["id"] for c in again.json()["children"]] == [
        c["id"] for c in first.json()["children"]
    ]
    assert again.json() == first.json()
    assert await counts(session) == (before[0] + 2, before[1] + 1)
    # Without the key, the same request is a new one: the parent is already split.
    fresh = await custody.client.post(url, json=body, headers=custody.world.a_operator.headers)
    assert_problem(fresh, 409, "lot_not_available")
