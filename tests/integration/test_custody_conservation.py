"""Any sequence of registrations, splits, dispatches, receipts (with refusals and weight
differences) and cancels keeps every lot's composition equal to its mass, and the whole system's
mass balance: registered = active + in transit + refused + recorded transit differences."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.actor import SYSTEM, Actor, PrincipalKind, Role
from domain.errors import DomainError
from domain.lots import service as lots
from domain.lots.rules import ConsumerClass, Metal
from domain.registry import service as registry
from domain.shipments import service as shipments
from integrations.database import create_engine
from integrations.vault import AesGcmVault
from tests.databases import in_thread
from tests.factories import random_uscc

VAULT = AesGcmVault.from_secret(b"k" * 32)
TOLERANCES = {"aluminium": Decimal("0.01"), "copper": Decimal("0.01")}

register = st.tuples(
    st.just("register"), st.integers(0, 1), st.integers(1, 5_000_000), st.booleans()
)
split = st.tuples(st.just("split"), st.integers(0, 50), st.integers(2, 4), st.integers(1, 10**6))
ship = st.tuples(st.just("ship"), st.integers(0, 50), st.integers(1, 3), st.integers(0, 2))
receive = st.tuples(
    st.just("receive"),
    st.integers(0, 50),
    st.lists(
        st.tuples(st.integers(900, 1100), st.sampled_from([0, 0, 1, 2])), min_size=1, max_size=4
    ),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 50))
operations = st.lists(st.one_of(register, split, ship, receive, cancel), min_size=1, max_size=25)


@dataclass
class Place:
    facility_id: uuid.UUID
    actor: Actor


async def _network(session: AsyncSession) -> list[Place]:
    places = []
    for index, (region, kind) in enumerate(
        [
            ("520102", "collection_point"),
            ("520302", "collection_point"),
            ("520402", "pretreatment_center"),
        ]
    ):
        enterprise = await registry.create_enterprise(
            session,
            SYSTEM,
            name=f"E{index}",
            uscc=random_uscc(region),
            roles=["recycler", "pretreater"],
            region_code=region,
        )
        facility = await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=enterprise.id,
            name=f"F{index}",
            kind=kind,
            region_code=region,
            address="a",
        )
        actor = Actor(
            uuid.uuid4(), PrincipalKind.api_key, Role.operator, enterprise_id=enterprise.id
        )
        places.append(Place(facility.id, actor))
    return places


async def _lots_at(
    session: AsyncSession, facility_id: uuid.UUID, statuses: tuple[str, ...]
) -> list[uuid.UUID]:
    rows = await session.execute(
        text("SELECT id FROM lot WHERE holder_facility_id = :f AND status = ANY(:s) ORDER BY id"),
        {"f": facility_id, "s": list(statuses)},
    )
    return [r[0] for r in rows]


async def _apply(
    session: AsyncSession, places: list[Place], op: tuple, registered: list[int]
) -> None:  # type: ignore[type-arg]
    kind = op[0]
    if kind == "register":
        _, where, grams, post = op
        place = places[where]
        lot = await lots.register_lot(
            session,
            place.actor,
            VAULT,
            lots.Registration(
                facility_id=place.facility_id,
                metal=Metal.aluminium,
                category="GB13586-CAST",
                net_g=grams,
                consumer_class=ConsumerClass.post_consumer if post else ConsumerClass.pre_consumer,
                channel="offline",
                collected_at=datetime.now(UTC) - timedelta(hours=1),
                seller=lots.Seller(kind="organisation", name="S"),
            ),
        )
        registered.append(lot.net_g)
    elif kind == "split":
        _, pick, parts, seed = op
        candidates = [
            (p, lot_id)
            for p in places
            for lot_id in await _lots_at(session, p.facility_id, ("active", "refused"))
        ]
        if not candidates:
            return
        place, lot_id = candidates[pick % len(candidates)]
        net = await session.scalar(text("SELECT net_g FROM lot WHERE id = :i"), {"i": lot_id})
        if net < parts:
            return
        cut = [
            net // parts + (1 if i < (seed % parts) and net % parts > i else 0)
            for i in range(parts)
        ]
        cut[-1] += net - sum(cut)
        await lots.split_lot(session, place.actor, lot_id, cut)
    elif kind == "ship":
        _, pick, count, target = op
        senders = [
            p for p in places if await _lots_at(session, p.facility_id, ("active", "refused"))
        ]
        if not senders:
            return
        sender = senders[pick % len(senders)]
        available = await _lots_at(session, sender.facility_id, ("active", "refused"))
        receivers = [p for p in places if p is not sender]
        await shipments.dispatch(
            session,
            sender.actor,
            shipments.Dispatch(
                sender.facility_id, receivers[target % 2].facility_id, available[:count]
            ),
        )
    else:
        pending = (
            await session.execute(
                text(
                    "SELECT id, from_facility_id, to_facility_id FROM shipment"
                    " WHERE status = 'dispatched' AND from_facility_id = ANY(:f) ORDER BY id"
                ),
                {"f": [p.facility_id for p in places]},
            )
        ).all()
        if not pending:
            return
        shipment_id, source, target = pending[op[1] % len(pending)]
        if kind == "cancel":
            actor = next(p.actor for p in places if p.facility_id == source)
            await shipments.cancel(session, actor, shipment_id, "changed plans")
            return
        actor = next(p.actor for p in places if p.facility_id == target)
        items = (
            await session.execute(
                text(
                    "SELECT lot_id, dispatched_g FROM shipment_item"
                    " WHERE shipment_id = :s ORDER BY lot_id"
                ),
                {"s": shipment_id},
            )
        ).all()
        lines = []
        for index, (lot_id, dispatched) in enumerate(items):
            permille, refusal = op[2][index % len(op[2])]
            received = max(1, dispatched * permille // 1000)
            refused = {0: 0, 1: received, 2: received // 3}[refusal]
            lines.append(
                shipments.ReceiptLine(lot_id, received, refused, "wet" if refused else None)
            )
        await shipments.receive(session, actor, shipment_id, shipments.Receipt(lines), TOLERANCES)


async def _check_invariants(
    session: AsyncSession, places: list[Place], registered: list[int]
) -> None:
    """Over this scenario's lots only: other tests may have committed lots of their own."""
    mine = {"f": [p.facility_id for p in places]}
    bad = await session.scalar(
        text(
            "SELECT count(*) FROM lot WHERE registered_facility_id = ANY(:f)"
            " AND (post_consumer_g + pre_consumer_g + primary_g <> net_g OR net_g <= 0)"
        ),
        mine,
    )
    assert bad == 0
    held = await session.scalar(
        text(
            "SELECT coalesce(sum(net_g), 0) FROM lot WHERE registered_facility_id = ANY(:f)"
            " AND status IN ('active', 'in_transit', 'refused')"
        ),
        mine,
    )
    differences = await session.scalar(
        text(
            "SELECT coalesce(sum(i.difference_g), 0) FROM shipment_item i"
            " JOIN shipment s ON s.id = i.shipment_id"
            " WHERE s.from_facility_id = ANY(:f) AND i.difference_g IS NOT NULL"
        ),
        mine,
    )
    assert sum(registered) == held + differences, (sum(registered), held, differences)


async def _scenario(url: str, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            maker = async_sessionmaker(
                bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            async with maker() as session:
                places = await _network(session)
                registered: list[int] = []
                for op in ops:
                    try:
                        async with session.begin_nested():
                            await _apply(session, places, op, registered)
                    except DomainError:
                        pass  # a refused step changes nothing; the invariants must still hold
                    await _check_invariants(session, places, registered)
            await transaction.rollback()
    finally:
        await engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_custody_conserves_mass(database_url: str, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    in_thread(asyncio.run, _scenario(database_url, ops))
