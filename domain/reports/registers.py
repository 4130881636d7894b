"""A facility's register of incoming and outgoing lots (DESIGN §2.9): what came in (registered
from sellers, received by shipment, produced by its runs) or went out (dispatched, consumed by its
runs), with masses as they were at the time. Read as a stream: a year of a busy facility never
sits in memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import Actor
from domain.registry.models import Facility
from domain.registry.service import get_facility


class Direction(StrEnum):
    incoming = "incoming"
    outgoing = "outgoing"


COLUMNS = (
    "at", "movement", "lot_id", "lot_code", "kind", "metal", "grade", "kg",
    "counterparty_facility_id", "counterparty", "shipment_id", "transformation_id",
    "weighbridge_ticket_no", "vehicle_plate",
)  # fmt: skip

_LOT = "l.id, l.code, l.kind, l.metal, coalesce(l.category, l.product_form)"

_INCOMING = f"""
SELECT e.occurred_at AS at, 'registered' AS movement, {_LOT}, (e.payload->>'net_g')::bigint,
       NULL::uuid, l.seller_name_masked, NULL::uuid, NULL::uuid, NULL, NULL
FROM event e JOIN lot l ON l.id = e.subject_id::uuid
WHERE e.type = 'lot.registered' AND e.facility_ids @> ARRAY[CAST(:facility AS uuid)]
  AND e.occurred_at >= :from AND e.occurred_at < :to
UNION ALL
SELECT s.received_at, 'received', {_LOT}, i.received_g - coalesce(i.refused_g, 0),
       s.from_facility_id, f.name, s.id, NULL::uuid, s.weighbridge_ticket_no, s.vehicle_plate
FROM shipment s
JOIN shipment_item i ON i.shipment_id = s.id
JOIN lot l ON l.id = i.lot_id
JOIN facility f ON f.id = s.from_facility_id
WHERE s.to_facility_id = :facility
  AND s.received_at >= :from AND s.received_at < :to
UNION ALL
SELECT t.ended_at, 'produced', {_LOT},
       coalesce((SELECT max(src.of_g) FROM lot_source src WHERE src.lot_id = l.id), l.net_g),
       NULL::uuid, t.process, NULL::uuid, t.id, NULL, NULL
FROM transformation t
JOIN transformation_output o ON o.transformation_id = t.id
JOIN lot l ON l.id = o.lot_id
WHERE t.facility_id = :facility AND t.status = 'recorded'
  AND t.ended_at >= :from AND t.ended_at < :to
ORDER BY 1, 4
"""  # noqa: S608 - constant fragments only

_OUTGOING = f"""
SELECT s.dispatched_at AS at, 'dispatched' AS movement, {_LOT}, i.dispatched_g,
       s.to_facility_id, f.name, s.id, NULL::uuid, s.weighbridge_ticket_no, s.vehicle_plate
FROM shipment s
JOIN shipment_item i ON i.shipment_id = s.id
JOIN lot l ON l.id = i.lot_id
JOIN facility f ON f.id = s.to_facility_id
WHERE s.from_facility_id = :facility AND s.status <> 'cancelled'
  AND s.dispatched_at >= :from AND s.dispatched_at < :to
UNION ALL
SELECT t.ended_at, 'consumed', {_LOT}, ti.taken_g,
       NULL::uuid, t.process, NULL::uuid, t.id, NULL, NULL
FROM transformation t
JOIN transformation_input ti ON ti.transformation_id = t.id
JOIN lot l ON l.id = ti.lot_id
WHERE t.facility_id = :facility AND t.status = 'recorded'
  AND t.ended_at >= :from AND t.ended_at < :to
ORDER BY 1, 4
"""  # noqa: S608 - constant fragments only


@dataclass(frozen=True, slots=True)
class RegisterQuery:
    facility_id: uuid.UUID
    direction: Direction
    period_from: datetime
    period_to: datetime


async def register_facility(
    session: AsyncSession, actor: Actor, facility_id: uuid.UUID
) -> Facility:
    """The facility, if the caller may read its register: its enterprise and the authorities
    over it (anyone else gets 404, as for the facility itself)."""
    return await get_facility(session, actor, facility_id)


async def register_rows(
    session: AsyncSession, query: RegisterQuery, *, chunk: int = 1000
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The register's rows (in `COLUMNS` order, grams in the `kg` place), oldest first, in
    chunks fetched through a server-side cursor."""
    sql = _INCOMING if query.direction is Direction.incoming else _OUTGOING
    result = await session.stream(
        text(sql),
        {"facility": query.facility_id, "from": query.period_from, "to": query.period_to},
    )
    async for rows in result.partitions(chunk):
        yield [tuple(row) for row in rows]
