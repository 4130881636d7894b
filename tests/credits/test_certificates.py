"""Certificates over HTTP (DESIGN §2.6): what each method claims, to the gram; every refusal with
its problem; one certificate per lot and recipient, a lot's mass once; idempotent retries;
reading, listing and revoking."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import Role
from tests.conftest import Json, make_key
from tests.credits.conftest import (
    CERTIFICATES,
    balances,
    credits,
    entries,
    issue,
    kg,
    melt,
    new_enterprise,
    total,
)
from tests.custody.conftest import Plant, assert_problem, dispatch, get_lot, pointers, void

AL = "aluminium"
POST, PRE = "post_consumer", "pre_consumer"


def claimed(certificate: Json) -> tuple[Decimal, Decimal]:
    return kg(certificate["claimed"]["post_consumer_kg"]), kg(
        certificate["claimed"]["pre_consumer_kg"]
    )


async def revoke(
    plant: Plant,
    certificate: Json,
    headers: dict[str, str] | None = None,
    reason: str = "wrong lot",
) -> httpx.Response:
    return await plant.client.post(
        f"{CERTIFICATES}/{certificate['id']}/revoke",
        json={"reason": reason},
        headers=headers or plant.b,
    )


async def public(plant: Plant, number: str) -> Json:
    response = await plant.client.get(f"/api/v1/public/certificates/{number}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- what is claimed --------------------------------------------------------------------------


async def test_proportional_claims_exactly_the_lots_composition(plant: Plant) -> None:
    (lot,) = (await melt(plant, [96])).products  # 57.6 post, 19.2 pre, 19.2 primary
    response = await issue(plant, lot, plant.world.enterprise_a)
    assert response.status_code == 201, response.text
    certificate = response.json()
    assert response.headers["location"] == f"{CERTIFICATES}/{certificate['id']}"
    assert certificate["status"] == "valid" and certificate["method"] == "proportional"
    assert (certificate["lot_id"], certificate["metal"]) == (lot["id"], AL)
    assert certificate["issuer_enterprise_id"] == str(plant.world.enterprise_b)
    assert certificate["debited_enterprise_id"] == str(plant.world.enterprise_b)
    assert certificate["recipient_enterprise_id"] == str(plant.world.enterprise_a)
    assert kg(certificate["mass_kg"]) == 96
    assert claimed(certificate) == (Decimal("57.6"), Decimal("19.2"))
    assert kg(certificate["claimed"]["total_kg"]) == Decimal("76.8")
    payload = certificate["payload"]
    assert payload["claimed_recycled_kg"] == {
        "post_consumer": "57.6",
        "pre_consumer": "19.2",
        "total": "76.8",
    }
    assert (payload["mass_kg"], payload["recycled_percent"]) == ("96", "80.00")
    assert payload["lot"] == {"id": lot["id"], "code": lot["code"], "product_form": "ingot"}
    assert payload["number"] == certificate["number"]
    # Debited from the lot's own credits.
    ledger = await credits(plant, plant.world.enterprise_b)
    debits = entries(ledger, "debit")
    assert {(e["lot_id"], e["recycled_class"], kg(e["kg"])) for e in debits} == {
        (lot["id"], POST, Decimal("-57.6")),
        (lot["id"], PRE, Decimal("-19.2")),
    }
    assert {e["certificate_id"] for e in debits} == {certificate["id"]}
    assert balances(ledger) == {(AL, POST): (0, 0), (AL, PRE): (0, 0)}


async def test_a_share_of_a_lot_is_rounded_to_the_gram(plant: Plant, session: AsyncSession) -> None:
    """10.001 kg of the 96 kg lot: exact shares 6.0006 kg post, 2.0002 kg pre and primary; the
    gram left over goes to the largest remainder, post-consumer."""
    (lot,) = (await melt(plant, [96])).products
    response = await issue(plant, lot, plant.world.enterprise_a, mass_kg=10.001)
    assert response.status_code == 201, response.text
    assert claimed(response.json()) == (Decimal("6.001"), Decimal("2"))
    assert response.json()["payload"]["recycled_percent"] == "80.00"  # 8.001 of 10.001


async def test_proportional_shares_of_one_lot_add_up_to_its_composition(
    plant: Plant, session: AsyncSession
) -> None:
    """33.333 kg and 62.667 kg of a 96 kg lot with 19.2 kg pre-consumer metal: rounded each on
    its own, the shares would be 6.667 + 12.534 = 19.201 kg; the second claims what is left."""
    (lot,) = (await melt(plant, [96])).products
    other = await new_enterprise(session)
    first = await issue(plant, lot, plant.world.enterprise_a, mass_kg=33.333)
    assert first.status_code == 201, first.text
    second = await issue(plant, lot, other)  # the rest: 62.667 kg
    assert second.status_code == 201, second.text
    assert kg(second.json()["mass_kg"]) == Decimal("62.667")
    (post_1, pre_1), (post_2, pre_2) = claimed(first.json()), claimed(second.json())
    assert (post_1 + post_2, pre_1 + pre_2) == (Decimal("57.6"), Decimal("19.2"))
    # Every gram of the lot's credits was drawn, and no other.
    ledger = await credits(plant, plant.world.enterprise_b)
    assert {e["lot_id"] for e in entries(ledger, "debit")} == {lot["id"]}
    assert balances(ledger) == {(AL, POST): (0, 0), (AL, PRE): (0, 0)}


async def test_mass_balance_claims_from_the_balance_post_consumer_first(plant: Plant) -> None:
    made = await melt(plant, [96, 96])  # 115.2 kg post, 38.4 kg pre in all
    response = await issue(
        plant, made.products[0], plant.world.enterprise_a, "mass_balance", claimed_recycled_kg=90
    )
    assert response.status_code == 201, response.text
    certificate = response.json()
    assert kg(certificate["mass_kg"]) == 96  # the lot's uncertified mass by default
    assert claimed(certificate) == (Decimal(90), Decimal(0))
    assert certificate["payload"]["recycled_percent"] == "93.75"
    # More than one lot holds: the certified lot's own credits first, then the other's.
    ledger = await credits(plant, plant.world.enterprise_b)
    debits = {e["lot_id"]: kg(e["kg"]) for e in entries(ledger, "debit")}
    assert debits == {
        made.products[0]["id"]: Decimal("-57.6"),
        made.products[1]["id"]: Decimal("-32.4"),
    }
    spill = await issue(
        plant, made.products[1], plant.world.enterprise_a, "mass_balance", claimed_recycled_kg=40
    )
    assert spill.status_code == 201, spill.text
    assert claimed(spill.json()) == (Decimal("25.2"), Decimal("14.8"))
    assert balances(await credits(plant, plant.world.enterprise_b)) == {
        (AL, POST): (0, 0),
        (AL, PRE): (Decimal("23.6"), 0),
    }


async def test_mass_balance_from_one_class(plant: Plant) -> None:
    (lot,) = (await melt(plant, [96])).products
    response = await issue(
        plant,
        lot,
        plant.world.enterprise_a,
        "mass_balance",
        mass_kg=20,
        claimed_recycled_kg=19.2,
        recycled_class=PRE,
    )
    assert response.status_code == 201, response.text
    assert claimed(response.json()) == (Decimal(0), Decimal("19.2"))
    assert response.json()["payload"]["recycled_percent"] == "96.00"
    assert balances(await credits(plant, plant.world.enterprise_b)) == {
        (AL, POST): (Decimal("57.6"), 0),
        (AL, PRE): (0, 0),
    }
    # The class is empty now, though post-consumer credits remain.
    short = await issue(
        plant,
        lot,
        plant.world.enterprise_a,
        "mass_balance",
        mass_kg=1,
        claimed_recycled_kg=0.001,
        recycled_class=PRE,
    )
    assert_problem(short, 409, "already_certified")  # this recipient has one already
    c = plant.c_admin.enterprise_id
    assert c is not None
    short = await issue(
        plant, lot, c, "mass_balance", mass_kg=1, claimed_recycled_kg=0.001, recycled_class=PRE
    )
    body = assert_problem(short, 409, "insufficient_credits")
    assert body["balance_kg"] == 0 and body["needed_kg"] == 0.001


# --- refusals ---------------------------------------------------------------------------------


async def test_what_a_certificate_request_must_say(plant: Plant, session: AsyncSession) -> None:
    (lot,) = (await melt(plant, [96])).products
    a = plant.world.enterprise_a
    before = await credits(plant, plant.world.enterprise_b)

    over = await issue(plant, lot, a, "mass_balance", mass_kg=10, claimed_recycled_kg=10.001)
    assert_problem(over, 422)
    assert pointers(over) == ["/claimed_recycled_kg"]
    missing = await issue(plant, lot, a, "mass_balance")
    assert_problem(missing, 422)
    assert pointers(missing) == ["/claimed_recycled_kg"]
    for extra in ({"claimed_recycled_kg": 10}, {"recycled_class": POST}):
        assert_problem(await issue(plant, lot, a, "proportional", **extra), 422)
    assert_problem(await issue(plant, lot, a, "guesswork"), 422)
    for bad_mass in (0, -1, 1.0001):
        assert_problem(await issue(plant, lot, a, mass_kg=bad_mass), 422)
    too_much = await issue(plant, lot, a, mass_kg=96.001)
    assert_problem(too_much, 409, "already_certified")

    unknown = await issue(plant, lot, uuid.uuid4())
    assert_problem(unknown, 422, "unknown_recipient")
    assert pointers(unknown) == ["/recipient_enterprise_id"]
    itself = await issue(plant, lot, plant.world.enterprise_b)
    assert_problem(itself, 422)
    assert pointers(itself) == ["/recipient_enterprise_id"]

    assert await credits(plant, plant.world.enterprise_b) == before
    assert await session.scalar(text("SELECT count(*) FROM certificate")) == 0


async def test_only_products_are_certified(plant: Plant) -> None:
    made = await melt(plant, [96])
    scrap = (await plant.custody.register(50))["id"]  # A's own scrap lot
    refused = await issue(
        plant, scrap, plant.world.enterprise_b, headers=plant.world.a_admin.headers
    )
    assert_problem(refused, 422, "not_a_product")
    assert pointers(refused) == ["/lot_id"]
    # B's consumed scrap input is visible to B, but not a product either.
    (source,) = [i["lot_id"] for i in made.run["inputs"] if kg(i["pre_consumer_kg"]) == 0]
    assert_problem(await issue(plant, source, plant.world.enterprise_a), 422, "not_a_product")


async def test_a_lot_one_cannot_see_is_not_found(plant: Plant) -> None:
    (lot,) = (await melt(plant, [96])).products
    world = plant.world
    for who in (world.a_admin, plant.c_admin):
        refused = await issue(plant, lot, world.enterprise_b, headers=who.headers)
        assert_problem(refused, 404, "not_found")
    assert_problem(await issue(plant, str(uuid.uuid4()), world.enterprise_a), 404)


async def test_who_may_issue(plant: Plant, session: AsyncSession) -> None:
    (lot,) = (await melt(plant, [96])).products
    world = plant.world
    b_viewer = await make_key(session, Role.viewer, world.enterprise_b)
    b_operator = await make_key(session, Role.operator, world.enterprise_b)
    await session.commit()
    for who in (b_viewer, world.zunyi_supervisor, world.province_inspector):
        assert_problem(await issue(plant, lot, world.enterprise_a, headers=who.headers), 403)
    anonymous = {"lot_id": lot["id"], "recipient_enterprise_id": str(world.enterprise_a)}
    assert_problem(await plant.client.post(CERTIFICATES, json=anonymous), 401)
    assert await session.scalar(text("SELECT count(*) FROM certificate")) == 0
    by_operator = await issue(plant, lot, world.enterprise_a, headers=b_operator.headers, mass_kg=1)
    assert by_operator.status_code == 201, by_operator.text


async def test_one_certificate_per_lot_and_recipient_and_a_lots_mass_once(
    plant: Plant, session: AsyncSession
) -> None:
    (lot,) = (await melt(plant, [96])).products
    a, c = plant.world.enterprise_a, plant.c_admin.enterprise_id
    assert c is not None
    d = await new_enterprise(session)

    first = await issue(plant, lot, a, mass_kg=60)
    assert first.status_code == 201, first.text
    again = await issue(plant, lot, a, mass_kg=1)
    assert_problem(again, 409, "already_certified")
    assert first.json()["number"] in again.json()["detail"]
    beyond = await issue(plant, lot, c, mass_kg=36.001)
    assert_problem(beyond, 409, "already_certified")
    rest = await issue(plant, lot, c)
    assert rest.status_code == 201, rest.text
    assert kg(rest.json()["mass_kg"]) == 36
    assert_problem(await issue(plant, lot, d, mass_kg=0.001), 409, "already_certified")
    assert_problem(await issue(plant, lot, d, "mass_balance", claimed_recycled_kg=1), 409)
    # Revoked, its mass and its recipient are free again.
    assert (await revoke(plant, first.json())).status_code == 200
    reissued = await issue(plant, lot, a, mass_kg=60)
    assert reissued.status_code == 201, reissued.text
    assert reissued.json()["number"] != first.json()["number"]
    assert claimed(reissued.json()) == claimed(first.json())


async def test_a_retry_replays_the_certificate_and_debits_once(plant: Plant) -> None:
    (lot,) = (await melt(plant, [96])).products
    headers = {**plant.b, "Idempotency-Key": "certify-1"}
    body = {
        "lot_id": lot["id"],
        "recipient_enterprise_id": str(plant.world.enterprise_a),
        "method": "mass_balance",
        "claimed_recycled_kg": 50,
    }
    first = await plant.client.post(CERTIFICATES, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await plant.client.post(CERTIFICATES, json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    ledger = await credits(plant, plant.world.enterprise_b)
    assert total(entries(ledger, "debit")) == -50
    assert balances(ledger)[(AL, POST)] == (Decimal("7.6"), 0)
    listed = await plant.client.get(CERTIFICATES, headers=plant.b)
    assert [c["number"] for c in listed.json()["items"]] == [first.json()["number"]]
    other = await plant.client.post(
        CERTIFICATES, json={**body, "claimed_recycled_kg": 1}, headers=headers
    )
    assert_problem(other, 422, "idempotency_key_reused")


async def test_the_holder_certifies_a_product_it_bought_from_the_producers_credits(
    plant: Plant,
) -> None:
    """B sells an ingot to A. A may certify it proportionally (B's credits for that lot are
    spent: a kilogram is claimed once), but has no credits of its own for a mass balance."""
    (lot,) = (await melt(plant, [96])).products
    shipped = await dispatch(plant, [lot["id"]], plant.custody.point_a, source=plant.smelter)
    assert shipped.status_code == 201, shipped.text
    received = await plant.client.post(
        f"/api/v1/shipments/{shipped.json()['id']}/receipt",
        json={"items": [{"lot_id": lot["id"], "received_kg": 96}]},
        headers=plant.world.a_admin.headers,
    )
    assert received.status_code == 201, received.text
    c = plant.c_admin.enterprise_id
    assert c is not None
    a = plant.world.a_admin.headers
    assert_problem(await issue(plant, lot, c, "mass_balance", a, claimed_recycled_kg=1), 409)
    response = await issue(plant, lot, c, headers=a)
    assert response.status_code == 201, response.text
    certificate = response.json()
    assert certificate["issuer_enterprise_id"] == str(plant.world.enterprise_a)
    assert certificate["debited_enterprise_id"] == str(plant.world.enterprise_b)
    assert claimed(certificate) == (Decimal("57.6"), Decimal("19.2"))
    assert balances(await credits(plant, plant.world.enterprise_b)) == {
        (AL, POST): (0, 0),
        (AL, PRE): (0, 0),
    }
    # The producer sees the certificate that spent its credits.
    seen = await plant.client.get(f"{CERTIFICATES}/{certificate['id']}", headers=plant.b)
    assert seen.status_code == 200, seen.text


async def test_a_voided_product_is_not_certified(plant: Plant) -> None:
    made = await melt(plant, [96])
    assert (await void(plant, made.run["id"])).status_code == 200
    assert (await get_lot(plant, made.products[0]["id"]))["status"] == "voided"
    assert_problem(await issue(plant, made.products[0], plant.world.enterprise_a), 409)


# --- reading and listing ----------------------------------------------------------------------


async def test_who_reads_and_lists_a_certificate(plant: Plant) -> None:
    (lot,) = (await melt(plant, [96])).products
    world = plant.world
    response = await issue(plant, lot, world.enterprise_a)
    assert response.status_code == 201, response.text
    issued = response.json()
    path = f"{CERTIFICATES}/{issued['id']}"
    for who in (world.b_admin, world.a_admin, world.zunyi_supervisor, world.admin):
        seen = await plant.client.get(path, headers=who.headers)
        assert seen.status_code == 200, (who.role, seen.text)
        assert seen.json() == issued
        assert seen.headers["etag"]
        listed = await plant.client.get(CERTIFICATES, headers=who.headers)
        assert listed.status_code == 200, listed.text
        assert issued["id"] in [c["id"] for c in listed.json()["items"]]
    for who in (plant.c_admin, world.guiyang_supervisor):
        assert_problem(await plant.client.get(path, headers=who.headers), 404, "not_found")
        listed = await plant.client.get(CERTIFICATES, headers=who.headers)
        assert listed.status_code == 200 and listed.json()["items"] == []
    assert_problem(await plant.client.get(f"{CERTIFICATES}/{uuid.uuid4()}", headers=plant.b), 404)
    assert_problem(await plant.client.get(CERTIFICATES), 401)


async def test_the_list_pages(plant: Plant, session: AsyncSession) -> None:
    made = await melt(plant, [48, 48, 48, 48])
    numbers = []
    for product in made.products:
        response = await issue(plant, product, plant.world.enterprise_a)
        assert response.status_code == 201, response.text
        numbers.append(response.json()["number"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await plant.client.get(
            CERTIFICATES, params=params, headers=plant.world.a_admin.headers
        )
        assert page.status_code == 200, page.text
        seen += [c["number"] for c in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert seen == numbers


# --- revocation -------------------------------------------------------------------------------


async def test_the_issuer_revokes_verification_says_so_and_the_credits_come_back(
    plant: Plant,
) -> None:
    (lot,) = (await melt(plant, [96])).products
    response = await issue(
        plant, lot, plant.world.enterprise_a, "mass_balance", claimed_recycled_kg=70
    )
    assert response.status_code == 201, response.text
    issued = response.json()
    assert balances(await credits(plant, plant.world.enterprise_b))[(AL, PRE)] == (
        Decimal("6.8"),
        0,
    )

    revoked = await revoke(plant, issued, reason="the lot failed its assay")
    assert revoked.status_code == 200, revoked.text
    body = revoked.json()
    assert body["status"] == "revoked" and body["revocation_reason"] == "the lot failed its assay"
    assert body["version"] == issued["version"] + 1
    assert body["payload_canonical"] == issued["payload_canonical"]  # what was signed stays
    revoked_at = datetime.fromisoformat(body["revoked_at"])
    assert revoked_at >= datetime.fromisoformat(issued["issued_at"])

    verified = await public(plant, issued["number"])
    assert verified["status"] == "revoked"
    assert verified["revocation_reason"] == "the lot failed its assay"
    assert datetime.fromisoformat(verified["revoked_at"]) == revoked_at
    assert verified["payload_canonical"] == issued["payload_canonical"]

    ledger = await credits(plant, plant.world.enterprise_b)
    restored = entries(ledger, "restore")
    assert total(restored) == 70 and {e["certificate_id"] for e in restored} == {issued["id"]}
    assert balances(ledger) == {
        (AL, POST): (Decimal("57.6"), 0),
        (AL, PRE): (Decimal("19.2"), 0),
    }

    history = await plant.client.get(f"/api/v1/lots/{lot['id']}/history", headers=plant.b)
    assert history.status_code == 200, history.text
    events = [e for e in history.json() if e["type"] == "certificate.revoked"]
    assert len(events) == 1
    assert events[0]["subject_id"] == issued["id"]
    assert events[0]["payload"]["reason"] == "the lot failed its assay"
    assert events[0]["payload"]["number"] == issued["number"]
    assert events[0]["payload"]["restored_g"] == 70_000
    assert [e["type"] for e in history.json()].count("certificate.issued") == 1

    again = await revoke(plant, issued)
    assert_problem(again, 409)
    assert total(entries(await credits(plant, plant.world.enterprise_b), "restore")) == 70


async def test_who_may_revoke(plant: Plant, session: AsyncSession) -> None:
    (lot,) = (await melt(plant, [96])).products
    world = plant.world
    b_viewer = await make_key(session, Role.viewer, world.enterprise_b)
    await session.commit()
    response = await issue(plant, lot, world.enterprise_a, mass_kg=10)
    assert response.status_code == 201, response.text
    issued = response.json()

    for who, status in (
        (world.province_inspector, 403),  # an authority in jurisdiction, but no supervisor
        (world.a_admin, 403),  # the recipient sees it, may not revoke it
        (b_viewer, 403),
        (plant.c_admin, 404),  # a foreign enterprise does not see it
        (world.guiyang_supervisor, 404),  # outside the jurisdiction
    ):
        assert_problem(await revoke(plant, issued, who.headers), status)
    assert (await public(plant, issued["number"]))["status"] == "valid"

    by_supervisor = await revoke(plant, issued, world.zunyi_supervisor.headers, "audit finding")
    assert by_supervisor.status_code == 200, by_supervisor.text
    verified = await public(plant, issued["number"])
    assert (verified["status"], verified["revocation_reason"]) == ("revoked", "audit finding")
    events = await session.execute(
        text(
            "SELECT actor_role, payload->>'reason' FROM event"
            " WHERE type = 'certificate.revoked' AND subject_id = :s"
        ),
        {"s": issued["id"]},
    )
    assert events.all() == [("supervisor", "audit finding")]
    assert_problem(await revoke(plant, issued, world.province_supervisor.headers), 409)
    assert_problem(await revoke(plant, {"id": str(uuid.uuid4())}), 404)
    short = await plant.client.post(
        f"{CERTIFICATES}/{issued['id']}/revoke", json={"reason": ""}, headers=plant.b
    )
    assert_problem(short, 422)
