"""The credit ledger over HTTP (DESIGN §2.6): products credit their recycled kilograms, once; a
void takes them back unless they were claimed; expiry after the accounting period; revocation
gives claims back; the ledger is append-only; who may read it."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Json
from tests.credits.conftest import (
    balances,
    credits,
    entries,
    issue,
    kg,
    melt,
    new_enterprise,
    total,
)
from tests.custody.conftest import (
    Plant,
    assert_problem,
    at_centre,
    get_lot,
    run,
    take,
    to_smelter,
    void,
)

AL = "aluminium"
POST, PRE = "post_consumer", "pre_consumer"


def assert_consistent(ledger: Json) -> None:
    """Every balance (with what expired of it) is the sum of its entries, and never negative."""
    for (metal, recycled_class), (balance, expired) in balances(ledger).items():
        rows = [e for e in entries(ledger, recycled_class=recycled_class) if e["metal"] == metal]
        assert total(rows) == balance + expired, (metal, recycled_class)
        assert balance >= 0 and expired >= 0


# --- crediting --------------------------------------------------------------------------------


async def test_a_melt_credits_the_recycled_kilograms_of_each_product(plant: Plant) -> None:
    """Two 96 kg ingots of the standard melt: each 60 % post-, 20 % pre-consumer."""
    made = await melt(plant, [96, 96])
    ledger = await credits(plant, plant.world.enterprise_b)
    assert ledger["enterprise_id"] == str(plant.world.enterprise_b)
    assert balances(ledger) == {
        (AL, POST): (Decimal("115.2"), 0),
        (AL, PRE): (Decimal("38.4"), 0),
    }
    credited = entries(ledger, "credit")
    assert len(credited) == len(ledger["items"]) == 4
    assert sorted((e["lot_id"], e["recycled_class"], kg(e["kg"])) for e in credited) == sorted(
        (p["id"], c, Decimal(g)) for p in made.products for c, g in ((POST, "57.6"), (PRE, "19.2"))
    )
    assert {e["transformation_id"] for e in credited} == {made.run["id"]}
    assert all(e["certificate_id"] is None for e in credited)
    assert_consistent(ledger)
    # No one else was credited: A collected the scrap, C saw nothing.
    assert (await credits(plant, plant.world.enterprise_a, plant.world.a_admin.headers))[
        "balances"
    ] == []


async def test_only_the_recycled_classes_a_product_holds_are_credited(plant: Plant) -> None:
    made = await melt(plant, [40], post_kg=0, pre_kg=10, primary_kg=30, dross_kg=0)
    assert made.products[0]["composition"] == {
        "post_consumer_kg": 0,
        "pre_consumer_kg": 10,
        "primary_kg": 30,
    }
    ledger = await credits(plant, plant.world.enterprise_b)
    assert balances(ledger) == {(AL, POST): (0, 0), (AL, PRE): (Decimal(10), 0)}
    assert [e["recycled_class"] for e in ledger["items"]] == [PRE]  # no zero entry


async def test_casting_a_credited_product_credits_nothing_again(
    plant: Plant, session: AsyncSession
) -> None:
    """Molten metal from the standard melt is cast into ingots: the recycled kilograms were
    credited when the molten lot was made; counting them again would let B claim 229.2 kg of
    post-consumer aluminium from 120 kg of scrap."""
    (molten,) = (await melt(plant, [192])).products
    cast = await run(
        plant,
        facility_id=plant.smelter,
        process="casting",
        inputs=[take(molten)],
        outputs=[{"kind": "product", "metal": AL, "kg": 190, "product_form": "ingot"}],
        losses=[{"kind": "dross", "kg": 2}],
    )
    assert cast.status_code == 201, cast.text
    assert cast.json()["outputs"][0]["composition"]["post_consumer_kg"] == 114
    ledger = await credits(plant, plant.world.enterprise_b)
    assert balances(ledger) == {
        (AL, POST): (Decimal("115.2"), 0),
        (AL, PRE): (Decimal("38.4"), 0),
    }
    assert len(entries(ledger, "credit")) == 2  # the molten lot's
    # The molten lot is consumed: its metal lives on in the ingot, which is what is certified.
    recipient = await new_enterprise(session)
    refused = await issue(plant, molten, recipient)
    assert refused.status_code == 409, refused.text
    assert "consumed" in refused.json()["detail"]
    # Voiding the cast takes back nothing and leaves the melt's credits.
    assert (await void(plant, cast.json()["id"])).status_code == 200
    assert balances(await credits(plant, plant.world.enterprise_b))[(AL, POST)][0] == Decimal(
        "115.2"
    )


async def test_a_remelt_with_fresh_scrap_credits_only_the_fresh_share(plant: Plant) -> None:
    """A 96 kg ingot (57.6 kg post-consumer) is melted again with 104 kg of new post-consumer
    scrap into 200 kg: the pool holds 161.6 kg post-consumer, of which 104 kg are new; the product
    holds all 161.6 kg and earns 104 kg."""
    (ingot,) = (await melt(plant, [96], post_kg=60, pre_kg=20, primary_kg=20, dross_kg=4)).products
    before = balances(await credits(plant, plant.world.enterprise_b))
    assert before[(AL, POST)] == (Decimal("57.6"), 0)
    scrap = await melt_inputs(plant, 104)
    remelt = await run(
        plant,
        facility_id=plant.smelter,
        process="melting",
        inputs=[take(ingot), take(scrap)],
        outputs=[{"kind": "product", "metal": AL, "kg": 200, "product_form": "ingot"}],
    )
    assert remelt.status_code == 201, remelt.text
    assert kg(remelt.json()["outputs"][0]["composition"]["post_consumer_kg"]) == Decimal("161.6")
    ledger = await credits(plant, plant.world.enterprise_b)
    assert balances(ledger)[(AL, POST)] == (Decimal("161.6"), 0)
    assert balances(ledger)[(AL, PRE)] == (Decimal("19.2"), 0)  # the ingot's, not again
    (fresh,) = [
        e for e in entries(ledger, "credit") if e["transformation_id"] == remelt.json()["id"]
    ]
    assert (fresh["recycled_class"], kg(fresh["kg"])) == (POST, 104)
    assert_consistent(ledger)


async def melt_inputs(plant: Plant, post_kg: float) -> Json:
    """Post-consumer scrap from A's point, at B's smelter."""
    (lot,) = await to_smelter(plant, await at_centre(plant, post_kg))
    return lot


# --- void -------------------------------------------------------------------------------------


async def test_voiding_the_run_reverses_its_credits(plant: Plant) -> None:
    made = await melt(plant, [96, 96])
    voided = await void(plant, made.run["id"])
    assert voided.status_code == 200, voided.text
    ledger = await credits(plant, plant.world.enterprise_b)
    assert balances(ledger) == {(AL, POST): (0, 0), (AL, PRE): (0, 0)}
    reversed_ = entries(ledger, "reversal")
    assert len(reversed_) == 4
    assert sorted((e["lot_id"], e["recycled_class"], kg(e["kg"])) for e in reversed_) == sorted(
        (e["lot_id"], e["recycled_class"], -kg(e["kg"])) for e in entries(ledger, "credit")
    )
    assert {e["transformation_id"] for e in reversed_} == {made.run["id"]}
    assert_consistent(ledger)


async def test_void_after_a_certificate_is_refused_and_changes_nothing(
    plant: Plant, session: AsyncSession
) -> None:
    made = await melt(plant, [96, 96])
    certified = await issue(plant, made.products[0], plant.world.enterprise_a)
    assert certified.status_code == 201, certified.text
    before = await credits(plant, plant.world.enterprise_b)
    refused = await void(plant, made.run["id"])
    assert_problem(refused, 409, "credits_claimed")
    assert certified.json()["number"] in refused.json()["detail"]
    assert await credits(plant, plant.world.enterprise_b) == before
    for product in made.products:
        assert (await get_lot(plant, product["id"]))["status"] == "active"
    status = await session.scalar(
        text("SELECT status FROM transformation WHERE id = :i"), {"i": uuid.UUID(made.run["id"])}
    )
    assert status == "recorded"
    # Revoked, the claim comes back and the run can be voided to nothing.
    revoked = await plant.client.post(
        f"/api/v1/certificates/{certified.json()['id']}/revoke",
        json={"reason": "issued in error"},
        headers=plant.b,
    )
    assert revoked.status_code == 200, revoked.text
    assert (await void(plant, made.run["id"])).status_code == 200
    after = await credits(plant, plant.world.enterprise_b)
    assert balances(after) == {(AL, POST): (0, 0), (AL, PRE): (0, 0)}
    assert_consistent(after)


async def test_void_after_another_lots_certificate_drew_its_credits_is_refused(
    plant: Plant,
) -> None:
    """A mass-balance claim on a later product spends its own credits first, then the oldest:
    those of the first run, which can then no longer be taken back."""
    first = await melt(plant, [96])
    second = await melt(plant, [96])
    claimed = await issue(
        plant,
        second.products[0],
        plant.world.enterprise_a,
        "mass_balance",
        claimed_recycled_kg=90,
        recycled_class=POST,
    )
    assert claimed.status_code == 201, claimed.text
    ledger = await credits(plant, plant.world.enterprise_b)
    debits = {e["lot_id"]: kg(e["kg"]) for e in entries(ledger, "debit")}
    assert debits == {
        second.products[0]["id"]: Decimal("-57.6"),
        first.products[0]["id"]: Decimal("-32.4"),
    }
    assert_problem(await void(plant, first.run["id"]), 409, "credits_claimed")
    assert await credits(plant, plant.world.enterprise_b) == ledger


# --- expiry -----------------------------------------------------------------------------------


async def _time_travel(session: AsyncSession, transformation_id: str) -> None:
    """Time travel: the credits a run earned reach the end of their accounting period (a year
    cannot pass in a test, so the tranche's expiry is moved into the past instead)."""
    await session.execute(
        text(
            "UPDATE credit_tranche SET expires_at = now() - interval '1 second',"
            " credited_at = now() - interval '366 days' WHERE transformation_id = :t"
        ),
        {"t": uuid.UUID(transformation_id)},
    )
    await session.commit()


async def test_credits_are_earned_for_the_configured_period(
    plant: Plant, session: AsyncSession
) -> None:
    made = await melt(plant, [96])
    row = (
        await session.execute(
            text(
                "SELECT min(expires_at - credited_at), max(expires_at - credited_at)"
                " FROM credit_tranche WHERE transformation_id = :t"
            ),
            {"t": uuid.UUID(made.run["id"])},
        )
    ).one()
    assert row[0].days == row[1].days == 365  # settings.credit_period_days by default


async def test_expired_credits_leave_the_balance_and_cannot_be_spent(
    plant: Plant, session: AsyncSession
) -> None:
    old = await melt(plant, [96])  # 57.6 kg post, 19.2 kg pre
    new = await melt(plant, [48], post_kg=60, pre_kg=20, primary_kg=20, dross_kg=52)
    # new: 48 kg holding 28.8 kg post, 9.6 kg pre
    await _time_travel(session, old.run["id"])

    ledger = await credits(plant, plant.world.enterprise_b)
    assert balances(ledger) == {
        (AL, POST): (Decimal("28.8"), Decimal("57.6")),
        (AL, PRE): (Decimal("9.6"), Decimal("19.2")),
    }
    assert entries(ledger, "expiry") == []  # written off at the account's next movement
    assert_consistent(ledger)

    # A claim the unexpired credits cannot cover is refused, expired credits or not.
    short = await issue(
        plant, new.products[0], plant.world.enterprise_a, "mass_balance", claimed_recycled_kg=38.5
    )
    body = assert_problem(short, 409, "insufficient_credits")
    assert body["balance_kg"] == pytest.approx(38.4)
    # The lot's own expired credits do not back a proportional claim either: it draws the rest.
    own = await issue(plant, old.products[0], plant.world.enterprise_a)
    assert_problem(own, 409, "insufficient_credits")

    fits = await issue(
        plant, new.products[0], plant.world.enterprise_a, "mass_balance", claimed_recycled_kg=30
    )
    assert fits.status_code == 201, fits.text
    ledger = await credits(plant, plant.world.enterprise_b)
    expired = entries(ledger, "expiry")
    assert sorted((e["lot_id"], e["recycled_class"], kg(e["kg"])) for e in expired) == sorted(
        [
            (old.products[0]["id"], POST, Decimal("-57.6")),
            (old.products[0]["id"], PRE, Decimal("-19.2")),
        ]
    )
    assert {e["lot_id"] for e in entries(ledger, "debit")} == {new.products[0]["id"]}
    assert balances(ledger) == {(AL, POST): (0, 0), (AL, PRE): (Decimal("8.4"), 0)}
    assert_consistent(ledger)
    # Nothing expired stays to be taken back by a void: the old run's credits are gone.
    assert_problem(await void(plant, old.run["id"]), 409, "credits_claimed")


async def test_revoking_a_claim_on_expired_credits_gives_back_only_the_live_part(
    plant: Plant, session: AsyncSession
) -> None:
    old = await melt(plant, [96])
    new = await melt(plant, [96])
    claimed = await issue(
        plant,
        new.products[0],
        plant.world.enterprise_a,
        "mass_balance",
        claimed_recycled_kg=90,
        recycled_class=POST,
    )  # 57.6 kg from its own credits, 32.4 kg from the old run's
    assert claimed.status_code == 201, claimed.text
    await _time_travel(session, old.run["id"])
    revoked = await plant.client.post(
        f"/api/v1/certificates/{claimed.json()['id']}/revoke",
        json={"reason": "customer returned the metal"},
        headers=plant.b,
    )
    assert revoked.status_code == 200, revoked.text
    ledger = await credits(plant, plant.world.enterprise_b)
    restored = entries(ledger, "restore")
    assert [(e["lot_id"], kg(e["kg"])) for e in restored] == [
        (new.products[0]["id"], Decimal("57.6"))
    ]
    assert restored[0]["certificate_id"] == claimed.json()["id"]
    # The old run's post-consumer rest (25.2 kg) has expired; its pre-consumer too.
    assert balances(ledger) == {
        (AL, POST): (Decimal("57.6"), Decimal("25.2")),
        (AL, PRE): (Decimal("19.2"), Decimal("19.2")),
    }
    assert_consistent(ledger)


# --- the table itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE credit_entry SET grams = grams + 1",
        "DELETE FROM credit_entry",
        "TRUNCATE credit_entry CASCADE",
    ],
)
async def test_the_ledger_is_append_only(
    plant: Plant, session: AsyncSession, statement: str
) -> None:
    await melt(plant, [96])
    assert await session.scalar(text("SELECT count(*) FROM credit_entry")) > 0
    with pytest.raises(DBAPIError, match="append-only"):
        async with session.begin_nested():
            await session.execute(text(statement))
    ledger = await credits(plant, plant.world.enterprise_b)
    assert len(ledger["items"]) == 2
    assert_consistent(ledger)


async def test_an_account_cannot_go_below_zero(plant: Plant, session: AsyncSession) -> None:
    await melt(plant, [96])
    with pytest.raises(DBAPIError, match="balance_not_negative"):
        async with session.begin_nested():
            await session.execute(
                text(
                    "UPDATE credit_account SET balance_g = balance_g - 57601"
                    " WHERE metal = 'aluminium'"
                )
            )


# --- reading ----------------------------------------------------------------------------------


async def test_who_reads_an_enterprises_credits(plant: Plant) -> None:
    await melt(plant, [96])
    world = plant.world
    path = f"/api/v1/enterprises/{world.enterprise_b}/credits"
    for who in (world.b_admin, world.zunyi_supervisor, world.province_inspector, world.admin):
        seen = await plant.client.get(path, headers=who.headers)
        assert seen.status_code == 200, (who.role, seen.text)
        assert len(seen.json()["items"]) == 2
    for who in (world.a_admin, plant.c_admin, world.guiyang_supervisor):
        assert_problem(await plant.client.get(path, headers=who.headers), 404, "not_found")
    assert_problem(await plant.client.get(path), 401)
    unknown = f"/api/v1/enterprises/{uuid.uuid4()}/credits"
    assert_problem(await plant.client.get(unknown, headers=world.admin.headers), 404)


async def test_the_ledger_pages_and_filters_by_metal(plant: Plant) -> None:
    await melt(plant, [96, 96])
    whole = await credits(plant, plant.world.enterprise_b)
    paged = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = await plant.client.get(
            f"/api/v1/enterprises/{plant.world.enterprise_b}/credits",
            params=params,
            headers=plant.b,
        )
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= 1
        paged += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert paged == whole["items"] and len(paged) == 4
    copper = await credits(plant, plant.world.enterprise_b, metal="copper")
    assert copper["items"] == [] and copper["balances"] == []
    assert len((await credits(plant, plant.world.enterprise_b, metal=AL))["items"]) == 4
    bad = await plant.client.get(
        f"/api/v1/enterprises/{plant.world.enterprise_b}/credits",
        params={"metal": "gold"},
        headers=plant.b,
    )
    assert_problem(bad, 422)


async def test_a_recipient_is_not_credited(plant: Plant, session: AsyncSession) -> None:
    """Certificates move claims, not credits: the recipient's ledger stays empty."""
    made = await melt(plant, [96])
    recipient = await new_enterprise(session)
    assert (await issue(plant, made.products[0], recipient)).status_code == 201
    ledger = await credits(plant, recipient, plant.world.admin.headers)
    assert ledger["items"] == [] and ledger["balances"] == []
