"""Transformation use cases: record a process run with an exact mass balance and pooled
composition, read it, and void it while nothing it produced has moved."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import Actor
from domain.audit import service as audit
from domain.base import utcnow
from domain.bulk import driver
from domain.credits import service as credits
from domain.credits.rules import ACCOUNTING_PERIOD_DAYS
from domain.errors import Conflict, InvalidInput, NotFound
from domain.lots.models import Lot
from domain.lots.rules import Composition, LotKind, LotStatus, Metal
from domain.lots.service import (
    CLOCK_SKEW,
    FacilitySuspended,
    LotNotAvailable,
    Problems,
    categories,
    composition_of,
    next_codes,
    region_prefixes,
    require_operator,
)
from domain.registry.models import Enterprise, Facility
from domain.registry.rules import Status
from domain.registry.service import EnterpriseSuspended
from domain.rows import forget, insert_rows, recordset, rows_json
from domain.transformations.models import (
    PrimaryInput,
    Transformation,
    TransformationInput,
    TransformationLoss,
    TransformationOutput,
)
from domain.transformations.rules import (
    SMELTING,
    DestinationUse,
    Process,
    ProductForm,
    loss_flagged,
    pool,
    processes_at,
    taken_part,
    unbalanced,
)


class MassUnbalanced(InvalidInput):
    code = "mass_unbalanced"
    title = "Inputs and outputs do not balance"


class ProcessNotAllowed(InvalidInput):
    code = "process_not_allowed"
    title = "This facility cannot run this process"


class OutputsMoved(Conflict):
    code = "outputs_moved"
    title = "What the run produced or left has changed since"


@dataclass(frozen=True, slots=True)
class Take:
    lot_id: uuid.UUID
    grams: int


@dataclass(frozen=True, slots=True)
class Primary:
    metal: Metal
    grams: int
    description: str


@dataclass(frozen=True, slots=True)
class Output:
    kind: LotKind
    metal: Metal
    grams: int
    category: str | None = None
    product_form: ProductForm | None = None
    destination_use: DestinationUse | None = None


@dataclass(frozen=True, slots=True)
class Loss:
    kind: str
    grams: int


@dataclass(frozen=True, slots=True)
class Run:
    facility_id: uuid.UUID
    process: Process
    inputs: Sequence[Take]
    outputs: Sequence[Output]
    started_at: datetime
    ended_at: datetime
    primary_inputs: Sequence[Primary] = ()
    losses: Sequence[Loss] = ()
    electricity_kwh: Decimal | None = None
    natural_gas_m3: Decimal | None = None
    other_fuel_kgce: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TakenInput:
    """What a run takes from one lot, as `record` writes it (a `TransformationInput` row)."""

    transformation_id: uuid.UUID
    lot_id: uuid.UUID
    taken_g: int
    post_consumer_g: int
    pre_consumer_g: int
    primary_g: int
    status_before: str


@dataclass(frozen=True, slots=True)
class Recorded:
    transformation: Transformation
    inputs: Sequence[TransformationInput | TakenInput]
    primary_inputs: list[PrimaryInput]
    outputs: list[Lot]
    losses: list[TransformationLoss]


async def _own_facility(session: AsyncSession, actor: Actor, facility_id: uuid.UUID) -> Facility:
    facility = await session.get(Facility, facility_id)
    if facility is None or (
        not actor.is_platform_admin and facility.enterprise_id != actor.enterprise_id
    ):
        raise NotFound(f"facility {facility_id} not found")
    require_operator(actor)
    enterprise = await session.get_one(Enterprise, facility.enterprise_id)
    if enterprise.status != Status.active:
        raise EnterpriseSuspended(f"enterprise {enterprise.name} is suspended")
    if facility.status != Status.active:
        raise FacilitySuspended(f"facility {facility.name} is suspended")
    return facility


def _check_run(run: Run, facility: Facility, known: dict[str, str], now: datetime) -> Metal | None:
    """Everything that can be checked before touching a lot; returns the run's metal."""
    problems = Problems()
    if run.process not in processes_at(facility.kind):
        raise ProcessNotAllowed(
            f"a {facility.kind} cannot run {run.process.value}",
            errors=[{"pointer": "/process", "detail": f"not allowed at a {facility.kind}"}],
        )
    if run.ended_at < run.started_at:
        problems.add("/ended_at", "the run ends before it starts")
    if run.ended_at > now + CLOCK_SKEW:
        problems.add("/ended_at", "the run ends in the future")
    seen: set[uuid.UUID] = set()
    for index, take in enumerate(run.inputs):
        if take.lot_id in seen:
            problems.add(f"/inputs/{index}/lot_id", "this lot is already an input")
        seen.add(take.lot_id)
    smelting = run.process in SMELTING
    if run.primary_inputs and not smelting:
        problems.add("/primary_inputs", "primary inputs belong to melting, refining and casting")
    metals = {o.metal for o in run.outputs} | {p.metal for p in run.primary_inputs}
    for index, output in enumerate(run.outputs):
        at = f"/outputs/{index}"
        if output.kind is LotKind.product:
            if not smelting:
                problems.add(f"{at}/kind", "products come only from melting, refining, casting")
            if output.product_form is None:
                problems.add(f"{at}/product_form", "a product states its form")
            molten_aluminium = (
                output.metal is Metal.aluminium and output.product_form is ProductForm.molten
            )
            if molten_aluminium and output.destination_use is None:
                problems.add(f"{at}/destination_use", "molten aluminium states its destination use")
        else:
            metal = known.get(output.category or "")
            if metal is None:
                problems.add(f"{at}/category", f"unknown scrap category {output.category!r}")
            elif metal != output.metal:
                problems.add(f"{at}/category", f"{output.category} is {metal} scrap")
    if len(metals) > 1:
        problems.add("/outputs", "a run handles one metal: outputs and primary inputs differ")
    problems.raise_if_any()
    return next(iter(metals), None)


async def record(
    session: AsyncSession,
    actor: Actor,
    run: Run,
    *,
    credit_period_days: int = ACCOUNTING_PERIOD_DAYS,
) -> Recorded:
    """Record a run; the recycled grams of the products it makes are credited to the producer."""
    facility = await _own_facility(session, actor, run.facility_id)
    now = utcnow()
    metal = _check_run(run, facility, await categories(session), now)

    lots = await _lock_inputs(session, [t.lot_id for t in run.inputs])
    problems = Problems()
    for index, take in enumerate(run.inputs):
        lot = lots.get(take.lot_id)
        at = f"/inputs/{index}"
        if lot is None or (
            not actor.is_platform_admin and lot.holder_enterprise_id != actor.enterprise_id
        ):
            raise NotFound(
                f"lot {take.lot_id} not found", errors=[{"pointer": at, "detail": "not found"}]
            )
        if lot.holder_facility_id != facility.id or lot.status != LotStatus.active:
            raise LotNotAvailable(
                f"lot {lot.code} is {lot.status} at {lot.holder_facility_id}; a run takes lots "
                "at rest at its own facility",
                errors=[{"pointer": f"{at}/lot_id", "detail": f"lot is {lot.status}"}],
            )
        if take.grams > lot.net_g:
            problems.add(
                f"{at}/kg", f"lot {lot.code} holds {lot.net_g} g, less than {take.grams} g"
            )
        if metal is not None and lot.metal != metal:
            problems.add(f"{at}/lot_id", f"lot {lot.code} is {lot.metal}, the run {metal}")
    problems.raise_if_any()

    inputs_g = sum(t.grams for t in run.inputs)
    primary_g = sum(p.grams for p in run.primary_inputs)
    outputs_g = sum(o.grams for o in run.outputs)
    losses_g = sum(loss.grams for loss in run.losses)
    reason = unbalanced(inputs_g, primary_g, outputs_g, losses_g)
    if reason:
        raise MassUnbalanced(reason, inputs_g=inputs_g + primary_g, outputs_g=outputs_g + losses_g)

    transformation = Transformation(
        facility_id=facility.id,
        enterprise_id=facility.enterprise_id,
        region_code=facility.region_code,
        process=run.process.value,
        metal=(metal or Metal(lots[run.inputs[0].lot_id].metal)).value,
        input_g=inputs_g,
        primary_g=primary_g,
        output_g=outputs_g,
        loss_g=losses_g,
        loss_flagged=loss_flagged(run.process, losses_g, inputs_g, primary_g),
        electricity_kwh=run.electricity_kwh,
        natural_gas_m3=run.natural_gas_m3,
        other_fuel_kgce=run.other_fuel_kgce,
        started_at=run.started_at,
        ended_at=run.ended_at,
    )
    session.add(transformation)
    await session.flush()  # rows below refer to it; without relationships flush order is ours

    taken: list[Composition] = []
    inputs: list[TakenInput] = []
    left: list[dict[str, Any]] = []  # each input lot's row after the run
    for take in run.inputs:
        lot = lots[take.lot_id]
        part, kept = taken_part(lot.composition, take.grams)
        taken.append(part)
        inputs.append(
            TakenInput(
                transformation_id=transformation.id,
                lot_id=lot.id,
                taken_g=take.grams,
                post_consumer_g=part.post_consumer_g,
                pre_consumer_g=part.pre_consumer_g,
                primary_g=part.primary_g,
                status_before=lot.status,
            )
        )
        # A lot used up keeps its mass on record (what it was) and is consumed.
        rest = lot.composition if kept.total_g == 0 else kept
        status = LotStatus.consumed.value if kept.total_g == 0 else lot.status
        left.append(
            {"id": lot.id, "status": status, "net_g": rest.total_g,
             "post_consumer_g": rest.post_consumer_g, "pre_consumer_g": rest.pre_consumer_g,
             "primary_g": rest.primary_g, "updated_at": now}
        )  # fmt: skip

    pooled = pool(taken, primary_g, [o.grams for o in run.outputs] + [x.grams for x in run.losses])
    codes = await next_codes(session, [o.metal for o in run.outputs])
    outputs: list[Lot] = []
    for index, (spec, code) in enumerate(zip(run.outputs, codes, strict=True)):
        output = _output_lot(spec, code, pooled.compositions[index], facility, now)
        outputs.append(output)
    primaries = [
        PrimaryInput(
            transformation_id=transformation.id,
            position=i,
            metal=p.metal.value,
            description=p.description,
            grams=p.grams,
        )
        for i, p in enumerate(run.primary_inputs)
    ]
    losses = [
        TransformationLoss(
            transformation_id=transformation.id,
            position=i,
            kind=loss.kind,
            grams=loss.grams,
            post_consumer_g=c.post_consumer_g,
            pre_consumer_g=c.pre_consumer_g,
            primary_g=c.primary_g,
        )
        for i, (loss, c) in enumerate(
            zip(run.losses, pooled.compositions[len(run.outputs) :], strict=True)
        )
    ]
    session.add_all([*primaries, *outputs, *losses])
    await session.flush()
    made = [{"transformation_id": transformation.id, "lot_id": o.id} for o in outputs]
    lineage = [
        {"lot_id": output.id, "source_lot_id": take.lot_id, "grams": grams,
         "of_g": output.net_g, "via": "transformation", "transformation_id": transformation.id}
        for output, row in zip(outputs, pooled.from_inputs, strict=False)
        for take, grams in zip(run.inputs, row, strict=True)
        if grams > 0
    ]  # fmt: skip
    recorded = audit.Change(
        type="transformation.recorded",
        subject_type="transformation",
        subject_id=transformation.id,
        enterprise_ids=[facility.enterprise_id],
        facility_ids=[facility.id],
        region_codes=[facility.region_code],
        lot_ids=[*(t.lot_id for t in run.inputs), *(o.id for o in outputs)],
        payload=_recorded_payload(transformation, inputs, primaries, outputs, losses),
    )
    await (await driver(session)).execute(
        _TAKEN_AND_MADE,
        rows_json(left),
        rows_json([{name: getattr(i, name) for name in _TAKEN_INPUT} for i in inputs]),
        rows_json(made),
        rows_json(lineage),
        rows_json(audit.event_rows(actor, [recorded])),
        list(lots),  # as an index condition: see `shipments.sql._SETTLED`
    )
    forget(session, Lot, lots)
    products = [lot for lot in outputs if lot.kind == LotKind.product]
    from_products = [
        part
        for take, part in zip(run.inputs, taken, strict=True)
        if lots[take.lot_id].kind == LotKind.product
    ]
    await credits.credit_products(
        session,
        transformation.id,
        facility.enterprise_id,
        products,
        credit_period_days,
        taken=_sum(taken),
        taken_from_products=_sum(from_products),
    )
    return Recorded(transformation, inputs, primaries, outputs, losses)


@dataclass(frozen=True, slots=True)
class InputLot:
    """A lot named as a run's input, as locked."""

    id: uuid.UUID
    code: str
    kind: str
    metal: str
    status: str
    net_g: int
    post_consumer_g: int
    pre_consumer_g: int
    primary_g: int
    holder_facility_id: uuid.UUID
    holder_enterprise_id: uuid.UUID

    @property
    def composition(self) -> Composition:
        return Composition(self.post_consumer_g, self.pre_consumer_g, self.primary_g)


# FOR NO KEY UPDATE (see `get_lot`): the credit accounts are locked next.
_LOCK_INPUTS = f"""
SELECT {", ".join(f.name for f in fields(InputLot))}
FROM lot WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
"""  # noqa: S608 - constants


async def _lock_inputs(
    session: AsyncSession, lot_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, InputLot]:
    """The lots that exist among `lot_ids`, locked in id order, straight on the driver: one
    statement and no ORM instance per input."""
    rows = await (await driver(session)).fetch(_LOCK_INPUTS, list(lot_ids))
    return {row["id"]: InputLot(*row) for row in rows}


# What a run writes once its own row and outputs are flushed, whatever the number of inputs, in
# one statement: the input lots as the run leaves them, what it took from each, its outputs,
# their lineage and the event.
_TAKEN = ("status", "net_g", "post_consumer_g", "pre_consumer_g", "primary_g", "updated_at")
_SET_TAKEN = ", ".join(f"{c} = v.{c}" for c in _TAKEN)
_LINEAGE = ("lot_id", "source_lot_id", "grams", "of_g", "via", "transformation_id")
_TAKEN_INPUT = tuple(f.name for f in fields(TakenInput))
_TAKEN_AND_MADE = (
    f"WITH taken AS (UPDATE lot l SET {_SET_TAKEN}, version = l.version + 1"  # noqa: S608 - constants
    f" FROM {recordset('lot', 1)} v WHERE l.id = ANY($6::uuid[]) AND l.id = v.id),"
    f" inputs AS ({insert_rows('transformation_input', _TAKEN_INPUT, 2)}),"
    f" made AS ({insert_rows('transformation_output', ('transformation_id', 'lot_id'), 3)}),"
    f" lineage AS ({insert_rows('lot_source', _LINEAGE, 4)})"
    f" {insert_rows('event', audit.EVENT_COLUMNS, 5)}"
)


def _sum(parts: Sequence[Composition]) -> Composition:
    return Composition(
        sum(p.post_consumer_g for p in parts),
        sum(p.pre_consumer_g for p in parts),
        sum(p.primary_g for p in parts),
    )


def _setcomposition_of(lot: Lot, composition: Composition) -> None:
    lot.net_g = composition.total_g
    lot.post_consumer_g = composition.post_consumer_g
    lot.pre_consumer_g = composition.pre_consumer_g
    lot.primary_g = composition.primary_g


def _output_lot(
    spec: Output, code: str, composition: Composition, facility: Facility, now: datetime
) -> Lot:
    return Lot(
        code=code,
        kind=spec.kind.value,
        metal=spec.metal.value,
        category=spec.category if spec.kind is LotKind.scrap else None,
        product_form=spec.product_form.value if spec.product_form else None,
        destination_use=spec.destination_use.value if spec.destination_use else None,
        net_g=composition.total_g,
        post_consumer_g=composition.post_consumer_g,
        pre_consumer_g=composition.pre_consumer_g,
        primary_g=composition.primary_g,
        registered_facility_id=facility.id,
        holder_facility_id=facility.id,
        holder_enterprise_id=facility.enterprise_id,
        enterprise_ids=[facility.enterprise_id],
        region_prefixes=region_prefixes(facility.region_code),
        facility_ids=[facility.id],
        registered_at=now,
        updated_at=now,
    )


def _recorded_payload(
    transformation: Transformation,
    inputs: Sequence[TransformationInput | TakenInput],
    primaries: Sequence[PrimaryInput],
    outputs: Sequence[Lot],
    losses: Sequence[TransformationLoss],
) -> dict[str, Any]:
    return {
        "facility_id": transformation.facility_id,
        "process": transformation.process,
        "metal": transformation.metal,
        "inputs": [{"lot_id": i.lot_id, "taken_g": i.taken_g} for i in inputs],
        "primary_inputs": [{"metal": p.metal, "grams": p.grams} for p in primaries],
        "outputs": [
            {
                "lot_id": o.id,
                "code": o.code,
                "kind": o.kind,
                "net_g": o.net_g,
                "recycled_g": o.post_consumer_g + o.pre_consumer_g,
            }
            for o in outputs
        ],
        "losses": [{"kind": x.kind, "grams": x.grams} for x in losses],
        "loss_flagged": transformation.loss_flagged,
        "started_at": transformation.started_at,
        "ended_at": transformation.ended_at,
    }


async def get_transformation(
    session: AsyncSession, actor: Actor, transformation_id: uuid.UUID, *, lock: bool = False
) -> Recorded:
    query = select(Transformation).where(col(Transformation.id) == transformation_id)
    found = await session.scalar(query.with_for_update() if lock else query)
    visible = found is not None and (
        actor.is_platform_admin
        or found.enterprise_id == actor.enterprise_id
        or actor.governs(found.region_code)
    )
    if found is None or not visible:
        raise NotFound(f"transformation {transformation_id} not found")

    def rows(model: Any, order: Any) -> Any:
        return select(model).where(model.transformation_id == found.id).order_by(order)

    inputs = list(await session.scalars(rows(TransformationInput, TransformationInput.lot_id)))
    primaries = list(await session.scalars(rows(PrimaryInput, PrimaryInput.position)))
    losses = list(await session.scalars(rows(TransformationLoss, TransformationLoss.position)))
    outputs = list(
        await session.scalars(
            select(Lot)
            .join(TransformationOutput, col(TransformationOutput.lot_id) == col(Lot.id))
            .where(col(TransformationOutput.transformation_id) == found.id)
            .order_by(col(Lot.code))
        )
    )
    return Recorded(found, inputs, primaries, outputs, losses)


async def _taken_by_a_later_run(
    session: AsyncSession, run: Transformation, consumed: Sequence[Lot]
) -> bool:
    """A consumed input was used up by whichever run took from it last. If that is a later run,
    giving back what this run took would count the lot's rest twice (here and in that run's
    outputs). Runs on one lot are serialised by its row lock, so their ids are in run order."""
    if not consumed:
        return False
    later = await session.scalar(
        select(col(TransformationInput.lot_id))
        .join(Transformation, col(Transformation.id) == col(TransformationInput.transformation_id))
        .where(
            col(TransformationInput.lot_id).in_([lot.id for lot in consumed]),
            col(Transformation.id) > run.id,
            col(Transformation.status) == "recorded",
        )
        .limit(1)
    )
    return later is not None


async def void(
    session: AsyncSession, actor: Actor, transformation_id: uuid.UUID, reason: str
) -> Recorded:
    """Undo a run while nothing it produced or left behind has moved: the inputs get back what
    was taken, to the gram; the outputs are voided. The run stays on record with its void."""
    recorded = await get_transformation(session, actor, transformation_id, lock=True)
    run = recorded.transformation
    if not actor.is_platform_admin and run.enterprise_id != actor.enterprise_id:
        raise NotFound(f"transformation {transformation_id} not found")
    require_operator(actor)
    if run.status != "recorded":
        raise Conflict(f"the transformation is already {run.status}")
    ids = [i.lot_id for i in recorded.inputs] + [o.id for o in recorded.outputs]
    locked = await session.scalars(
        select(Lot)
        .where(col(Lot.id).in_(ids))
        .order_by(col(Lot.id))
        .with_for_update(key_share=True)  # see `get_lot`: the credit accounts are locked next
    )
    lots = {lot.id: lot for lot in locked}
    for output in recorded.outputs:
        lot = lots[output.id]
        untouched = lot.version == 1 and lot.status == LotStatus.active
        if not untouched or lot.holder_facility_id != run.facility_id:
            raise OutputsMoved(f"output {lot.code} has moved or been used since the run")
    for taken in recorded.inputs:
        lot = lots[taken.lot_id]
        consumed = lot.status == LotStatus.consumed
        if not consumed and (
            lot.status != LotStatus.active or lot.holder_facility_id != run.facility_id
        ):
            raise OutputsMoved(f"the rest of input {lot.code} has moved since the run")
    if await _taken_by_a_later_run(
        session, run, [lot for lot in lots.values() if lot.status == LotStatus.consumed]
    ):
        raise OutputsMoved("the rest of an input was used by a later run; void that run first")
    await credits.reverse_credits(
        session,
        run.id,
        run.enterprise_id,
        run.metal,
        [lots[o.id] for o in recorded.outputs if o.kind == LotKind.product],
    )
    now = utcnow()
    for taken in recorded.inputs:
        lot = lots[taken.lot_id]
        part = Composition(taken.post_consumer_g, taken.pre_consumer_g, taken.primary_g)
        if lot.status == LotStatus.consumed:
            lot.status = taken.status_before
        else:
            rest = composition_of(lot)
            _setcomposition_of(
                lot,
                Composition(*(a + b for a, b in zip(rest.parts, part.parts, strict=True))),
            )
        lot.version += 1
        lot.updated_at = now
    for output in recorded.outputs:
        lot = lots[output.id]
        lot.status = LotStatus.voided.value
        lot.version += 1
        lot.updated_at = now
    run.status = "voided"
    run.void_reason = reason
    run.voided_at = now
    run.version += 1
    await session.flush()
    await audit.record(
        session,
        actor,
        "transformation.voided",
        subject_type="transformation",
        subject_id=run.id,
        enterprise_ids=[run.enterprise_id],
        facility_ids=[run.facility_id],
        region_codes=[run.region_code],
        lot_ids=ids,
        payload={
            "reason": reason,
            "restored": [{"lot_id": i.lot_id, "taken_g": i.taken_g} for i in recorded.inputs],
        },
    )
    return Recorded(
        run,
        recorded.inputs,
        recorded.primary_inputs,
        [lots[o.id] for o in recorded.outputs],
        recorded.losses,
    )
