"""A transformation: one process run at one facility, its inputs, primary inputs, outputs and
losses. Masses in grams; what went in equals what came out."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Numeric, Uuid
from sqlmodel import Field, SQLModel

from domain.base import grams_column, timestamp
from domain.ids import new_id


def _transformation() -> Column[uuid.UUID]:
    return Column(Uuid(), ForeignKey("transformation.id"), primary_key=True)


class Transformation(SQLModel, table=True):
    __tablename__ = "transformation"
    __table_args__ = (
        CheckConstraint("input_g + primary_g = output_g + loss_g", name="mass_balance"),
        Index("ix_transformation_facility_ended", "facility_id", "ended_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    facility_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("facility.id"), nullable=False, index=True)
    )
    enterprise_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("enterprise.id"), nullable=False)
    )
    region_code: str = Field(max_length=6)
    process: str = Field(max_length=16)
    metal: str = Field(max_length=16)
    input_g: int = Field(sa_column=grams_column())
    primary_g: int = Field(sa_column=grams_column())
    output_g: int = Field(sa_column=grams_column())
    loss_g: int = Field(sa_column=grams_column())
    loss_flagged: bool = False
    electricity_kwh: Decimal | None = Field(default=None, sa_column=Column(Numeric(14, 3)))
    natural_gas_m3: Decimal | None = Field(default=None, sa_column=Column(Numeric(14, 3)))
    other_fuel_kgce: Decimal | None = Field(default=None, sa_column=Column(Numeric(14, 3)))
    started_at: datetime = Field(sa_column=timestamp(nullable=False))
    ended_at: datetime = Field(sa_column=timestamp(nullable=False))
    status: str = Field(default="recorded", max_length=16)
    void_reason: str | None = Field(default=None, max_length=500)
    voided_at: datetime | None = Field(default=None, sa_column=timestamp())
    recorded_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    version: int = 1


class TransformationInput(SQLModel, table=True):
    """A lot (whole or part) going into a run, with the composition of the part taken, so that a
    void can put it back to the gram."""

    __tablename__ = "transformation_input"
    # The runs that took from a lot (a void checks whether a later one did).
    __table_args__ = (Index("ix_transformation_input_lot", "lot_id"),)

    transformation_id: uuid.UUID = Field(sa_column=_transformation())
    lot_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("lot.id"), primary_key=True))
    taken_g: int = Field(sa_column=grams_column())
    post_consumer_g: int = Field(sa_column=grams_column())
    pre_consumer_g: int = Field(sa_column=grams_column())
    primary_g: int = Field(sa_column=grams_column())
    status_before: str = Field(max_length=16)


class PrimaryInput(SQLModel, table=True):
    """Primary metal added at a smelter (primary aluminium, copper cathode, alloying elements)."""

    __tablename__ = "transformation_primary_input"

    transformation_id: uuid.UUID = Field(sa_column=_transformation())
    position: int = Field(primary_key=True)
    metal: str = Field(max_length=16)
    description: str = Field(max_length=200)
    grams: int = Field(sa_column=grams_column())


class TransformationOutput(SQLModel, table=True):
    __tablename__ = "transformation_output"

    transformation_id: uuid.UUID = Field(sa_column=_transformation())
    lot_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("lot.id"), primary_key=True))


class TransformationLoss(SQLModel, table=True):
    __tablename__ = "transformation_loss"

    transformation_id: uuid.UUID = Field(sa_column=_transformation())
    position: int = Field(primary_key=True)
    kind: str = Field(max_length=32)
    grams: int = Field(sa_column=grams_column())
    post_consumer_g: int = Field(sa_column=grams_column())
    pre_consumer_g: int = Field(sa_column=grams_column())
    primary_g: int = Field(sa_column=grams_column())
