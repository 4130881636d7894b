"""Weighbridge tickets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import KilogramsOut, PositiveKilograms, Strict, Timestamp
from domain.mass import g_to_kg
from domain.weighbridge.models import WeighbridgeTicket


class TicketCreate(Strict):
    ticket_no: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
    ] = Field(description="The scale's ticket number; used once per facility (a repeat is 409)")
    vehicle_plate: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)
    ]
    gross_kg: PositiveKilograms = Field(description="The loaded vehicle")
    tare_kg: PositiveKilograms = Field(description="The empty vehicle; less than gross")
    net_kg: PositiveKilograms = Field(description="Exactly gross − tare (else 422)")
    weighed_at: Timestamp
    facility_id: uuid.UUID | None = Field(
        default=None,
        description="The device key's facility (the default); any other facility is 403",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "ticket_no": "ZY-2026-000123",
                    "vehicle_plate": "贵C12345",
                    "gross_kg": 31840.5,
                    "tare_kg": 14220.0,
                    "net_kg": 17620.5,
                    "weighed_at": "2026-11-20T09:42:17+08:00",
                }
            ]
        },
    )


class TicketOut(BaseModel):
    id: uuid.UUID
    facility_id: uuid.UUID
    enterprise_id: uuid.UUID
    ticket_no: str
    vehicle_plate: str
    gross_kg: KilogramsOut
    tare_kg: KilogramsOut
    net_kg: KilogramsOut
    weighed_at: datetime
    recorded_at: datetime
    device_key_id: uuid.UUID | None = Field(description="The device key that posted it")
    shipment_id: uuid.UUID | None = Field(
        description="The shipment whose receipt took this ticket's mass; null while unused"
    )
    used_at: datetime | None

    @classmethod
    def of(cls, ticket: WeighbridgeTicket) -> TicketOut:
        return cls(
            **ticket.model_dump(exclude={"gross_g", "tare_g", "net_g", "region_code"}),
            gross_kg=g_to_kg(ticket.gross_g),
            tare_kg=g_to_kg(ticket.tare_g),
            net_kg=g_to_kg(ticket.net_g),
        )
