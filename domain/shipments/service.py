"""Shipment use cases: dispatch, receipt (with weights and refusals), cancel, discrepancies.

Races are decided by row locks: the lots of a dispatch, and the shipment of a receipt or cancel,
are locked (in id order, so two multi-lot dispatches cannot deadlock) before they are checked."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import Actor, Role
from domain.audit import service as audit
from domain.base import metadata, utcnow
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.ids import new_id
from domain.lots.models import Lot
from domain.lots.rules import MOVABLE, Composition, LotStatus, Metal
from domain.lots.service import (
    CLOCK_SKEW,
    FacilitySuspended,
    LotNotAvailable,
    Problems,
    next_codes,
    region_prefixes,
    require_operator,
)
from domain.pagination import Page, keyset_page
from domain.registry.models import Enterprise, Facility
from domain.registry.rules import Status
from domain.registry.service import EnterpriseSuspended
from domain.shipments import sql
from domain.shipments.models import Discrepancy, Shipment, ShipmentItem
from domain.shipments.rules import (
    DEFAULT_TOLERANCE,
    DiscrepancyStatus,
    ShipmentStatus,
    outcome,
    settle,
    tolerance_g,
)
from domain.weighbridge import service as weighbridge


class ShipmentNotReceivable(Conflict):
    code = "shipment_not_in_transit"
    title = "The shipment is no longer in transit"


class UnknownFacility(InvalidInput):
    code = "unknown_facility"


class DiscrepancyClosed(Conflict):
    code = "discrepancy_closed"
    title = "The discrepancy cannot take this step"


@dataclass(frozen=True, slots=True)
class Dispatch:
    from_facility_id: uuid.UUID
    to_facility_id: uuid.UUID
    lot_ids: Sequence[uuid.UUID]
    carrier: str | None = None
    vehicle_plate: str | None = None
    vehicle_energy: str | None = None
    emission_standard: str | None = None
    distance_km: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    lot_id: uuid.UUID
    received_g: int | None  # None: the receipt's weighbridge ticket gives it
    refused_g: int = 0
    refusal_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    lines: Sequence[ReceiptLine]
    received_at: datetime | None = None
    weighbridge_ticket_no: str | None = None


# --- visibility -------------------------------------------------------------------------------


def _regions_visible(actor: Actor, *columns: Any) -> ColumnElement[bool]:
    assert actor.jurisdiction is not None
    return or_(*(c.startswith(actor.jurisdiction, autoescape=True) for c in columns))


def _between_visible_to(
    actor: Actor, sender: Any, receiver: Any, from_region: Any, to_region: Any
) -> ColumnElement[bool]:
    """Something between two parties: both enterprises see it, and authorities governing
    either end."""
    if actor.is_platform_admin:
        return true()
    if actor.enterprise_id is not None:
        return or_(sender == actor.enterprise_id, receiver == actor.enterprise_id)
    if actor.jurisdiction is not None:
        return _regions_visible(actor, from_region, to_region)
    return false()


def shipment_visible_to(actor: Actor) -> ColumnElement[bool]:
    return _between_visible_to(
        actor,
        col(Shipment.sender_enterprise_id),
        col(Shipment.receiver_enterprise_id),
        col(Shipment.from_region),
        col(Shipment.to_region),
    )


def discrepancy_visible_to(actor: Actor) -> ColumnElement[bool]:
    return _between_visible_to(
        actor,
        col(Discrepancy.sender_enterprise_id),
        col(Discrepancy.receiver_enterprise_id),
        col(Discrepancy.from_region),
        col(Discrepancy.to_region),
    )


async def get_shipment(
    session: AsyncSession, actor: Actor, shipment_id: uuid.UUID, *, lock: bool = False
) -> Shipment:
    query = select(Shipment).where(col(Shipment.id) == shipment_id, shipment_visible_to(actor))
    if lock:  # what the session may hold of it is refreshed under the lock
        query = query.with_for_update().execution_options(populate_existing=True)
    shipment = await session.scalar(query)
    if shipment is None:
        raise NotFound(f"shipment {shipment_id} not found")
    return shipment


@dataclass(frozen=True, slots=True)
class Line:
    """One lot of a shipment: what was dispatched and, once received, what arrived."""

    lot_id: uuid.UUID
    code: str  # the lot's
    metal: str
    category: str | None
    dispatched_g: int
    received_g: int | None = None
    refused_g: int | None = None
    difference_g: int | None = None
    refusal_reason: str | None = None
    refused_lot_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A shipment with its lots in id order, as a dispatch or receipt leaves it: the answer
    needs no read-back."""

    shipment: sql.ShipmentRow
    lines: list[Line]


async def shipment_lines(session: AsyncSession, shipment_id: uuid.UUID) -> list[Line]:
    query = (
        select(
            col(ShipmentItem.lot_id),
            col(Lot.code),
            col(Lot.metal),
            col(Lot.category),
            col(ShipmentItem.dispatched_g),
            col(ShipmentItem.received_g),
            col(ShipmentItem.refused_g),
            col(ShipmentItem.difference_g),
            col(ShipmentItem.refusal_reason),
            col(ShipmentItem.refused_lot_id),
        )
        .join(Lot, col(Lot.id) == col(ShipmentItem.lot_id))
        .where(col(ShipmentItem.shipment_id) == shipment_id)
        .order_by(col(Lot.id))
    )
    rows = await session.execute(query)
    return [Line(**row._mapping) for row in rows]


@dataclass(frozen=True, slots=True)
class ShipmentFilter:
    direction: str | None = None  # sent | received, from the caller's enterprise
    status: ShipmentStatus | None = None
    facility_id: uuid.UUID | None = None
    dispatched_from: datetime | None = None
    dispatched_to: datetime | None = None


async def list_shipments(
    session: AsyncSession,
    actor: Actor,
    where: ShipmentFilter,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Page[Shipment]:
    query: Select[Shipment] = select(Shipment).where(shipment_visible_to(actor))
    if where.direction == "sent":
        query = query.where(col(Shipment.sender_enterprise_id) == actor.enterprise_id)
    elif where.direction == "received":
        query = query.where(col(Shipment.receiver_enterprise_id) == actor.enterprise_id)
    if where.status is not None:
        query = query.where(col(Shipment.status) == where.status.value)
    if where.facility_id is not None:
        query = query.where(
            or_(
                col(Shipment.from_facility_id) == where.facility_id,
                col(Shipment.to_facility_id) == where.facility_id,
            )
        )
    if where.dispatched_from is not None:
        query = query.where(col(Shipment.dispatched_at) >= where.dispatched_from)
    if where.dispatched_to is not None:
        query = query.where(col(Shipment.dispatched_at) < where.dispatched_to)
    return await keyset_page(session, query, col(Shipment.id), after=after, limit=limit)


# --- who may act ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    """A facility at one end of a shipment, with its enterprise's standing."""

    facility_id: uuid.UUID
    enterprise_id: uuid.UUID
    name: str
    region_code: str
    status: str
    enterprise_name: str
    enterprise_status: str


_PARTY_FIELDS = tuple(f.name for f in fields(Party))


def _active_party(party: Party, what: str) -> None:
    """Suspended enterprises and facilities can neither dispatch nor receive."""
    if party.enterprise_status != Status.active:
        raise EnterpriseSuspended(f"the {what} enterprise {party.enterprise_name} is suspended")
    if party.status != Status.active:
        raise FacilitySuspended(f"the {what} facility {party.name} is suspended")


def _require_party(actor: Actor, enterprise_id: uuid.UUID, what: str) -> None:
    require_operator(actor)
    if not actor.is_platform_admin and actor.enterprise_id != enterprise_id:
        raise Forbidden(f"only the {what} may do this")


_PARTIES = select(
    col(Facility.id),
    col(Facility.enterprise_id),
    col(Facility.name),
    col(Facility.region_code),
    col(Facility.status),
    col(Enterprise.name),
    col(Enterprise.status),
).join(Enterprise, col(Enterprise.id) == col(Facility.enterprise_id))


async def _parties(session: AsyncSession, facility_ids: list[uuid.UUID]) -> dict[uuid.UUID, Party]:
    """Through the session, not the driver: this first statement begins the transaction the
    driver's statements join."""
    rows = await session.execute(_PARTIES.where(col(Facility.id).in_(facility_ids)))
    return {row[0]: Party(*row) for row in rows}


async def _lock_lots(session: AsyncSession, lot_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Lot]:
    rows = await session.scalars(
        select(Lot)
        .where(col(Lot.id).in_(lot_ids))
        .order_by(col(Lot.id))
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return {lot.id: lot for lot in rows}


# --- dispatch ---------------------------------------------------------------------------------


async def dispatch(session: AsyncSession, actor: Actor, order: Dispatch) -> Manifest:
    problems = Problems()
    seen: set[uuid.UUID] = set()
    for index, lot_id in enumerate(order.lot_ids):
        if lot_id in seen:
            problems.add(f"/lot_ids/{index}", f"lot {lot_id} is listed twice")
        seen.add(lot_id)
    if order.from_facility_id == order.to_facility_id:
        problems.add("/to_facility_id", "a shipment goes to another facility")
    problems.raise_if_any()

    parties = await _parties(session, [order.from_facility_id, order.to_facility_id])
    source = parties.get(order.from_facility_id)
    if source is None or (
        not actor.is_platform_admin and source.enterprise_id != actor.enterprise_id
    ):
        raise NotFound(f"facility {order.from_facility_id} not found")
    _require_party(actor, source.enterprise_id, "sender")
    _active_party(source, "sending")
    target = parties.get(order.to_facility_id)
    if target is None:
        raise UnknownFacility(
            f"facility {order.to_facility_id} does not exist",
            errors=[{"pointer": "/to_facility_id", "detail": "unknown facility"}],
        )
    _active_party(target, "receiving")

    lots = await sql.lock_lots(session, order.lot_ids)
    for index, lot_id in enumerate(order.lot_ids):
        lot = lots.get(lot_id)
        if lot is None or (
            not actor.is_platform_admin and lot.holder_enterprise_id != actor.enterprise_id
        ):
            raise NotFound(
                f"lot {lot_id} not found",
                errors=[{"pointer": f"/lot_ids/{index}", "detail": "not found"}],
            )
        if lot.status not in MOVABLE or lot.holder_facility_id != source.facility_id:
            raise LotNotAvailable(
                f"lot {lot.code} is {lot.status} at {lot.holder_facility_id}; "
                "only a lot at rest at the sending facility can be dispatched",
                errors=[{"pointer": f"/lot_ids/{index}", "detail": f"lot is {lot.status}"}],
            )

    shipment = sql.ShipmentRow(
        id=new_id(),
        from_facility_id=source.facility_id,
        to_facility_id=target.facility_id,
        sender_enterprise_id=source.enterprise_id,
        receiver_enterprise_id=target.enterprise_id,
        from_region=source.region_code,
        to_region=target.region_code,
        status=ShipmentStatus.dispatched.value,
        carrier=order.carrier,
        vehicle_plate=order.vehicle_plate,
        vehicle_energy=order.vehicle_energy,
        emission_standard=order.emission_standard,
        distance_km=order.distance_km,
        dispatched_g=sum(lot.net_g for lot in lots.values()),
        dispatched_at=utcnow(),
    )
    dispatched = audit.Change(
        type="shipment.dispatched",
        subject_type="shipment",
        subject_id=shipment.id,
        enterprise_ids=[shipment.sender_enterprise_id, shipment.receiver_enterprise_id],
        facility_ids=[source.facility_id, target.facility_id],
        region_codes=[source.region_code, target.region_code],
        lot_ids=list(order.lot_ids),
        payload={
            "from_facility_id": source.facility_id,
            "to_facility_id": target.facility_id,
            "lots": [
                {"id": i, "code": lots[i].code, "net_g": lots[i].net_g} for i in order.lot_ids
            ],
            "dispatched_g": shipment.dispatched_g,
            "carrier": order.carrier,
            "vehicle_plate": order.vehicle_plate,
            "vehicle_energy": order.vehicle_energy,
            "distance_km": order.distance_km,
        },
    )
    await sql.write_dispatch(session, actor, shipment, list(lots.values()), dispatched)
    lines = [Line(lot.id, lot.code, lot.metal, lot.category, lot.net_g) for lot in lots.values()]
    return Manifest(shipment, lines)


# --- receipt ----------------------------------------------------------------------------------


def _check_lines(receipt: Receipt, on_board: set[uuid.UUID]) -> None:
    problems = Problems()
    listed: set[uuid.UUID] = set()
    for index, line in enumerate(receipt.lines):
        at = f"/items/{index}"
        if line.lot_id in listed:
            problems.add(f"{at}/lot_id", f"lot {line.lot_id} is listed twice")
        elif line.lot_id not in on_board:
            problems.add(f"{at}/lot_id", f"lot {line.lot_id} is not on this shipment")
        listed.add(line.lot_id)
        if line.received_g is None:
            problems.add(
                f"{at}/received_kg",
                "received mass is required unless a weighbridge ticket gives it",
            )
            continue
        if line.received_g <= 0:
            problems.add(f"{at}/received_kg", "received mass must be more than 0 kg")
        if not 0 <= line.refused_g <= line.received_g:
            problems.add(f"{at}/refused_kg", "refused mass must be between 0 and the received mass")
        if line.refused_g > 0 and not (line.refusal_reason or "").strip():
            problems.add(f"{at}/refusal_reason", "a refusal needs a reason")
    missing = on_board - listed
    if missing:
        problems.add(
            "/items",
            "every lot on the shipment must be listed; missing: "
            + ", ".join(sorted(str(m) for m in missing)),
        )
    problems.raise_if_any()


_shipment = metadata.tables["shipment"]


def _party_columns(end: str) -> tuple[Any, Any, list[Any]]:
    """The facility at one end of a shipment, its enterprise, and their columns as `Party`
    takes them."""
    facility = metadata.tables["facility"].alias(end)
    enterprise = metadata.tables["enterprise"].alias(f"{end}_enterprise")
    return (
        facility,
        enterprise,
        [
            facility.c.id.label(f"{end}_facility_id"),
            facility.c.enterprise_id.label(f"{end}_enterprise_id"),
            facility.c.name.label(f"{end}_name"),
            facility.c.region_code.label(f"{end}_region_code"),
            facility.c.status.label(f"{end}_status"),
            enterprise.c.name.label(f"{end}_enterprise_name"),
            enterprise.c.status.label(f"{end}_enterprise_status"),
        ],
    )


_source, _sender, _source_columns = _party_columns("source")
_target, _receiver, _target_columns = _party_columns("target")
_IN_TRANSIT = (
    select(_shipment, *_source_columns, *_target_columns)
    .join(_source, _source.c.id == _shipment.c.from_facility_id)
    .join(_sender, _sender.c.id == _source.c.enterprise_id)
    .join(_target, _target.c.id == _shipment.c.to_facility_id)
    .join(_receiver, _receiver.c.id == _target.c.enterprise_id)
    .with_for_update(of=_shipment)
)


async def _lock_shipment(
    session: AsyncSession, actor: Actor, shipment_id: uuid.UUID
) -> tuple[sql.ShipmentRow, Party, Party]:
    """The shipment, locked, with its sending and receiving parties. Through the session, not
    the driver: this first statement begins the transaction the driver's statements join."""
    row = (
        await session.execute(
            _IN_TRANSIT.where(_shipment.c.id == shipment_id, shipment_visible_to(actor))
        )
    ).first()
    if row is None:
        raise NotFound(f"shipment {shipment_id} not found")
    found = row._mapping
    shipment = sql.ShipmentRow(*(found[name] for name in sql.SHIPMENT_COLUMNS))
    source, target = (
        Party(*(found[f"{end}_{name}"] for name in _PARTY_FIELDS)) for end in ("source", "target")
    )
    return shipment, source, target


async def receive(
    session: AsyncSession,
    actor: Actor,
    shipment_id: uuid.UUID,
    receipt: Receipt,
    tolerances: Mapping[str, Decimal],
) -> Manifest:
    shipment, source, target = await _lock_shipment(session, actor, shipment_id)
    _require_party(actor, shipment.receiver_enterprise_id, "receiver")
    if shipment.status != ShipmentStatus.dispatched:
        raise ShipmentNotReceivable(f"shipment {shipment.id} is {shipment.status}")
    _active_party(target, "receiving")
    now = utcnow()
    received_at = receipt.received_at or now
    if received_at > now + CLOCK_SKEW or received_at < shipment.dispatched_at:
        raise InvalidInput(
            "received_at must lie between the dispatch and now",
            errors=[{"pointer": "/received_at", "detail": "outside the transit window"}],
        )
    ticket = await weighbridge.ticket_for_receipt(
        session, target.facility_id, receipt.weighbridge_ticket_no
    )
    if ticket is not None:
        masses = weighbridge.weigh(ticket, [line.received_g for line in receipt.lines])
        receipt = replace(
            receipt,
            lines=[
                replace(line, received_g=g) for line, g in zip(receipt.lines, masses, strict=True)
            ],
        )
    arriving = {lot.id: lot for lot in await sql.lock_arriving(session, shipment.id)}
    _check_lines(receipt, set(arriving))

    lines = {line.lot_id: line for line in receipt.lines}
    codes = iter(
        await next_codes(
            session,
            [
                Metal(arriving[i].metal)
                for i, line in lines.items()
                if 0 < line.refused_g < (line.received_g or 0)
            ],
        )
    )
    rows = sql.ReceiptRows([], [], [], [], [])
    settlements = []
    answered: dict[uuid.UUID, Line] = {}
    opened: list[dict[str, Any]] = []
    returned: list[uuid.UUID] = []
    for lot_id, line in lines.items():
        lot = arriving[lot_id]
        assert line.received_g is not None  # _check_lines refused the rest
        settlement = settle(lot.composition, line.received_g, line.refused_g)
        settlements.append(settlement)
        seen_by = _touched(lot, target)
        refused_lot_id = None
        if settlement.accepted is not None:
            rows.lots.append(
                _settled(lot, settlement.accepted, LotStatus.active, target, seen_by, now)
            )
            if settlement.refused is not None:
                refused_lot_id = new_id()
                rows.returned.append(
                    {
                        **_mass(settlement.refused),
                        **seen_by,
                        "id": refused_lot_id,
                        "code": next(codes),
                        "status": LotStatus.refused.value,
                        "version": 1,
                        "parent_lot_id": lot.id,
                        "holder_facility_id": source.facility_id,
                        "holder_enterprise_id": source.enterprise_id,
                    }
                )
                refused_g = settlement.refused.total_g
                rows.lineage.append(
                    {"lot_id": refused_lot_id, "source_lot_id": lot.id, "grams": refused_g,
                     "of_g": refused_g, "via": "refusal"}
                )  # fmt: skip
                returned.append(refused_lot_id)
        else:
            assert settlement.refused is not None
            # back with the sender until shipped again
            rows.lots.append(
                _settled(lot, settlement.refused, LotStatus.refused, None, seen_by, now)
            )
        line_out = Line(
            lot.id,
            lot.code,
            lot.metal,
            lot.category,
            lot.dispatched_g,
            line.received_g,
            line.refused_g,
            settlement.difference_g,
            line.refusal_reason,
            refused_lot_id,
        )
        answered[lot.id] = line_out
        rows.items.append(
            {"lot_id": lot.id, "received_g": line.received_g, "refused_g": line.refused_g,
             "difference_g": settlement.difference_g, "refusal_reason": line.refusal_reason,
             "refused_lot_id": refused_lot_id}
        )  # fmt: skip
        allowed = tolerance_g(lot.dispatched_g, tolerances.get(lot.metal, DEFAULT_TOLERANCE))
        if abs(settlement.difference_g) > allowed:
            opened.append(
                {
                    "id": new_id(),
                    "shipment_id": shipment.id,
                    "lot_id": lot.id,
                    "sender_enterprise_id": shipment.sender_enterprise_id,
                    "receiver_enterprise_id": shipment.receiver_enterprise_id,
                    "from_region": shipment.from_region,
                    "to_region": shipment.to_region,
                    "metal": lot.metal,
                    "dispatched_g": lot.dispatched_g,
                    "received_g": line.received_g,
                    "difference_g": settlement.difference_g,
                    "tolerance_g": allowed,
                    "status": DiscrepancyStatus.open.value,
                    "version": 1,
                }
            )
    rows.discrepancies = opened
    shipment.status = outcome(settlements).value
    shipment.received_at = received_at
    shipment.weighbridge_ticket_no = receipt.weighbridge_ticket_no
    shipment.version += 1

    def change(
        type: str, subject_id: uuid.UUID, lot_ids: list[uuid.UUID], payload: dict[str, Any]
    ) -> audit.Change:
        return audit.Change(
            type=type,
            subject_type=type.split(".")[0],
            subject_id=subject_id,
            lot_ids=lot_ids,
            payload=payload,
            enterprise_ids=[shipment.sender_enterprise_id, shipment.receiver_enterprise_id],
            facility_ids=[source.facility_id, target.facility_id],
            region_codes=[source.region_code, target.region_code],
        )

    received = change(
        "shipment.received",
        shipment.id,
        [*lines, *returned],
        {
            "status": shipment.status,
            "received_at": received_at,
            "weighbridge_ticket_no": receipt.weighbridge_ticket_no,
            **({"weighbridge_ticket_id": ticket.id} if ticket is not None else {}),
            "items": [
                {
                    "lot_id": i,
                    "dispatched_g": answered[i].dispatched_g,
                    "received_g": answered[i].received_g,
                    "refused_g": answered[i].refused_g,
                    "difference_g": answered[i].difference_g,
                    "refusal_reason": answered[i].refusal_reason,
                    "refused_lot_id": answered[i].refused_lot_id,
                }
                for i in lines
            ],
        },
    )
    discrepancies = [
        change(
            "discrepancy.opened",
            d["id"],
            [d["lot_id"]],
            {
                "shipment_id": d["shipment_id"],
                "dispatched_g": d["dispatched_g"],
                "received_g": d["received_g"],
                "difference_g": d["difference_g"],
                "tolerance_g": d["tolerance_g"],
            },
        )
        for d in opened
    ]
    await sql.write_receipt(session, actor, shipment, rows, [received, *discrepancies])
    if ticket is not None:
        weighbridge.use_ticket(ticket, shipment.id)
        await session.flush()
    return Manifest(shipment, [answered[lot_id] for lot_id in arriving])


def _mass(composition: Composition) -> dict[str, int]:
    return {
        "net_g": composition.total_g,
        "post_consumer_g": composition.post_consumer_g,
        "pre_consumer_g": composition.pre_consumer_g,
        "primary_g": composition.primary_g,
    }


def _touched(lot: sql.ArrivingLot, facility: Party) -> dict[str, list[Any]]:
    """The receiving facility has touched the lot: its enterprise and authorities may see it."""
    return {
        "enterprise_ids": list(dict.fromkeys([*lot.enterprise_ids, facility.enterprise_id])),
        "region_prefixes": list(
            dict.fromkeys([*lot.region_prefixes, *region_prefixes(facility.region_code)])
        ),
        "facility_ids": list(dict.fromkeys([*lot.facility_ids, facility.facility_id])),
    }


def _settled(
    lot: sql.ArrivingLot,
    mass: Composition,
    status: LotStatus,
    holder: Party | None,
    seen_by: dict[str, list[Any]],
    now: datetime,
) -> dict[str, Any]:
    """A weighed lot's new row: its mass, state and holder (None: it stays where it was)."""
    return {
        **_mass(mass),
        **seen_by,
        "id": lot.id,
        "status": status.value,
        "holder_facility_id": lot.holder_facility_id if holder is None else holder.facility_id,
        "holder_enterprise_id": (
            lot.holder_enterprise_id if holder is None else holder.enterprise_id
        ),
        "updated_at": now,
    }


# --- cancel -----------------------------------------------------------------------------------


async def cancel(
    session: AsyncSession, actor: Actor, shipment_id: uuid.UUID, reason: str
) -> Shipment:
    """The sender calls a shipment back before any receipt; its lots return as they were."""
    shipment = await get_shipment(session, actor, shipment_id, lock=True)
    _require_party(actor, shipment.sender_enterprise_id, "sender")
    if shipment.status != ShipmentStatus.dispatched:
        raise ShipmentNotReceivable(
            f"shipment {shipment.id} is {shipment.status}; only one in transit can be cancelled"
        )
    rows = await session.execute(
        select(col(ShipmentItem.lot_id), col(ShipmentItem.status_before)).where(
            col(ShipmentItem.shipment_id) == shipment.id
        )
    )
    before: dict[uuid.UUID, str] = dict(rows.all())
    lots = await _lock_lots(session, list(before))
    now = utcnow()
    for lot_id, lot in lots.items():
        lot.status = before[lot_id]
        lot.version += 1
        lot.updated_at = now
    shipment.status = ShipmentStatus.cancelled.value
    shipment.cancelled_at = now
    shipment.cancel_reason = reason
    shipment.version += 1
    await session.flush()
    await audit.record(
        session,
        actor,
        "shipment.cancelled",
        subject_type="shipment",
        subject_id=shipment.id,
        enterprise_ids=[shipment.sender_enterprise_id, shipment.receiver_enterprise_id],
        facility_ids=[shipment.from_facility_id, shipment.to_facility_id],
        region_codes=[shipment.from_region, shipment.to_region],
        lot_ids=list(before),
        payload={"reason": reason},
    )
    return shipment


# --- discrepancies ----------------------------------------------------------------------------


async def get_discrepancy(
    session: AsyncSession, actor: Actor, discrepancy_id: uuid.UUID, *, lock: bool = False
) -> Discrepancy:
    query = select(Discrepancy).where(
        col(Discrepancy.id) == discrepancy_id, discrepancy_visible_to(actor)
    )
    found = await session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise NotFound(f"discrepancy {discrepancy_id} not found")
    return found


async def list_discrepancies(
    session: AsyncSession,
    actor: Actor,
    status: DiscrepancyStatus | None,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Page[Discrepancy]:
    query: Select[Discrepancy] = select(Discrepancy).where(discrepancy_visible_to(actor))
    if status is not None:
        query = query.where(col(Discrepancy.status) == status.value)
    return await keyset_page(session, query, col(Discrepancy.id), after=after, limit=limit)


async def answer_discrepancy(
    session: AsyncSession,
    actor: Actor,
    discrepancy_id: uuid.UUID,
    answer: DiscrepancyStatus,
    note: str,
) -> Discrepancy:
    """The sender acknowledges the difference or disputes it (once, while it is open)."""
    assert answer in (DiscrepancyStatus.acknowledged, DiscrepancyStatus.disputed)
    found = await get_discrepancy(session, actor, discrepancy_id, lock=True)
    _require_party(actor, found.sender_enterprise_id, "sender")
    if found.status != DiscrepancyStatus.open:
        raise DiscrepancyClosed(f"the discrepancy is {found.status}, no longer open")
    found.status = answer.value
    found.sender_note = note
    found.answered_at = utcnow()
    return await _discrepancy_changed(session, actor, found, f"discrepancy.{answer.value}", note)


async def resolve_discrepancy(
    session: AsyncSession, actor: Actor, discrepancy_id: uuid.UUID, resolution: str
) -> Discrepancy:
    found = await get_discrepancy(session, actor, discrepancy_id, lock=True)
    governs = any(actor.governs(r) for r in (found.from_region, found.to_region))
    if not actor.is_platform_admin and not (actor.role is Role.supervisor and governs):
        raise Forbidden("only an authority supervisor with jurisdiction resolves discrepancies")
    if found.status == DiscrepancyStatus.resolved:
        raise DiscrepancyClosed("the discrepancy is already resolved")
    found.status = DiscrepancyStatus.resolved.value
    found.resolution = resolution
    found.resolved_at = utcnow()
    return await _discrepancy_changed(session, actor, found, "discrepancy.resolved", resolution)


async def _discrepancy_changed(
    session: AsyncSession, actor: Actor, found: Discrepancy, event: str, note: str
) -> Discrepancy:
    found.version += 1
    await session.flush()
    await audit.record(
        session,
        actor,
        event,
        subject_type="discrepancy",
        subject_id=found.id,
        enterprise_ids=[found.sender_enterprise_id, found.receiver_enterprise_id],
        region_codes=[found.from_region, found.to_region],
        lot_ids=[found.lot_id],
        payload={"shipment_id": found.shipment_id, "note": note, "status": found.status},
    )
    return found
