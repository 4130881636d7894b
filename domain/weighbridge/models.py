"""Weighbridge tickets: what a facility's scale weighed (a loaded truck, gross; the empty truck,
tare), posted by the scale itself through a device key. A ticket number is used once per facility;
a second ticket with the same number is refused and kept as evidence for the regulators."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    UniqueConstraint,
    Uuid,
)
from sqlmodel import Field, SQLModel

from domain.base import grams_column, timestamp
from domain.ids import new_id


def _ref(table: str, *, nullable: bool = False) -> Column[uuid.UUID]:
    return Column(Uuid(), ForeignKey(f"{table}.id"), nullable=nullable)


class WeighbridgeTicket(SQLModel, table=True):
    __tablename__ = "weighbridge_ticket"
    __table_args__ = (
        # The duplicate check is this constraint (INSERT ... ON CONFLICT), not a read before.
        UniqueConstraint("facility_id", "ticket_no"),
        # A receipt takes at most one ticket, and a ticket serves at most one receipt.
        UniqueConstraint("shipment_id"),
        CheckConstraint("tare_g > 0", name="tare_positive"),
        CheckConstraint("gross_g > tare_g", name="gross_above_tare"),
        CheckConstraint("net_g = gross_g - tare_g", name="net_is_gross_less_tare"),
        Index("ix_weighbridge_ticket_facility", "facility_id", "id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    facility_id: uuid.UUID = Field(sa_column=_ref("facility"))
    enterprise_id: uuid.UUID = Field(sa_column=_ref("enterprise"))
    region_code: str = Field(max_length=6)
    ticket_no: str = Field(max_length=64)
    vehicle_plate: str = Field(max_length=16)
    gross_g: int = Field(sa_column=grams_column())
    tare_g: int = Field(sa_column=grams_column())
    net_g: int = Field(sa_column=grams_column())
    weighed_at: datetime = Field(sa_column=timestamp(nullable=False))
    device_key_id: uuid.UUID | None = Field(default=None, sa_column=_ref("api_key", nullable=True))
    recorded_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    # The receipt that took this ticket's net mass, once one has.
    shipment_id: uuid.UUID | None = Field(default=None, sa_column=_ref("shipment", nullable=True))
    used_at: datetime | None = Field(default=None, sa_column=timestamp())


class WeighbridgeDuplicate(SQLModel, table=True):
    """A ticket refused because its number was already recorded at the facility: an anomaly
    (DESIGN §2.9), listed in the regulators' anomaly report with what was posted."""

    __tablename__ = "weighbridge_duplicate"
    __table_args__ = (Index("ix_weighbridge_duplicate_attempted", "attempted_at"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    ticket_id: uuid.UUID = Field(sa_column=_ref("weighbridge_ticket"))  # the one recorded first
    facility_id: uuid.UUID = Field(sa_column=_ref("facility"))
    enterprise_id: uuid.UUID = Field(sa_column=_ref("enterprise"))
    region_code: str = Field(max_length=6)
    ticket_no: str = Field(max_length=64)
    vehicle_plate: str = Field(max_length=16)
    gross_g: int = Field(sa_column=grams_column())
    tare_g: int = Field(sa_column=grams_column())
    net_g: int = Field(sa_column=grams_column())
    weighed_at: datetime = Field(sa_column=timestamp(nullable=False))
    device_key_id: uuid.UUID | None = Field(default=None, sa_column=_ref("api_key", nullable=True))
    attempted_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
