"""Weighbridge use cases: a facility's scale posts tickets with its device key; the facility's
enterprise and the authorities over it read them; a receipt takes a ticket's net mass."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from sqlalchemy import ColumnElement, Select, false, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import Actor, Role
from domain.audit import service as audit
from domain.base import utcnow
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.ids import new_id
from domain.lots.service import CLOCK_SKEW, FacilitySuspended
from domain.mass import g_to_kg
from domain.pagination import Page, keyset_page
from domain.registry.models import Enterprise, Facility
from domain.registry.rules import Status
from domain.registry.service import EnterpriseSuspended, get_facility
from domain.weighbridge.models import WeighbridgeDuplicate, WeighbridgeTicket
from domain.weighbridge.rules import Weighing, kg, net_mismatch, ticket_problems, weigh_receipt


class NetMismatch(InvalidInput):
    code = "weighbridge_net_mismatch"
    title = "Net is not gross less tare"


class DuplicateTicket(Conflict):
    code = "duplicate_weighbridge_ticket"
    title = "This ticket number is already recorded at the facility"
    keeps_writes = True  # the refused attempt stays on record as an anomaly


class TicketMassMismatch(InvalidInput):
    code = "weighbridge_mass_mismatch"
    title = "The receipt's masses disagree with the weighbridge ticket"


class TicketUsed(Conflict):
    code = "weighbridge_ticket_used"
    title = "The weighbridge ticket already weighed another receipt"


@dataclass(frozen=True, slots=True)
class Reading:
    """One weighing as the scale reports it."""

    ticket_no: str
    vehicle_plate: str
    gross_g: int
    tare_g: int
    net_g: int
    weighed_at: datetime
    facility_id: uuid.UUID | None = None  # the device's own facility when omitted


# --- visibility -------------------------------------------------------------------------------


def ticket_visible_to(actor: Actor) -> ColumnElement[bool]:
    """The facility's enterprise and the authorities governing its region."""
    if actor.is_platform_admin:
        return true()
    if actor.enterprise_id is not None and actor.role is not Role.device:
        return col(WeighbridgeTicket.enterprise_id) == actor.enterprise_id
    if actor.jurisdiction is not None:
        return col(WeighbridgeTicket.region_code).startswith(actor.jurisdiction, autoescape=True)
    return false()


async def get_ticket(
    session: AsyncSession, actor: Actor, ticket_id: uuid.UUID
) -> WeighbridgeTicket:
    ticket = await session.scalar(
        select(WeighbridgeTicket).where(
            col(WeighbridgeTicket.id) == ticket_id, ticket_visible_to(actor)
        )
    )
    if ticket is None:
        raise NotFound(f"weighbridge ticket {ticket_id} not found")
    return ticket


async def list_tickets(
    session: AsyncSession,
    actor: Actor,
    facility_id: uuid.UUID,
    *,
    ticket_no: str | None = None,
    unused: bool | None = None,
    after: uuid.UUID | None,
    limit: int,
) -> Page[WeighbridgeTicket]:
    """A facility's tickets, oldest first; the facility must be visible (404 otherwise)."""
    facility = await get_facility(session, actor, facility_id)
    query: Select[WeighbridgeTicket] = select(WeighbridgeTicket).where(
        col(WeighbridgeTicket.facility_id) == facility.id, ticket_visible_to(actor)
    )
    if ticket_no is not None:
        query = query.where(col(WeighbridgeTicket.ticket_no) == ticket_no)
    if unused is not None:
        used = col(WeighbridgeTicket.shipment_id)
        query = query.where(used.is_(None) if unused else used.is_not(None))
    return await keyset_page(session, query, col(WeighbridgeTicket.id), after=after, limit=limit)


# --- recording --------------------------------------------------------------------------------


async def _device_facility(
    session: AsyncSession, actor: Actor, facility_id: uuid.UUID | None
) -> Facility:
    """The facility of the calling device key, which must be active in an active enterprise."""
    if actor.role is not Role.device or actor.facility_id is None:
        raise Forbidden("weighbridge tickets are posted by the facility's device key")
    if facility_id is not None and facility_id != actor.facility_id:
        raise Forbidden(f"this device key posts tickets for facility {actor.facility_id} only")
    facility = await session.get_one(Facility, actor.facility_id)
    enterprise = await session.get_one(Enterprise, facility.enterprise_id)
    if enterprise.status != Status.active:
        raise EnterpriseSuspended(f"enterprise {enterprise.name} is suspended")
    if facility.status != Status.active:
        raise FacilitySuspended(f"facility {facility.name} is suspended")
    return facility


def _check(reading: Reading) -> None:
    problems = ticket_problems(reading.gross_g, reading.tare_g)
    if problems:
        raise InvalidInput(
            f"{problems[0].pointer}: {problems[0].detail}",
            errors=[{"pointer": p.pointer, "detail": p.detail} for p in problems],
        )
    mismatch = net_mismatch(reading.gross_g, reading.tare_g, reading.net_g)
    if mismatch is not None:
        raise NetMismatch(
            mismatch,
            errors=[{"pointer": "/net_kg", "detail": mismatch}],
            net_kg=float(g_to_kg(reading.net_g)),
            gross_less_tare_kg=float(g_to_kg(reading.gross_g - reading.tare_g)),
        )
    if reading.weighed_at > utcnow() + CLOCK_SKEW:
        raise InvalidInput(
            "weighed_at lies in the future",
            errors=[{"pointer": "/weighed_at", "detail": "in the future"}],
        )


def _figures(reading: Reading) -> dict[str, object]:
    return {
        "ticket_no": reading.ticket_no,
        "vehicle_plate": reading.vehicle_plate,
        "gross_g": reading.gross_g,
        "tare_g": reading.tare_g,
        "net_g": reading.net_g,
        "weighed_at": reading.weighed_at,
    }


async def record_ticket(session: AsyncSession, actor: Actor, reading: Reading) -> WeighbridgeTicket:
    """Record a ticket. The unique (facility, ticket number) constraint decides duplicates, also
    between concurrent posts; a duplicate is refused (409) and the attempt kept as an anomaly."""
    facility = await _device_facility(session, actor, reading.facility_id)
    _check(reading)
    owner = {
        "facility_id": facility.id,
        "enterprise_id": facility.enterprise_id,
        "region_code": facility.region_code,
        "device_key_id": actor.principal_id,
    }
    ticket: WeighbridgeTicket | None = await session.scalar(
        insert(WeighbridgeTicket)
        .values(id=new_id(), **owner, **_figures(reading))
        .on_conflict_do_nothing(index_elements=["facility_id", "ticket_no"])
        .returning(WeighbridgeTicket)
    )
    if ticket is None:
        await _refuse_duplicate(session, actor, facility, reading, owner)
    await audit.record(
        session,
        actor,
        "weighbridge.ticket_recorded",
        subject_type="weighbridge_ticket",
        subject_id=ticket.id,
        enterprise_ids=[facility.enterprise_id],
        facility_ids=[facility.id],
        region_codes=[facility.region_code],
        payload={"facility_id": facility.id, **_figures(reading)},
    )
    return ticket


async def _refuse_duplicate(
    session: AsyncSession,
    actor: Actor,
    facility: Facility,
    reading: Reading,
    owner: dict[str, object],
) -> NoReturn:
    first = await session.scalar(
        select(WeighbridgeTicket).where(
            col(WeighbridgeTicket.facility_id) == facility.id,
            col(WeighbridgeTicket.ticket_no) == reading.ticket_no,
        )
    )
    assert first is not None  # the conflict was with a committed row: it stays
    duplicate = WeighbridgeDuplicate.model_validate(
        {"id": new_id(), "ticket_id": first.id, **owner, **_figures(reading)}
    )
    session.add(duplicate)
    await session.flush()
    same = (first.gross_g, first.tare_g, first.vehicle_plate) == (
        reading.gross_g,
        reading.tare_g,
        reading.vehicle_plate,
    )
    await audit.record(
        session,
        actor,
        "weighbridge.ticket_refused",
        subject_type="weighbridge_duplicate",
        subject_id=duplicate.id,
        enterprise_ids=[facility.enterprise_id],
        facility_ids=[facility.id],
        region_codes=[facility.region_code],
        payload={
            "facility_id": facility.id,
            "reason": "duplicate_ticket_no",
            "recorded_ticket_id": first.id,
            "same_figures": same,
            **_figures(reading),
        },
    )
    raise DuplicateTicket(
        f"ticket {reading.ticket_no} is already recorded at facility {facility.name}"
        f" (net {kg(first.net_g)}, weighed {first.weighed_at.isoformat()}); the attempt is"
        " kept as an anomaly",
        ticket_id=str(first.id),
    )


# --- receipts ---------------------------------------------------------------------------------


async def ticket_for_receipt(
    session: AsyncSession, facility_id: uuid.UUID, ticket_no: str | None
) -> WeighbridgeTicket | None:
    """The receiving facility's ticket of this number, locked for the receipt; None when the
    facility has none (the number is then kept as written). A ticket weighs one receipt only."""
    if ticket_no is None:
        return None
    ticket = await session.scalar(
        select(WeighbridgeTicket)
        .where(
            col(WeighbridgeTicket.facility_id) == facility_id,
            col(WeighbridgeTicket.ticket_no) == ticket_no,
        )
        .with_for_update()
    )
    if ticket is not None and ticket.shipment_id is not None:
        raise TicketUsed(
            f"weighbridge ticket {ticket_no} already weighed the receipt of shipment"
            f" {ticket.shipment_id}",
            shipment_id=str(ticket.shipment_id),
        )
    return ticket


def weigh(ticket: WeighbridgeTicket, stated_g: list[int | None]) -> list[int]:
    """The received mass of each receipt item from the ticket (see `rules.weigh_receipt`)."""
    weighing: Weighing = weigh_receipt(ticket.net_g, stated_g)
    if weighing.problem is not None:
        extra: dict[str, object] = {"ticket_net_kg": float(g_to_kg(ticket.net_g))}
        if weighing.items_g is not None:
            extra["items_kg"] = float(g_to_kg(weighing.items_g))
        raise TicketMassMismatch(
            weighing.problem.detail,
            errors=[{"pointer": weighing.problem.pointer, "detail": weighing.problem.detail}],
            **extra,
        )
    return weighing.received_g


def use_ticket(ticket: WeighbridgeTicket, shipment_id: uuid.UUID) -> None:
    ticket.shipment_id = shipment_id
    ticket.used_at = utcnow()
