"""Reference data with its provenance: every row keeps its source and a confidence."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Column, DateTime, ForeignKey, Numeric, String, text
from sqlmodel import Field, SQLModel


class Region(SQLModel, table=True):
    """GB/T 2260 codes: 2-digit provinces and Guizhou's 4-digit prefectures."""

    __tablename__ = "ref_region"

    code: str = Field(primary_key=True, max_length=6)
    level: str = Field(max_length=16)
    name_zh: str = Field(max_length=64)
    name_en: str = Field(max_length=64)
    source: str = Field(max_length=200)
    confidence: str = Field(max_length=8)


class ScrapCategory(SQLModel, table=True):
    __tablename__ = "ref_scrap_category"

    code: str = Field(primary_key=True, max_length=32)
    metal: str = Field(max_length=16, index=True)
    scheme: str = Field(max_length=100)
    name_zh: str = Field(max_length=100)
    name_en: str = Field(max_length=200)
    note: str = Field(max_length=500)
    source: str = Field(max_length=200)
    confidence: str = Field(max_length=8)


class EmissionFactorSet(SQLModel, table=True):
    """A published version of the factors; computed figures name the version they used."""

    __tablename__ = "ref_emission_factor_set"

    version: int = Field(primary_key=True)
    label: str = Field(max_length=100)
    source: str = Field(max_length=300)
    published_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()"))
    )


class EmissionFactor(SQLModel, table=True):
    __tablename__ = "ref_emission_factor"

    set_version: int = Field(
        sa_column=Column(
            ForeignKey("ref_emission_factor_set.version", ondelete="CASCADE"), primary_key=True
        )
    )
    key: str = Field(sa_column=Column(String(64), primary_key=True))
    value: Decimal = Field(sa_column=Column(Numeric(14, 6), nullable=False))
    unit: str = Field(max_length=32)
    year: int | None = None
    scope: str = Field(max_length=300)
    source: str = Field(max_length=500)
    confidence: str = Field(max_length=8)
