"""A stateful property test over the services: registrations, splits, shipments (with weight
differences, refusals and cancels), pretreatment and melting runs, and voids, in any order, keep

- every lot's composition equal to its mass;
- the whole network's mass: registered + primary inputs = active + in transit + refused + losses
  + transit differences (products are active lots);
- lineage exact: the upstream contributions of any lot's sources plus its primary metal make its
  mass, to the gram;

and a step that a rule refuses changes nothing at all.

The machine's rules are synchronous, so it drives the async services on an event loop of its own,
on a thread of its own (pytest-asyncio's loop is left alone), over one connection whose
transaction is rolled back at the end of every example. Other tests commit data to the same
database: every query is scoped to this machine's facilities."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    AsyncTransaction,
    async_sessionmaker,
)

from domain.actor import SYSTEM, Actor, PrincipalKind, Role
from domain.errors import DomainError
from domain.lots import service as lots
from domain.lots.rules import ConsumerClass, LotKind, Metal
from domain.registry import service as registry
from domain.shipments import service as shipments
from domain.transformations import service as transformations
from domain.transformations.rules import (
    PRETREATMENT,
    SMELTING,
    DestinationUse,
    LossKind,
    Process,
    ProductForm,
)
from integrations.database import create_engine
from integrations.vault import AesGcmVault
from tests.databases import in_thread
from tests.factories import random_uscc

# Set by the test from the `database_url` fixture: Hypothesis builds the machine itself.
DATABASE_URL: str | None = None

VAULT = AesGcmVault.from_secret(b"m" * 32)
TOLERANCES = {"aluminium": Decimal("0.01"), "copper": Decimal("0.01")}
ADMIN = Actor(uuid.uuid4(), PrincipalKind.api_key, Role.platform_admin)
CATEGORIES = {
    Metal.aluminium: ["GB13586-FRAGMENTS", "GB13586-WROUGHT", "GB13586-CAST"],
    Metal.copper: ["GB13587-I", "GB13587-II"],
}
HELD = ["active", "in_transit", "refused"]
LINEAGE_SAMPLE = 3
LOOSE_LOTS = 5  # no more registrations or splits while this many lots wait to be moved
OUTCOMES: Counter[tuple[str, str]] = Counter()  # over all examples, for a look with -s

T = TypeVar("T")


@dataclass(frozen=True)
class Place:
    facility_id: uuid.UUID
    kind: str
    actor: Actor


# E0 and E1 collect, E2 pretreats, E3 smelts.
NETWORK = [
    ("520102", "collection_point", ["recycler"]),
    ("520302", "collection_point", ["recycler"]),
    ("520402", "pretreatment_center", ["pretreater"]),
    ("520502", "smelter", ["smelter"]),
]


async def _network(session: AsyncSession) -> list[Place]:
    places = []
    for index, (region, kind, roles) in enumerate(NETWORK):
        enterprise = await registry.create_enterprise(
            session,
            SYSTEM,
            name=f"M{index}",
            uscc=random_uscc(region),
            roles=roles,
            region_code=region,
        )
        facility = await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=enterprise.id,
            name=f"MF{index}",
            kind=kind,
            region_code=region,
            address="a",
        )
        actor = Actor(
            uuid.uuid4(), PrincipalKind.api_key, Role.operator, enterprise_id=enterprise.id
        )
        places.append(Place(facility.id, kind, actor))
    return places


def _parts(total: int, count: int, seed: int) -> list[int]:
    """`total` grams in `count` parts of at least 1 g (fewer parts when there are too few grams),
    unevenly after `seed`."""
    count = max(1, min(count, total))
    weights = [1 + (seed >> (4 * i)) % 7 for i in range(count)]
    parts = [max(1, total * w // sum(weights)) for w in weights]
    parts[-1] += total - sum(parts)
    while parts[-1] < 1:  # the floors of the others overshot: take back from the largest
        largest = max(range(count - 1), key=lambda i: parts[i])
        parts[largest] -= 1
        parts[-1] += 1
    return parts


# Picks: a lot by index, and how much of it a run takes (1000 = all of it, else per mille).
picks = st.lists(
    st.tuples(st.integers(0, 10**6), st.one_of(st.just(1000), st.integers(1, 999))),
    min_size=1,
    max_size=3,
)


class CustodyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert DATABASE_URL is not None, "set by the test from the database_url fixture"
        self.loop = asyncio.new_event_loop()
        self.engine = create_engine(DATABASE_URL, pool_size=1)
        self.rng = random.Random(0)
        self.registered_g = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.loop.run_until_complete(self._open())

    async def _open(self) -> None:
        self.connection: AsyncConnection = await self.engine.connect()
        self.transaction: AsyncTransaction = await self.connection.begin()
        self.session: AsyncSession = async_sessionmaker(
            bind=self.connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )()
        self.places = await _network(self.session)
        self.mine = {"f": [p.facility_id for p in self.places]}
        await self._summarise()

    async def _summarise(self) -> None:
        """What is there to act on, for the rules' preconditions (rules that could only skip are
        not drawn, so the steps go to the runs at the end of the chain)."""
        rows = await self._rows(
            "SELECT holder_facility_id, status, count(*) FROM lot"
            " WHERE registered_facility_id = ANY(:f) AND status IN ('active', 'refused')"
            " GROUP BY 1, 2"
        )
        self.movable = sum(n for _, _, n in rows)
        self.active_at = Counter({f: n for f, status, n in rows if status == "active"})
        ((self.pending, self.recorded_runs),) = await self._rows(
            "SELECT (SELECT count(*) FROM shipment WHERE from_facility_id = ANY(:f)"
            "  AND status = 'dispatched'),"
            " (SELECT count(*) FROM transformation WHERE facility_id = ANY(:f)"
            "  AND status = 'recorded')"
        )

    def teardown(self) -> None:
        OUTCOMES.update(self.outcomes)

        async def close() -> None:
            try:
                await self.session.close()
                await self.transaction.rollback()
                await self.connection.close()
            finally:
                await self.engine.dispose()

        try:
            self.loop.run_until_complete(close())
        finally:
            self.loop.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _place(self, facility_id: uuid.UUID) -> Place:
        return next(p for p in self.places if p.facility_id == facility_id)

    @property
    def centre(self) -> Place:
        return self.places[2]

    @property
    def smelter(self) -> Place:
        return self.places[3]

    def _step(self, name: str, action: Callable[[], Awaitable[T | None]]) -> T | None:
        """One step in a savepoint. A refusal (DomainError) must leave everything as it was."""

        async def go() -> T | None:
            before = await self._snapshot()
            refused: DomainError | None = None
            try:
                async with self.session.begin_nested():
                    result = await action()
            except DomainError as error:
                refused = error
            if refused is None:
                self.outcomes[name, "ok" if result is not None else "skipped"] += 1
                await self._summarise()
                return result
            self.outcomes[name, refused.code] += 1
            after = await self._snapshot()
            assert after == before, f"a refused {name} ({refused.code}: {refused}) changed state"
            return None

        return self.loop.run_until_complete(go())

    async def _rows(self, sql: str, **params: Any) -> list[Any]:
        return list((await self.session.execute(text(sql), {**self.mine, **params})).all())

    async def _snapshot(self) -> tuple[Any, ...]:
        """Everything a step could change, in this machine's part of the database."""
        return (
            await self._rows(
                "SELECT id, status, net_g, post_consumer_g, pre_consumer_g, primary_g, version,"
                " holder_facility_id, enterprise_ids FROM lot"
                " WHERE registered_facility_id = ANY(:f) ORDER BY id"
            ),
            await self._rows(
                "SELECT id, status, version FROM shipment WHERE from_facility_id = ANY(:f)"
                " ORDER BY id"
            ),
            await self._rows(
                "SELECT id, status, version FROM transformation WHERE facility_id = ANY(:f)"
                " ORDER BY id"
            ),
            await self._rows(
                "SELECT (SELECT count(*) FROM event WHERE facility_ids && CAST(:f AS uuid[])),"
                " (SELECT count(*) FROM lot_source s JOIN lot l ON l.id = s.lot_id"
                "  WHERE l.registered_facility_id = ANY(:f)),"
                " (SELECT count(*) FROM discrepancy d JOIN shipment s ON s.id = d.shipment_id"
                "  WHERE s.from_facility_id = ANY(:f))"
            ),
        )

    async def _lots_at(
        self, facility_id: uuid.UUID, statuses: list[str]
    ) -> list[tuple[uuid.UUID, int, str]]:
        rows = await self._rows(
            "SELECT id, net_g, metal FROM lot WHERE holder_facility_id = :h"
            " AND status = ANY(:s) ORDER BY code",
            h=facility_id,
            s=statuses,
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def _takes(
        self, place: Place, chosen: list[tuple[int, int]]
    ) -> tuple[list[transformations.Take], Metal] | None:
        """Distinct active lots at `place`, each taken whole or in part; the first one's metal."""
        held = await self._lots_at(place.facility_id, ["active"])
        if not held:
            return None
        takes: dict[uuid.UUID, transformations.Take] = {}
        for pick, permille in chosen:
            lot_id, net, _ = held[pick % len(held)]
            grams = net if permille == 1000 else max(1, net * permille // 1000)
            takes.setdefault(lot_id, transformations.Take(lot_id, grams))
        first = next(m for i, _, m in held if i == next(iter(takes)))
        return list(takes.values()), Metal(first)

    # --- rules ------------------------------------------------------------------------------

    @initialize(seed=st.integers(0, 2**32 - 1))
    def seed(self, seed: int) -> None:
        self.rng = random.Random(seed)

    @precondition(lambda self: self.movable < LOOSE_LOTS)
    @rule(
        where=st.integers(0, 1),
        grams=st.integers(1, 5_000_000),
        post=st.booleans(),
        copper=st.integers(0, 4),
    )
    def register(self, where: int, grams: int, post: bool, copper: int) -> None:
        place = self.places[where]
        metal = Metal.copper if copper == 0 else Metal.aluminium

        async def action() -> int:
            lot = await lots.register_lot(
                self.session,
                place.actor,
                VAULT,
                lots.Registration(
                    facility_id=place.facility_id,
                    metal=metal,
                    category=CATEGORIES[metal][0],
                    net_g=grams,
                    consumer_class=ConsumerClass.post_consumer
                    if post
                    else ConsumerClass.pre_consumer,
                    channel="offline",
                    collected_at=datetime.now(UTC) - timedelta(hours=1),
                    seller=lots.Seller(kind="organisation", name="S"),
                ),
            )
            return lot.net_g

        self.registered_g += self._step("register", action) or 0

    @precondition(lambda self: 0 < self.movable < LOOSE_LOTS)
    @rule(pick=st.integers(0, 10**6), parts=st.integers(2, 3), seed=st.integers(0, 10**6))
    def split(self, pick: int, parts: int, seed: int) -> None:
        async def action() -> bool | None:
            candidates = [
                (place, lot)
                for place in self.places
                for lot in await self._lots_at(place.facility_id, ["active", "refused"])
            ]
            if not candidates:
                return None
            place, (lot_id, net, _) = candidates[pick % len(candidates)]
            cut = _parts(net, parts, seed) if net >= parts else [net, 0]  # too small: refused
            await lots.split_lot(self.session, place.actor, lot_id, cut)
            return True

        self._step("split", action)

    @precondition(lambda self: self.movable > 0)
    @rule(pick=st.integers(0, 10**6), count=st.integers(1, 3), to=st.integers(0, 3))
    def dispatch(self, pick: int, count: int, to: int) -> None:
        async def action() -> bool | None:
            senders = [
                (place, movable)
                for place in self.places
                # Products mostly stay at the smelter, to be melted again or voided.
                if (movable := await self._lots_at(place.facility_id, ["active", "refused"]))
            ]
            if len(senders) > 1 and to != 3:
                senders = [s for s in senders if s[0] is not self.smelter]
            if not senders:
                return None
            sender, movable = senders[pick % len(senders)]
            start = (pick // len(senders)) % len(movable)
            chosen = [lot_id for lot_id, _, _ in (movable[start:] + movable[:start])[:count]]
            # Mostly down the chain (to the centre and the smelter), sometimes anywhere else.
            downstream = [p for p in self.places[2:] if p is not sender]
            others = [p for p in self.places if p is not sender and p not in downstream]
            receivers = downstream if to < 3 or not others else others
            await shipments.dispatch(
                self.session,
                sender.actor,
                shipments.Dispatch(
                    sender.facility_id, receivers[to % len(receivers)].facility_id, chosen
                ),
            )
            return True

        self._step("dispatch", action)

    async def _pending(self, pick: int) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID] | None:
        pending = await self._rows(
            "SELECT id, from_facility_id, to_facility_id FROM shipment"
            " WHERE status = 'dispatched' AND from_facility_id = ANY(:f)"
            " ORDER BY dispatched_at, id"
        )
        if not pending:
            return None
        shipment_id, source, target = pending[pick % len(pending)]
        return shipment_id, source, target

    @precondition(lambda self: self.pending > 0)
    @rule(
        pick=st.integers(0, 10**6),
        lines=st.lists(
            st.tuples(st.integers(900, 1100), st.sampled_from([0, 0, 1, 2])),
            min_size=1,
            max_size=4,
        ),
    )
    def receive(self, pick: int, lines: list[tuple[int, int]]) -> None:
        async def action() -> bool | None:
            found = await self._pending(pick)
            if found is None:
                return None
            shipment_id, _, target = found
            items = await self._rows(
                "SELECT i.lot_id, i.dispatched_g FROM shipment_item i"
                " JOIN lot ON lot.id = i.lot_id WHERE i.shipment_id = :s ORDER BY lot.code",
                s=shipment_id,
            )
            receipt = []
            for index, (lot_id, dispatched) in enumerate(items):
                permille, refusal = lines[index % len(lines)]
                received = max(1, dispatched * permille // 1000)
                refused = {0: 0, 1: received, 2: received // 3}[refusal]
                receipt.append(
                    shipments.ReceiptLine(lot_id, received, refused, "wet" if refused else None)
                )
            await shipments.receive(
                self.session,
                self._place(target).actor,
                shipment_id,
                shipments.Receipt(receipt),
                TOLERANCES,
            )
            return True

        self._step("receive", action)

    @precondition(lambda self: self.pending > 1)  # else it would undo half the dispatches
    @rule(pick=st.integers(0, 10**6))
    def cancel(self, pick: int) -> None:
        async def action() -> bool | None:
            found = await self._pending(pick)
            if found is None:
                return None
            shipment_id, source, _ = found
            await shipments.cancel(
                self.session, self._place(source).actor, shipment_id, "changed plans"
            )
            return True

        self._step("cancel", action)

    @precondition(lambda self: self.active_at[self.centre.facility_id] > 0)
    @rule(
        chosen=picks,
        outputs=st.integers(1, 3),
        loss_permille=st.integers(0, 120),
        process=st.sampled_from(sorted(PRETREATMENT)),
        seed=st.integers(0, 10**6),
        loss_kind=st.sampled_from(sorted(LossKind)),
    )
    def pretreat(
        self,
        chosen: list[tuple[int, int]],
        outputs: int,
        loss_permille: int,
        process: Process,
        seed: int,
        loss_kind: LossKind,
    ) -> None:
        async def action() -> bool | None:
            found = await self._takes(self.centre, chosen)
            if found is None:
                return None
            takes, metal = found
            total = sum(t.grams for t in takes)
            loss = total * loss_permille // 1000
            categories = CATEGORIES[metal]
            parts = _parts(total - loss, outputs, seed)
            now = datetime.now(UTC)
            await transformations.record(
                self.session,
                self.centre.actor,
                transformations.Run(
                    facility_id=self.centre.facility_id,
                    process=process,
                    inputs=takes,
                    outputs=[
                        transformations.Output(
                            LotKind.scrap,
                            metal,
                            grams,
                            category=categories[(seed + i) % len(categories)],
                        )
                        for i, grams in enumerate(parts)
                    ],
                    losses=[transformations.Loss(loss_kind.value, loss)] if loss else [],
                    started_at=now - timedelta(hours=2),
                    ended_at=now - timedelta(hours=1),
                ),
            )
            return True

        self._step("pretreat", action)

    @precondition(lambda self: self.active_at[self.smelter.facility_id] > 0)
    @rule(
        chosen=picks,
        primary_g=st.one_of(st.just(0), st.integers(1, 2_000_000)),
        loss_permille=st.integers(0, 120),
        process=st.sampled_from(sorted(SMELTING)),
        form=st.sampled_from([ProductForm.molten, ProductForm.ingot, ProductForm.billet]),
    )
    def melt(
        self,
        chosen: list[tuple[int, int]],
        primary_g: int,
        loss_permille: int,
        process: Process,
        form: ProductForm,
    ) -> None:
        async def action() -> bool | None:
            found = await self._takes(self.smelter, chosen)
            if found is None:
                return None
            takes, metal = found
            total = sum(t.grams for t in takes) + primary_g
            loss = total * loss_permille // 1000
            molten_aluminium = metal is Metal.aluminium and form is ProductForm.molten
            now = datetime.now(UTC)
            await transformations.record(
                self.session,
                self.smelter.actor,
                transformations.Run(
                    facility_id=self.smelter.facility_id,
                    process=process,
                    inputs=takes,
                    primary_inputs=[transformations.Primary(metal, primary_g, "primary metal")]
                    if primary_g
                    else [],
                    outputs=[
                        transformations.Output(
                            LotKind.product,
                            metal,
                            total - loss,
                            product_form=form,
                            destination_use=DestinationUse.direct_alloying
                            if molten_aluminium
                            else None,
                        )
                    ],
                    losses=[transformations.Loss("dross", loss)] if loss else [],
                    started_at=now - timedelta(hours=2),
                    ended_at=now - timedelta(hours=1),
                ),
            )
            return True

        self._step("melt", action)

    @precondition(lambda self: self.recorded_runs > 0)
    @rule(pick=st.integers(0, 10**6))
    def void(self, pick: int) -> None:
        async def action() -> bool | None:
            # Mostly a run still recorded; now and then any, to void one twice.
            runs = await self._rows(
                "SELECT id, facility_id FROM transformation WHERE facility_id = ANY(:f)"
                " AND (status = 'recorded' OR :any) ORDER BY started_at, id",
                any=pick % 5 == 0,
            )
            if not runs:
                return None
            run_id, facility_id = runs[pick % len(runs)]
            await transformations.void(
                self.session, self._place(facility_id).actor, run_id, "recorded by mistake"
            )
            return True

        self._step("void", action)

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def custody_holds(self) -> None:
        self.loop.run_until_complete(self._check())

    async def _check(self) -> None:
        (bad,) = (
            await self._rows(
                "SELECT count(*) FROM lot WHERE registered_facility_id = ANY(:f)"
                " AND (post_consumer_g + pre_consumer_g + primary_g <> net_g OR net_g <= 0"
                " OR post_consumer_g < 0 OR pre_consumer_g < 0 OR primary_g < 0)"
            )
        )[0]
        assert bad == 0, f"{bad} lots whose composition is not their mass"

        ((held, primary, losses, differences),) = await self._rows(
            "SELECT"
            " (SELECT coalesce(sum(net_g), 0) FROM lot WHERE registered_facility_id = ANY(:f)"
            "  AND status = ANY(:held)),"
            " (SELECT coalesce(sum(primary_g), 0) FROM transformation"
            "  WHERE facility_id = ANY(:f) AND status = 'recorded'),"
            " (SELECT coalesce(sum(loss_g), 0) FROM transformation"
            "  WHERE facility_id = ANY(:f) AND status = 'recorded'),"
            " (SELECT coalesce(sum(i.difference_g), 0) FROM shipment_item i"
            "  JOIN shipment s ON s.id = i.shipment_id"
            "  WHERE s.from_facility_id = ANY(:f) AND i.difference_g IS NOT NULL)",
            held=HELD,
        )
        assert self.registered_g + primary == held + losses + differences, (
            f"registered {self.registered_g} g + primary {primary} g"
            f" != held {held} g + losses {losses} g + transit differences {differences} g"
        )

        derived = [
            row[0]
            for row in await self._rows(
                "SELECT id FROM lot l WHERE registered_facility_id = ANY(:f)"
                " AND status = ANY(:held)"
                " AND EXISTS (SELECT 1 FROM lot_source s WHERE s.lot_id = l.id) ORDER BY code",
                held=HELD,
            )
        ]
        collection_points = {p.facility_id for p in self.places[:2]}
        for lot_id in self.rng.sample(derived, min(LINEAGE_SAMPLE, len(derived))):
            found = await lots.lineage(
                self.session, ADMIN, lot_id, "upstream", lots.MAX_LINEAGE_DEPTH
            )
            ends = [r for r in found.lots if r.end]
            assert found.complete
            assert ends, f"lot {found.lot.code} has sources but lineage found no end"
            assert all(r.grams >= 0 for r in found.lots) and found.primary_g >= 0
            assert sum(r.grams for r in ends) + found.primary_g == found.lot.net_g, (
                found.lot.code,
                [(r.code, r.grams) for r in ends],
                found.primary_g,
                found.lot.net_g,
            )
            assert set(found.facilities) <= collection_points
            assert sum(found.facilities.values()) == sum(r.grams for r in ends)
            # The primary metal lineage finds is the lot's primary composition, give or take the
            # rounding of each lot on the way (both are shared out by proportion).
            slack = 3 * (len(found.lots) + 1)
            assert abs(found.primary_g - found.lot.primary_g) <= slack, (
                found.lot.code,
                found.primary_g,
                found.lot.primary_g,
            )


SETTINGS = settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)


def test_custody_machine(database_url: str) -> None:
    global DATABASE_URL  # Hypothesis builds the machine: it cannot take arguments
    DATABASE_URL = database_url
    in_thread(
        partial(
            run_state_machine_as_test,
            CustodyMachine,
            settings=SETTINGS,
        )
    )
    print(sorted(OUTCOMES.items()))
