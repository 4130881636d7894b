"""Shipments, receipts and discrepancies."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import JsonNumber, Kilograms, KilogramsOut, Reason, Strict, Timestamp
from domain.mass import g_to_kg
from domain.shipments.models import Discrepancy, Shipment
from domain.shipments.rules import DiscrepancyStatus, ShipmentStatus, VehicleEnergy
from domain.shipments.service import Line
from domain.shipments.sql import ShipmentRow

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ShipmentCreate(Strict):
    from_facility_id: uuid.UUID
    to_facility_id: uuid.UUID
    lot_ids: list[uuid.UUID] = Field(min_length=1, max_length=500)
    carrier: ShortText | None = None
    vehicle_plate: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=16)] | None
    ) = None
    vehicle_energy: VehicleEnergy | None = None
    emission_standard: Annotated[str, StringConstraints(max_length=16)] | None = Field(
        default=None, examples=["China VI"]
    )
    distance_km: Annotated[Decimal, Field(ge=0, le=10000, decimal_places=1)] | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "from_facility_id": "01936f1e-8d4a-7c3e-9a51-2b7c1d0e4f55",
                    "to_facility_id": "01936f1e-9b2c-7d11-8e20-5f3a9c1b2d44",
                    "lot_ids": ["01936f20-0a1b-7c2d-8e3f-4a5b6c7d8e9f"],
                    "carrier": "贵阳顺达物流",
                    "vehicle_plate": "贵A12345",
                    "vehicle_energy": "lng",
                    "emission_standard": "China VI",
                    "distance_km": 145.5,
                }
            ]
        },
    )


class ReceiptItemIn(Strict):
    lot_id: uuid.UUID
    received_kg: Kilograms | None = Field(
        default=None,
        description="Weighed at the gate; more than 0. May be left out of the one item of a "
        "receipt that names a weighbridge ticket: the ticket's net mass is taken",
    )
    refused_kg: Kilograms = Decimal(0)
    refusal_reason: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None
    ) = None


class ReceiptIn(Strict):
    received_at: Timestamp | None = None
    weighbridge_ticket_no: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description="A ticket posted by the receiving facility's weighbridge: a single lot takes "
        "its net mass (a stated received_kg must equal it), several lots must sum to it; a "
        "ticket weighs one receipt only (409). A number the facility has no ticket for is kept "
        "as written.",
    )
    items: list[ReceiptItemIn] = Field(min_length=1, max_length=500)


class CancelIn(Strict):
    reason: Reason


class ShipmentItemOut(BaseModel):
    lot_id: uuid.UUID
    lot_code: str
    metal: str
    category: str | None
    dispatched_kg: KilogramsOut
    received_kg: KilogramsOut | None
    refused_kg: KilogramsOut | None
    difference_kg: KilogramsOut | None = Field(description="Dispatched minus received")
    refusal_reason: str | None
    refused_lot_id: uuid.UUID | None = Field(description="The child lot returned to the sender")


def _kg(grams: int | None) -> Decimal | None:
    return None if grams is None else g_to_kg(grams)


class ShipmentOut(BaseModel):
    id: uuid.UUID
    status: ShipmentStatus
    from_facility_id: uuid.UUID
    to_facility_id: uuid.UUID
    sender_enterprise_id: uuid.UUID
    receiver_enterprise_id: uuid.UUID
    carrier: str | None
    vehicle_plate: str | None
    vehicle_energy: str | None
    emission_standard: str | None
    distance_km: Annotated[Decimal, JsonNumber] | None
    dispatched_kg: KilogramsOut
    dispatched_at: datetime
    received_at: datetime | None
    weighbridge_ticket_no: str | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    version: int
    items: list[ShipmentItemOut] | None = Field(
        default=None, description="The lots; present on single-shipment answers"
    )

    @classmethod
    def of(
        cls, shipment: Shipment | ShipmentRow, lines: Sequence[Line] | None = None
    ) -> ShipmentOut:
        return cls(
            **{name: getattr(shipment, name) for name in _SHIPMENT_FIELDS},
            dispatched_kg=g_to_kg(shipment.dispatched_g),
            items=None
            if lines is None
            else [
                ShipmentItemOut(
                    lot_id=line.lot_id,
                    lot_code=line.code,
                    metal=line.metal,
                    category=line.category,
                    dispatched_kg=g_to_kg(line.dispatched_g),
                    received_kg=_kg(line.received_g),
                    refused_kg=_kg(line.refused_g),
                    difference_kg=_kg(line.difference_g),
                    refusal_reason=line.refusal_reason,
                    refused_lot_id=line.refused_lot_id,
                )
                for line in lines
            ],
        )


# What the answer takes of a shipment as it is (the rest is converted or added).
_SHIPMENT_FIELDS = tuple(
    name for name in ShipmentOut.model_fields if name not in ("dispatched_kg", "items")
)


class DiscrepancyOut(BaseModel):
    id: uuid.UUID
    shipment_id: uuid.UUID
    lot_id: uuid.UUID
    sender_enterprise_id: uuid.UUID
    receiver_enterprise_id: uuid.UUID
    metal: str
    dispatched_kg: KilogramsOut
    received_kg: KilogramsOut
    difference_kg: KilogramsOut
    tolerance_kg: KilogramsOut
    status: DiscrepancyStatus
    sender_note: str | None
    resolution: str | None
    opened_at: datetime
    answered_at: datetime | None
    resolved_at: datetime | None
    version: int

    @classmethod
    def of(cls, found: Discrepancy) -> DiscrepancyOut:
        return cls(
            **found.model_dump(
                exclude={
                    "dispatched_g",
                    "received_g",
                    "difference_g",
                    "tolerance_g",
                    "from_region",
                    "to_region",
                }
            ),
            dispatched_kg=g_to_kg(found.dispatched_g),
            received_kg=g_to_kg(found.received_g),
            difference_kg=g_to_kg(found.difference_g),
            tolerance_kg=g_to_kg(found.tolerance_g),
        )


class NoteIn(Strict):
    note: Reason
