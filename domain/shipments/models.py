"""Shipments move whole lots between facilities; receipts weigh them; discrepancies follow up."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Numeric,
    Uuid,
)
from sqlmodel import Field, SQLModel

from domain.base import timestamp
from domain.ids import new_id


def _facility() -> Column[uuid.UUID]:
    return Column(Uuid(), ForeignKey("facility.id"), nullable=False)


def _enterprise() -> Column[uuid.UUID]:
    return Column(Uuid(), ForeignKey("enterprise.id"), nullable=False)


class Shipment(SQLModel, table=True):
    __tablename__ = "shipment"
    __table_args__ = (
        CheckConstraint("from_facility_id <> to_facility_id", name="moves_somewhere"),
        Index("ix_shipment_sender", "sender_enterprise_id", "id"),
        Index("ix_shipment_receiver", "receiver_enterprise_id", "id"),
        Index("ix_shipment_to_received", "to_facility_id", "received_at"),
        Index("ix_shipment_from_dispatched", "from_facility_id", "dispatched_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    from_facility_id: uuid.UUID = Field(sa_column=_facility())
    to_facility_id: uuid.UUID = Field(sa_column=_facility())
    sender_enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    receiver_enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    from_region: str = Field(max_length=6)
    to_region: str = Field(max_length=6)
    status: str = Field(default="dispatched", max_length=24)
    carrier: str | None = Field(default=None, max_length=200)
    vehicle_plate: str | None = Field(default=None, max_length=16)
    vehicle_energy: str | None = Field(default=None, max_length=16)
    emission_standard: str | None = Field(default=None, max_length=16)
    distance_km: Decimal | None = Field(default=None, sa_column=Column(Numeric(9, 1)))
    dispatched_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    dispatched_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    received_at: datetime | None = Field(default=None, sa_column=timestamp())
    weighbridge_ticket_no: str | None = Field(default=None, max_length=64)
    cancelled_at: datetime | None = Field(default=None, sa_column=timestamp())
    cancel_reason: str | None = Field(default=None, max_length=500)
    version: int = 1


class ShipmentItem(SQLModel, table=True):
    """One lot on a shipment, with what was dispatched and, after receipt, what arrived."""

    __tablename__ = "shipment_item"
    __table_args__ = (
        CheckConstraint("received_g IS NULL OR received_g > 0", name="received_positive"),
        CheckConstraint(
            "refused_g IS NULL OR (refused_g >= 0 AND refused_g <= received_g)",
            name="refused_within_received",
        ),
        Index("ix_shipment_item_lot", "lot_id"),
    )

    shipment_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("shipment.id"), primary_key=True)
    )
    lot_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("lot.id"), primary_key=True))
    status_before: str = Field(max_length=16)
    dispatched_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_g: int | None = Field(default=None, sa_column=Column(BigInteger))
    refused_g: int | None = Field(default=None, sa_column=Column(BigInteger))
    # dispatched - received: lost (positive) or gained (negative) in transit, kept for the balance
    difference_g: int | None = Field(default=None, sa_column=Column(BigInteger))
    refusal_reason: str | None = Field(default=None, max_length=500)
    refused_lot_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("lot.id"), nullable=True)
    )


class Discrepancy(SQLModel, table=True):
    """A weight difference above tolerance: the sender acknowledges or disputes it, an authority
    supervisor resolves it. Open ones older than 15 days are anomalies."""

    __tablename__ = "discrepancy"
    __table_args__ = (Index("ix_discrepancy_status", "status", "id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    shipment_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("shipment.id"), nullable=False, index=True)
    )
    lot_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("lot.id"), nullable=False))
    sender_enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    receiver_enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    from_region: str = Field(max_length=6)
    to_region: str = Field(max_length=6)
    metal: str = Field(max_length=16)
    dispatched_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    difference_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    tolerance_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(default="open", max_length=16)
    sender_note: str | None = Field(default=None, max_length=1000)
    resolution: str | None = Field(default=None, max_length=1000)
    opened_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    answered_at: datetime | None = Field(default=None, sa_column=timestamp())
    resolved_at: datetime | None = Field(default=None, sa_column=timestamp())
    version: int = 1
