"""The lot: an identified quantity of one metal, the unit of custody (DESIGN §2.2)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from domain.base import grams_column, timestamp
from domain.ids import new_id


class Lot(SQLModel, table=True):
    __tablename__ = "lot"
    __table_args__ = (
        CheckConstraint("net_g > 0", name="net_positive"),
        CheckConstraint(
            "post_consumer_g >= 0 AND pre_consumer_g >= 0 AND primary_g >= 0",
            name="composition_not_negative",
        ),
        CheckConstraint(
            "post_consumer_g + pre_consumer_g + primary_g = net_g", name="composition_sums_to_net"
        ),
        # A facility's lots in id order (keyset pages); a status filter is read along the way.
        Index("ix_lot_holder", "holder_facility_id", "id"),
        Index("ix_lot_enterprise_ids", "enterprise_ids", postgresql_using="gin"),
        Index("ix_lot_region_prefixes", "region_prefixes", postgresql_using="gin"),
        Index("ix_lot_parent", "parent_lot_id", postgresql_where=text("parent_lot_id IS NOT NULL")),
        Index("ix_lot_registered", "registered_facility_id", "registered_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    code: str = Field(max_length=16, unique=True)
    kind: str = Field(max_length=16)
    metal: str = Field(max_length=16)
    category: str | None = Field(default=None, max_length=32)
    product_form: str | None = Field(default=None, max_length=16)
    destination_use: str | None = Field(default=None, max_length=16)
    net_g: int = Field(sa_column=grams_column())
    post_consumer_g: int = Field(sa_column=grams_column())
    pre_consumer_g: int = Field(sa_column=grams_column())
    primary_g: int = Field(sa_column=grams_column())
    consumer_class: str | None = Field(default=None, max_length=16)
    channel: str | None = Field(default=None, max_length=16)
    origin: str = Field(default="domestic", max_length=16)
    import_country: str | None = Field(default=None, max_length=2)
    customs_declaration_no: str | None = Field(default=None, max_length=32)
    conformity_standard: str | None = Field(default=None, max_length=16)
    collected_at: datetime | None = Field(default=None, sa_column=timestamp())
    # The seller: personal data of individuals is sealed (AES-GCM); only masks are in clear.
    seller_kind: str | None = Field(default=None, max_length=16)
    seller_name_masked: str | None = Field(default=None, max_length=200)
    seller_id_masked: str | None = Field(default=None, max_length=32)
    seller_sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    registered_facility_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("facility.id"), nullable=False)
    )
    holder_facility_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("facility.id"), nullable=False)
    )
    holder_enterprise_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("enterprise.id"), nullable=False)
    )
    status: str = Field(default="active", max_length=16, index=True)
    version: int = 1
    parent_lot_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("lot.id"), nullable=True)
    )
    # Who may see it: every enterprise that held it, and the 2/4/6-digit region prefixes of every
    # facility it touched (so `region_prefixes @> {jurisdiction}` uses the GIN index).
    enterprise_ids: list[uuid.UUID] = Field(sa_column=Column(ARRAY(Uuid()), nullable=False))
    region_prefixes: list[str] = Field(sa_column=Column(ARRAY(String(6)), nullable=False))
    facility_ids: list[uuid.UUID] = Field(sa_column=Column(ARRAY(Uuid()), nullable=False))
    registered_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    updated_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))


class LotSource(SQLModel, table=True):
    """Lineage: `grams` of this lot's mass at its creation (`of_g`) came from the source lot,
    through a split, a refusal at receipt, or a transformation. The share `grams / of_g` stays
    true when the lot's weight changes later (a receipt scales it, not its origins)."""

    __tablename__ = "lot_source"
    __table_args__ = (
        CheckConstraint("grams >= 0 AND grams <= of_g", name="share_within_mass"),
        Index("ix_lot_source_source", "source_lot_id"),
    )

    lot_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("lot.id"), primary_key=True))
    source_lot_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("lot.id"), primary_key=True)
    )
    grams: int = Field(sa_column=Column(BigInteger, nullable=False))
    of_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    via: str = Field(max_length=16)  # split | refusal | transformation
    transformation_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("transformation.id"), nullable=True)
    )
