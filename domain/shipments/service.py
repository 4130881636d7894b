"""Shipment use cases: dispatch, receipt (with weights and refusals), cancel, discrepancies.

Races are decided by row locks: the lots of a dispatch, and the shipment of a receipt or cancel,
are locked (in id order, so two multi-lot dispatches cannot deadlock) before they are checked."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import Actor, Role
from domain.audit import service as audit
from domain.base import utcnow
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.lots.models import Lot, LotSource
from domain.lots.rules import MOVABLE, Composition, LotStatus, Metal
from domain.lots.service import (
    CLOCK_SKEW,
    FacilitySuspended,
    LotNotAvailable,
    Problems,
    child_of,
    composition_of,
    derived_from,
    next_codes,
    region_prefixes,
    require_operator,
)
from domain.pagination import Page, keyset_page
from domain.registry.models import Enterprise, Facility
from domain.registry.rules import Status
from domain.registry.service import EnterpriseSuspended
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
    shipment = await session.scalar(query.with_for_update() if lock else query)
    if shipment is None:
        raise NotFound(f"shipment {shipment_id} not found")
    return shipment


async def shipment_items(
    session: AsyncSession, shipment_id: uuid.UUID
) -> list[tuple[ShipmentItem, Lot]]:
    rows = await session.execute(
        select(ShipmentItem, Lot)
        .join(Lot, col(Lot.id) == col(ShipmentItem.lot_id))
        .where(col(ShipmentItem.shipment_id) == shipment_id)
        .order_by(col(Lot.id))
    )
    return [(item, lot) for item, lot in rows]


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


async def _active_party(session: AsyncSession, facility: Facility, what: str) -> None:
    """Suspended enterprises and facilities can neither dispatch nor receive."""
    enterprise = await session.get_one(Enterprise, facility.enterprise_id)
    if enterprise.status != Status.active:
        raise EnterpriseSuspended(f"the {what} enterprise {enterprise.name} is suspended")
    if facility.status != Status.active:
        raise FacilitySuspended(f"the {what} facility {facility.name} is suspended")


def _require_party(actor: Actor, enterprise_id: uuid.UUID, what: str) -> None:
    require_operator(actor)
    if not actor.is_platform_admin and actor.enterprise_id != enterprise_id:
        raise Forbidden(f"only the {what} may do this")


async def _lock_lots(session: AsyncSession, lot_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Lot]:
    rows = await session.scalars(
        select(Lot)
        .where(col(Lot.id).in_(lot_ids))
        .order_by(col(Lot.id))
        .with_for_update(key_share=True)
    )
    return {lot.id: lot for lot in rows}


# --- dispatch ---------------------------------------------------------------------------------


async def dispatch(session: AsyncSession, actor: Actor, order: Dispatch) -> Shipment:
    problems = Problems()
    seen: set[uuid.UUID] = set()
    for index, lot_id in enumerate(order.lot_ids):
        if lot_id in seen:
            problems.add(f"/lot_ids/{index}", f"lot {lot_id} is listed twice")
        seen.add(lot_id)
    if order.from_facility_id == order.to_facility_id:
        problems.add("/to_facility_id", "a shipment goes to another facility")
    problems.raise_if_any()

    source = await session.get(Facility, order.from_facility_id)
    if source is None or (
        not actor.is_platform_admin and source.enterprise_id != actor.enterprise_id
    ):
        raise NotFound(f"facility {order.from_facility_id} not found")
    _require_party(actor, source.enterprise_id, "sender")
    await _active_party(session, source, "sending")
    target = await session.get(Facility, order.to_facility_id)
    if target is None:
        raise UnknownFacility(
            f"facility {order.to_facility_id} does not exist",
            errors=[{"pointer": "/to_facility_id", "detail": "unknown facility"}],
        )
    await _active_party(session, target, "receiving")

    lots = await _lock_lots(session, order.lot_ids)
    for index, lot_id in enumerate(order.lot_ids):
        lot = lots.get(lot_id)
        if lot is None or (
            not actor.is_platform_admin and lot.holder_enterprise_id != actor.enterprise_id
        ):
            raise NotFound(
                f"lot {lot_id} not found",
                errors=[{"pointer": f"/lot_ids/{index}", "detail": "not found"}],
            )
        if lot.status not in MOVABLE or lot.holder_facility_id != source.id:
            raise LotNotAvailable(
                f"lot {lot.code} is {lot.status} at {lot.holder_facility_id}; "
                "only a lot at rest at the sending facility can be dispatched",
                errors=[{"pointer": f"/lot_ids/{index}", "detail": f"lot is {lot.status}"}],
            )

    now = utcnow()
    shipment = Shipment(
        from_facility_id=source.id,
        to_facility_id=target.id,
        sender_enterprise_id=source.enterprise_id,
        receiver_enterprise_id=target.enterprise_id,
        from_region=source.region_code,
        to_region=target.region_code,
        carrier=order.carrier,
        vehicle_plate=order.vehicle_plate,
        vehicle_energy=order.vehicle_energy,
        emission_standard=order.emission_standard,
        distance_km=order.distance_km,
        dispatched_g=sum(lots[i].net_g for i in order.lot_ids),
        dispatched_at=now,
    )
    session.add(shipment)
    for lot_id in order.lot_ids:
        lot = lots[lot_id]
        session.add(
            ShipmentItem(
                shipment_id=shipment.id,
                lot_id=lot.id,
                status_before=lot.status,
                dispatched_g=lot.net_g,
            )
        )
        lot.status = LotStatus.in_transit.value
        lot.version += 1
        lot.updated_at = now
    await session.flush()
    await audit.record(
        session,
        actor,
        "shipment.dispatched",
        subject_type="shipment",
        subject_id=shipment.id,
        enterprise_ids=[shipment.sender_enterprise_id, shipment.receiver_enterprise_id],
        facility_ids=[source.id, target.id],
        region_codes=[source.region_code, target.region_code],
        lot_ids=list(order.lot_ids),
        payload={
            "from_facility_id": source.id,
            "to_facility_id": target.id,
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
    return shipment


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


async def receive(
    session: AsyncSession,
    actor: Actor,
    shipment_id: uuid.UUID,
    receipt: Receipt,
    tolerances: Mapping[str, Decimal],
) -> Shipment:
    shipment = await get_shipment(session, actor, shipment_id, lock=True)
    _require_party(actor, shipment.receiver_enterprise_id, "receiver")
    if shipment.status != ShipmentStatus.dispatched:
        raise ShipmentNotReceivable(f"shipment {shipment.id} is {shipment.status}")
    target = await session.get_one(Facility, shipment.to_facility_id)
    source = await session.get_one(Facility, shipment.from_facility_id)
    await _active_party(session, target, "receiving")
    now = utcnow()
    received_at = receipt.received_at or now
    if received_at > now + CLOCK_SKEW or (
        shipment.dispatched_at and received_at < shipment.dispatched_at
    ):
        raise InvalidInput(
            "received_at must lie between the dispatch and now",
            errors=[{"pointer": "/received_at", "detail": "outside the transit window"}],
        )
    items = {item.lot_id: item for item, _ in await shipment_items(session, shipment.id)}
    ticket = await weighbridge.ticket_for_receipt(session, target.id, receipt.weighbridge_ticket_no)
    if ticket is not None:
        masses = weighbridge.weigh(ticket, [line.received_g for line in receipt.lines])
        receipt = replace(
            receipt,
            lines=[
                replace(line, received_g=g) for line, g in zip(receipt.lines, masses, strict=True)
            ],
        )
    _check_lines(receipt, set(items))
    lots = await _lock_lots(session, list(items))

    settlements = []
    refused_children: list[tuple[Lot, Lot]] = []
    lineage: list[LotSource] = []
    discrepancies: list[Discrepancy] = []
    lines = {line.lot_id: line for line in receipt.lines}
    codes = iter(
        await next_codes(
            session,
            [
                Metal(lots[i].metal)
                for i, line in lines.items()
                if 0 < line.refused_g < (line.received_g or 0)
            ],
        )
    )
    for lot_id, line in lines.items():
        lot, item = lots[lot_id], items[lot_id]
        assert line.received_g is not None  # _check_lines refused the rest
        settlement = settle(
            composition_of(lot),
            line.received_g,
            line.refused_g,
        )
        settlements.append(settlement)
        _touch(lot, target)
        if settlement.accepted is not None:
            _set_mass(lot, settlement.accepted)
            lot.holder_facility_id, lot.holder_enterprise_id = target.id, target.enterprise_id
            lot.status = LotStatus.active.value
            if settlement.refused is not None:
                child = child_of(
                    lot, next(codes), settlement.refused, status=LotStatus.refused, holder=source
                )
                refused_children.append((lot, child))
                item.refused_lot_id = child.id
                lineage.append(derived_from(lot, child, "refusal"))
        else:
            assert settlement.refused is not None
            _set_mass(lot, settlement.refused)
            lot.status = LotStatus.refused.value  # back with the sender until shipped again
        lot.version += 1
        lot.updated_at = now
        item.received_g, item.refused_g = line.received_g, line.refused_g
        item.difference_g = settlement.difference_g
        item.refusal_reason = line.refusal_reason
        allowed = tolerance_g(item.dispatched_g, tolerances.get(lot.metal, DEFAULT_TOLERANCE))
        if abs(settlement.difference_g) > allowed:
            discrepancies.append(
                Discrepancy(
                    shipment_id=shipment.id,
                    lot_id=lot.id,
                    sender_enterprise_id=shipment.sender_enterprise_id,
                    receiver_enterprise_id=shipment.receiver_enterprise_id,
                    from_region=shipment.from_region,
                    to_region=shipment.to_region,
                    metal=lot.metal,
                    dispatched_g=item.dispatched_g,
                    received_g=line.received_g,
                    difference_g=settlement.difference_g,
                    tolerance_g=allowed,
                )
            )
    session.add_all([child for _, child in refused_children])
    session.add_all(lineage)
    session.add_all(discrepancies)
    shipment.status = outcome(settlements).value
    shipment.received_at = received_at
    shipment.weighbridge_ticket_no = receipt.weighbridge_ticket_no
    shipment.version += 1
    if ticket is not None:
        weighbridge.use_ticket(ticket, shipment.id)
    await session.flush()

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
            facility_ids=[source.id, target.id],
            region_codes=[source.region_code, target.region_code],
        )

    received = change(
        "shipment.received",
        shipment.id,
        [*lines, *(child.id for _, child in refused_children)],
        {
            "status": shipment.status,
            "received_at": received_at,
            "weighbridge_ticket_no": receipt.weighbridge_ticket_no,
            **({"weighbridge_ticket_id": ticket.id} if ticket is not None else {}),
            "items": [
                {
                    "lot_id": i,
                    "dispatched_g": items[i].dispatched_g,
                    "received_g": items[i].received_g,
                    "refused_g": items[i].refused_g,
                    "difference_g": items[i].difference_g,
                    "refusal_reason": items[i].refusal_reason,
                    "refused_lot_id": items[i].refused_lot_id,
                }
                for i in lines
            ],
        },
    )
    opened = [
        change(
            "discrepancy.opened",
            d.id,
            [d.lot_id],
            {
                "shipment_id": d.shipment_id,
                "dispatched_g": d.dispatched_g,
                "received_g": d.received_g,
                "difference_g": d.difference_g,
                "tolerance_g": d.tolerance_g,
            },
        )
        for d in discrepancies
    ]
    await audit.record_many(session, actor, [received, *opened])
    return shipment


def _set_mass(lot: Lot, composition: Composition) -> None:
    lot.net_g = composition.total_g
    lot.post_consumer_g = composition.post_consumer_g
    lot.pre_consumer_g = composition.pre_consumer_g
    lot.primary_g = composition.primary_g


def _touch(lot: Lot, facility: Facility) -> None:
    """The receiving facility has touched the lot: its enterprise and authorities may see it."""
    lot.enterprise_ids = list(dict.fromkeys([*lot.enterprise_ids, facility.enterprise_id]))
    lot.region_prefixes = list(
        dict.fromkeys([*lot.region_prefixes, *region_prefixes(facility.region_code)])
    )
    lot.facility_ids = list(dict.fromkeys([*lot.facility_ids, facility.id]))


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
    items = {item.lot_id: item for item, _ in await shipment_items(session, shipment.id)}
    lots = await _lock_lots(session, list(items))
    now = utcnow()
    for lot_id, lot in lots.items():
        lot.status = items[lot_id].status_before
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
        lot_ids=list(items),
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
