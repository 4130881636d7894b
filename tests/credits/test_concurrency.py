"""Acceptance (issue 5): 100 concurrent mass-balance issuances against a balance that covers only
some of them. Real concurrent requests on the app's own engine: every request commits."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from sqlalchemy import text

from domain.actor import SYSTEM
from domain.registry import service as registry
from tests.conftest import Json, Live
from tests.credits.conftest import CERTIFICATES, balances, credits, entries, kg, melt, total
from tests.custody.conftest import Plant, build_custody, build_plant
from tests.factories import random_uscc

REQUESTS = 100
LOTS = 4


async def _plant(live: Live, recipients: int) -> tuple[Plant, list[uuid.UUID]]:
    """The custody plant on the committing app, and that many recipient enterprises."""
    async with live.sessionmaker()() as session:
        plant = await build_plant(session, await build_custody(session, live.world, live.client))
        ids = [
            (
                await registry.create_enterprise(
                    session,
                    SYSTEM,
                    name=f"processor {i}",
                    uscc=random_uscc("520102"),
                    roles=["processor"],
                    region_code="520102",
                )
            ).id
            for i in range(recipients)
        ]
        await session.commit()
    return plant, ids


def _claim(lot: Json, recipient: uuid.UUID, kg: float) -> Json:
    return {
        "lot_id": lot["id"],
        "recipient_enterprise_id": str(recipient),
        "method": "mass_balance",
        "mass_kg": kg,
        "claimed_recycled_kg": kg,
    }


async def test_concurrent_mass_balance_claims_never_overdraw_the_balance(live: Live) -> None:
    plant, recipients = await _plant(live, REQUESTS)
    # Four 48 kg ingots: B holds 115.2 kg post- and 38.4 kg pre-consumer credits, 153.6 kg.
    made = await melt(plant, [48] * LOTS)
    b = plant.world.enterprise_b
    initial = balances(await credits(plant, b))
    assert initial == {
        ("aluminium", "post_consumer"): (Decimal("115.2"), 0),
        ("aluminium", "pre_consumer"): (Decimal("38.4"), 0),
    }
    # 100 claims of 1.9 kg (190 kg) each on 1.9 kg of a lot, 25 per lot (47.5 kg of 48 kg), each
    # to its own recipient: whatever the order, 80 fit (152 kg) and the 81st would need 1.9 kg
    # of the 1.6 kg left.
    bodies = [_claim(made.products[i % LOTS], r, 1.9) for i, r in enumerate(recipients)]
    responses = await asyncio.gather(
        *(live.client.post(CERTIFICATES, json=body, headers=plant.b) for body in bodies)
    )

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, [
        r.text for r in responses if r.status_code not in (201, 409)
    ]
    refused = [r.json() for r in responses if r.status_code == 409]
    assert {p["code"] for p in refused} == {"insufficient_credits"}
    issued = [r.json() for r in responses if r.status_code == 201]
    assert len(issued) == 80 and len(refused) == 20
    claimed = sum((kg(c["claimed"]["total_kg"]) for c in issued), Decimal(0))
    assert claimed == Decimal(152)
    assert len({c["number"] for c in issued}) == 80

    ledger = await credits(plant, b)
    now = balances(ledger)
    left = sum((balance for balance, _ in now.values()), Decimal(0))
    assert left == sum((balance for balance, _ in initial.values()), Decimal(0)) - claimed
    assert now == {
        ("aluminium", "post_consumer"): (0, 0),
        ("aluminium", "pre_consumer"): (Decimal("1.6"), 0),
    }
    for (metal, recycled_class), (balance, _) in now.items():
        rows = [
            e
            for e in ledger["items"]
            if (e["metal"], e["recycled_class"]) == (metal, recycled_class)
        ]
        assert total(rows) == balance >= 0
    debits = entries(ledger, "debit")
    assert total(debits) == -claimed
    by_certificate: dict[str, Decimal] = {}
    for entry in debits:
        by_certificate[entry["certificate_id"]] = by_certificate.get(
            entry["certificate_id"], Decimal(0)
        ) - kg(entry["kg"])
    assert by_certificate == {c["id"]: Decimal("1.9") for c in issued}

    # The database agrees: tranches hold what accounts hold, certificates what was answered.
    async with live.sessionmaker()() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT sum(balance_g) FROM credit_account WHERE enterprise_id = :b),"
                    " (SELECT sum(remaining_g) FROM credit_tranche WHERE enterprise_id = :b),"
                    " (SELECT count(*) FROM certificate WHERE debited_enterprise_id = :b)"
                ),
                {"b": uuid.UUID(str(b))},
            )
        ).one()
    assert tuple(row) == (1600, 1600, 80)


async def test_revocations_racing_claims_keep_the_ledger_exact(live: Live) -> None:
    """Four certificates of 30 kg are revoked while 40 claims of 1.5 kg draw on the same
    tranches: revocations hold a lot and wait for the account, claims hold the account and write
    entries referring to those lots. Whatever the order: no deadlock, no 500, and the balance is
    what was credited less what valid certificates claim."""
    plant, recipients = await _plant(live, 44)
    made = await melt(plant, [48] * LOTS)
    first = []
    for i, product in enumerate(made.products):
        response = await live.client.post(
            CERTIFICATES, json=_claim(product, recipients[i], 30), headers=plant.b
        )
        assert response.status_code == 201, response.text
        first.append(response.json())
    revocations = [
        live.client.post(
            f"{CERTIFICATES}/{c['id']}/revoke", json={"reason": "recalled"}, headers=plant.b
        )
        for c in first
    ]
    claims = [
        live.client.post(
            CERTIFICATES, json=_claim(made.products[i % LOTS], r, 1.5), headers=plant.b
        )
        for i, r in enumerate(recipients[LOTS:])
    ]
    responses = await asyncio.gather(*revocations, *claims)
    revoked, issued = responses[:LOTS], responses[LOTS:]
    assert [r.status_code for r in revoked] == [200] * LOTS, [r.text for r in revoked]
    assert {r.status_code for r in issued} <= {201, 409}, [r.text for r in issued]
    assert {r.json()["code"] for r in issued if r.status_code == 409} <= {"insufficient_credits"}
    valid = [r.json() for r in issued if r.status_code == 201]
    assert len(valid) >= 22  # 33.6 kg were free before any revocation: 22 claims of 1.5 kg

    ledger = await credits(plant, plant.world.enterprise_b)
    claimed = sum((kg(c["claimed"]["total_kg"]) for c in valid), Decimal(0))
    left = sum((balance for balance, _ in balances(ledger).values()), Decimal(0))
    assert left == Decimal("153.6") - claimed >= 0
    assert total(ledger["items"]) == left
    assert total(entries(ledger, "restore")) == 120
    assert -total(entries(ledger, "debit")) == claimed + 120
