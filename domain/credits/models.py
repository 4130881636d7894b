"""The credit ledger and certificates. Masses in grams.

An account holds an enterprise's recycled credits of one metal and one class; its balance can never
go below zero (a check constraint backs the row lock). Credits are earned in tranches, one per
product a run made, drawn oldest first and expired after the accounting period. Every movement is
an append-only ledger entry."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    Uuid,
    text,
)
from sqlmodel import Field, SQLModel

from domain.base import grams_column, timestamp
from domain.ids import new_id


def _enterprise(primary_key: bool = False) -> Column[uuid.UUID]:
    return Column(Uuid(), ForeignKey("enterprise.id"), nullable=False, primary_key=primary_key)


def _optional(table: str) -> Column[uuid.UUID]:
    return Column(Uuid(), ForeignKey(f"{table}.id"), nullable=True)


class CreditAccount(SQLModel, table=True):
    __tablename__ = "credit_account"
    __table_args__ = (CheckConstraint("balance_g >= 0", name="balance_not_negative"),)

    enterprise_id: uuid.UUID = Field(sa_column=_enterprise(primary_key=True))
    metal: str = Field(sa_column=Column(String(16), primary_key=True))
    recycled_class: str = Field(sa_column=Column(String(16), primary_key=True))
    balance_g: int = Field(sa_column=grams_column())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))


class CreditTranche(SQLModel, table=True):
    """The credits one product earned: drawn oldest first, what is left expires."""

    __tablename__ = "credit_tranche"
    __table_args__ = (
        CheckConstraint("remaining_g >= 0 AND remaining_g <= credited_g", name="remaining_within"),
        Index(
            "ix_credit_tranche_open",
            "enterprise_id",
            "metal",
            "recycled_class",
            "expires_at",
            postgresql_where=text("remaining_g > 0"),
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    metal: str = Field(max_length=16)
    recycled_class: str = Field(max_length=16)
    lot_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("lot.id"), nullable=False))
    transformation_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("transformation.id"), nullable=False)
    )
    credited_g: int = Field(sa_column=grams_column())
    remaining_g: int = Field(sa_column=grams_column())
    credited_at: datetime = Field(sa_column=timestamp(nullable=False))
    expires_at: datetime = Field(sa_column=timestamp(nullable=False))


class CreditEntry(SQLModel, table=True):
    """One movement of an account, never changed: `grams` is signed (credits positive)."""

    __tablename__ = "credit_entry"
    __table_args__ = (Index("ix_credit_entry_enterprise", "enterprise_id", "id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    metal: str = Field(max_length=16)
    recycled_class: str = Field(max_length=16)
    kind: str = Field(max_length=16)
    grams: int = Field(sa_column=grams_column())
    balance_after_g: int = Field(sa_column=grams_column())
    tranche_id: uuid.UUID | None = Field(default=None, sa_column=_optional("credit_tranche"))
    lot_id: uuid.UUID | None = Field(default=None, sa_column=_optional("lot"))
    transformation_id: uuid.UUID | None = Field(default=None, sa_column=_optional("transformation"))
    certificate_id: uuid.UUID | None = Field(default=None, sa_column=_optional("certificate"))
    recorded_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))


class Certificate(SQLModel, table=True):
    """A recycled-content claim for a product lot, to a recipient; the payload is kept byte for
    byte as signed."""

    __tablename__ = "certificate"
    __table_args__ = (
        CheckConstraint(
            "claimed_post_consumer_g >= 0 AND claimed_pre_consumer_g >= 0"
            " AND claimed_post_consumer_g + claimed_pre_consumer_g <= mass_g",
            name="claim_within_mass",
        ),
        CheckConstraint("mass_g > 0", name="mass_positive"),
        Index(
            "uq_certificate_lot_recipient",
            "lot_id",
            "recipient_enterprise_id",
            unique=True,
            postgresql_where=text("status = 'valid'"),
        ),
        Index("ix_certificate_issuer", "issuer_enterprise_id", "id"),
        Index("ix_certificate_recipient", "recipient_enterprise_id", "issued_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    lot_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("lot.id"), nullable=False))
    issuer_enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    recipient_enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    # Whose credits the claim drew on: the issuer for mass balance, the producer for proportional.
    debited_enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    method: str = Field(max_length=16)
    metal: str = Field(max_length=16)
    mass_g: int = Field(sa_column=grams_column())
    claimed_post_consumer_g: int = Field(sa_column=grams_column())
    claimed_pre_consumer_g: int = Field(sa_column=grams_column())
    payload: str = Field(sa_column=Column(Text, nullable=False))
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_id: str = Field(max_length=64)
    status: str = Field(default="valid", max_length=16)
    issued_at: datetime = Field(sa_column=timestamp(nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp())
    revocation_reason: str | None = Field(default=None, max_length=500)
    version: int = 1
