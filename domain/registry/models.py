"""Registry tables: enterprises, their facilities, and the authorities that oversee them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, String, Uuid
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from domain.base import timestamp
from domain.ids import new_id


class Enterprise(SQLModel, table=True):
    __tablename__ = "enterprise"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200)
    uscc: str = Field(max_length=18, unique=True)
    roles: list[str] = Field(sa_column=Column(ARRAY(String(16)), nullable=False))
    region_code: str = Field(max_length=6, index=True)
    status: str = Field(default="active", max_length=16)
    version: int = 1
    created_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    updated_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))


class Facility(SQLModel, table=True):
    __tablename__ = "facility"
    __table_args__ = (
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
        CheckConstraint("annual_capacity_g >= 0", name="capacity_not_negative"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    enterprise_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("enterprise.id"), nullable=False, index=True)
    )
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    region_code: str = Field(max_length=6, index=True)
    address: str = Field(max_length=300)
    latitude: float | None = None
    longitude: float | None = None
    # Masses are integer grams in the database, capacities too.
    annual_capacity_g: int | None = Field(default=None, sa_column=Column(BigInteger))
    permit_no: str | None = Field(default=None, max_length=64)
    status: str = Field(default="active", max_length=16)
    version: int = 1
    created_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    updated_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))


class Authority(SQLModel, table=True):
    __tablename__ = "authority"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200)
    jurisdiction: str = Field(max_length=6, index=True)
    created_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
