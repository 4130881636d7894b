"""Dispatch and receipt as set-based SQL: each locks its lots in one statement and writes every
row it changes (the shipment, its items, the lots, refused parts and their lineage,
discrepancies, the events) in one more, whatever the number of lots. Straight on the request's
asyncpg connection (`domain.bulk.driver`), inside the transaction the use case began through
the session: the ORM's per-row objects and statements were most of a request's cost.

Lock order is the one the service documents: the shipment (for a receipt), then the lots in id
order (`ORDER BY id` is applied before the rows are locked), each FOR NO KEY UPDATE like
`lots.service.get_lot`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import Actor
from domain.audit import service as audit
from domain.base import metadata
from domain.bulk import driver
from domain.lots.models import Lot
from domain.lots.rules import Composition, LotStatus
from domain.rows import forget, insert_rows, recordset, rows_json
from domain.shipments.models import Shipment, ShipmentItem


@dataclass(frozen=True, slots=True)
class HeldLot:
    """A lot named in a dispatch, as locked."""

    id: uuid.UUID
    code: str
    metal: str
    category: str | None
    status: str
    net_g: int
    holder_facility_id: uuid.UUID
    holder_enterprise_id: uuid.UUID


_LOCK_LOTS = """
SELECT id, code, metal, category, status, net_g, holder_facility_id, holder_enterprise_id
FROM lot WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
"""


async def lock_lots(
    session: AsyncSession, lot_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, HeldLot]:
    """The lots that exist among `lot_ids`, locked, in id order."""
    rows = await (await driver(session)).fetch(_LOCK_LOTS, list(lot_ids))
    return {row["id"]: HeldLot(*row) for row in rows}


@dataclass(frozen=True, slots=True)
class ArrivingLot:
    """A lot on a shipment being received, as locked, with what its item says was dispatched."""

    id: uuid.UUID
    dispatched_g: int
    code: str
    metal: str
    category: str | None
    post_consumer_g: int
    pre_consumer_g: int
    primary_g: int
    holder_facility_id: uuid.UUID
    holder_enterprise_id: uuid.UUID
    enterprise_ids: list[uuid.UUID]
    region_prefixes: list[str]
    facility_ids: list[uuid.UUID]

    @property
    def composition(self) -> Composition:
        return Composition(self.post_consumer_g, self.pre_consumer_g, self.primary_g)


_LOCK_ARRIVING = """
SELECT l.id, i.dispatched_g, l.code, l.metal, l.category, l.post_consumer_g, l.pre_consumer_g,
    l.primary_g, l.holder_facility_id, l.holder_enterprise_id, l.enterprise_ids,
    l.region_prefixes, l.facility_ids
FROM shipment_item i JOIN lot l ON l.id = i.lot_id
WHERE i.shipment_id = $1 ORDER BY l.id FOR NO KEY UPDATE OF l
"""


async def lock_arriving(session: AsyncSession, shipment_id: uuid.UUID) -> list[ArrivingLot]:
    """The lots on the shipment, locked, in id order."""
    rows = await (await driver(session)).fetch(_LOCK_ARRIVING, shipment_id)
    return [ArrivingLot(*row) for row in rows]


# --- dispatch ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ShipmentRow:
    """A shipment as dispatch and receipt read and write it, its fields in column order. They
    answer with this rather than an ORM `Shipment`: building an instrumented instance cost more
    than the statements that wrote it."""

    id: uuid.UUID
    from_facility_id: uuid.UUID
    to_facility_id: uuid.UUID
    sender_enterprise_id: uuid.UUID
    receiver_enterprise_id: uuid.UUID
    from_region: str
    to_region: str
    status: str
    carrier: str | None
    vehicle_plate: str | None
    vehicle_energy: str | None
    emission_standard: str | None
    distance_km: Decimal | None
    dispatched_g: int
    dispatched_at: datetime
    received_at: datetime | None = None
    weighbridge_ticket_no: str | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    version: int = 1


SHIPMENT_COLUMNS = tuple(f.name for f in fields(ShipmentRow))
assert tuple(metadata.tables["shipment"].columns.keys()) == SHIPMENT_COLUMNS, "ShipmentRow drifted"
_LOADED_COLUMNS = ("shipment_id", "lot_id", "status_before", "dispatched_g")

_DISPATCH = (
    f"WITH dispatched AS ({insert_rows('shipment', SHIPMENT_COLUMNS, 1)}),"  # noqa: S608 - constants
    f" loaded AS ({insert_rows('shipment_item', _LOADED_COLUMNS, 2)}),"
    f" moved AS (UPDATE lot SET status = '{LotStatus.in_transit.value}',"
    " version = version + 1, updated_at = $3 WHERE id = ANY($4::uuid[]))"
    f" {insert_rows('event', audit.EVENT_COLUMNS, 5)}"
)


async def write_dispatch(
    session: AsyncSession,
    actor: Actor,
    shipment: ShipmentRow,
    lots: Sequence[HeldLot],
    change: audit.Change,
) -> None:
    """The shipment, an item per lot (with its status and mass as dispatched), the lots in
    transit and the event, in one statement."""
    items = [
        {"shipment_id": shipment.id, "lot_id": lot.id, "status_before": lot.status,
         "dispatched_g": lot.net_g}
        for lot in lots
    ]  # fmt: skip
    await (await driver(session)).execute(
        _DISPATCH,
        rows_json([{name: getattr(shipment, name) for name in SHIPMENT_COLUMNS}]),
        rows_json(items),
        shipment.dispatched_at,
        [lot.id for lot in lots],
        rows_json(audit.event_rows(actor, [change])),
    )
    forget(session, Lot, (lot.id for lot in lots))


# --- receipt ----------------------------------------------------------------------------------

# What a receipt sets on each lot it weighed; the version goes up by one. The lots are also
# named by an array ($11): the planner cannot see how few rows a recordset holds (it assumes a
# hundred), and with the ids as an index condition it never scans the lot table for them.
_SETTLED = (
    "net_g", "post_consumer_g", "pre_consumer_g", "primary_g", "status", "holder_facility_id",
    "holder_enterprise_id", "enterprise_ids", "region_prefixes", "facility_ids", "updated_at",
)  # fmt: skip
# A refused part of a lot: these from the receipt; the other columns as its parent's (like
# `lots.service.child_of`), but the times, which take their defaults.
_RETURNED = (
    "id", "code", "net_g", "post_consumer_g", "pre_consumer_g", "primary_g", "status", "version",
    "parent_lot_id", "holder_facility_id", "holder_enterprise_id", "enterprise_ids",
    "region_prefixes", "facility_ids",
)  # fmt: skip
_INHERITED = tuple(
    c.name
    for c in metadata.tables["lot"].columns
    if c.name not in (*_RETURNED, "registered_at", "updated_at")
)
_LINEAGE_COLUMNS = ("lot_id", "source_lot_id", "grams", "of_g", "via")
_DISCREPANCY_COLUMNS = (
    "id", "shipment_id", "lot_id", "sender_enterprise_id", "receiver_enterprise_id",
    "from_region", "to_region", "metal", "dispatched_g", "received_g", "difference_g",
    "tolerance_g", "status", "version",
)  # fmt: skip

_SET_SETTLED = ", ".join(f"{c} = v.{c}" for c in _SETTLED)
_RETURNED_VALUES = ", ".join([f"v.{c}" for c in _RETURNED] + [f"p.{c}" for c in _INHERITED])
_RECEIPT = (
    "WITH weighed AS (UPDATE shipment_item i SET received_g = v.received_g,"  # noqa: S608 - constants
    " refused_g = v.refused_g, difference_g = v.difference_g,"
    " refusal_reason = v.refusal_reason, refused_lot_id = v.refused_lot_id"
    f" FROM {recordset('shipment_item', 2)} v"
    " WHERE i.shipment_id = $1 AND i.lot_id = v.lot_id),"
    f" settled AS (UPDATE lot l SET {_SET_SETTLED}, version = l.version + 1"
    f" FROM {recordset('lot', 3)} v WHERE l.id = ANY($11::uuid[]) AND l.id = v.id),"
    f" returned AS (INSERT INTO lot ({', '.join(_RETURNED + _INHERITED)})"
    f" SELECT {_RETURNED_VALUES} FROM {recordset('lot', 4)} v"
    " JOIN lot p ON p.id = ANY($11::uuid[]) AND p.id = v.parent_lot_id),"
    f" lineage AS ({insert_rows('lot_source', _LINEAGE_COLUMNS, 5)}),"
    f" opened AS ({insert_rows('discrepancy', _DISCREPANCY_COLUMNS, 6)}),"
    " received AS (UPDATE shipment SET status = $7, received_at = $8,"
    " weighbridge_ticket_no = $9, version = version + 1 WHERE id = $1)"
    f" {insert_rows('event', audit.EVENT_COLUMNS, 10)}"
)


@dataclass
class ReceiptRows:
    """The rows a receipt writes, filled lot by lot by the service."""

    items: list[dict[str, Any]]  # shipment_item: what arrived
    lots: list[dict[str, Any]]  # lot: `_SETTLED`, by id
    returned: list[dict[str, Any]]  # lot: `_RETURNED`, refused parts back with the sender
    lineage: list[dict[str, Any]]  # lot_source: each refused part from its lot
    discrepancies: list[dict[str, Any]]  # discrepancy: `_DISCREPANCY_COLUMNS`


async def write_receipt(
    session: AsyncSession,
    actor: Actor,
    shipment: ShipmentRow,
    rows: ReceiptRows,
    changes: Sequence[audit.Change],
) -> None:
    """Everything a receipt changes, in one statement; `shipment` carries its new status,
    receipt time and ticket number."""
    await (await driver(session)).execute(
        _RECEIPT,
        shipment.id,
        rows_json(rows.items),
        rows_json(rows.lots),
        rows_json(rows.returned),
        rows_json(rows.lineage),
        rows_json(rows.discrepancies),
        shipment.status,
        shipment.received_at,
        shipment.weighbridge_ticket_no,
        rows_json(audit.event_rows(actor, changes)),
        [lot["id"] for lot in rows.lots],
    )
    forget(session, Shipment, [shipment.id])
    forget(session, ShipmentItem, ((shipment.id, item["lot_id"]) for item in rows.items))
    forget(session, Lot, (lot["id"] for lot in rows.lots))
