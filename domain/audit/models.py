"""The one event log (DESIGN §2.8). Append-only: a trigger refuses UPDATE (except sealing),
DELETE and TRUNCATE. `txid` lets the sealer order by what is safely committed rather than by id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import UserDefinedType
from sqlmodel import Field, SQLModel


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id type (`pg_current_xact_id()`)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


class Event(SQLModel, table=True):
    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_subject", "subject_type", "subject_id", "id"),
        # The sealer's queue, in commit-safe order.
        Index("ix_event_unsealed", "txid", "id", postgresql_where=text("seq IS NULL")),
        Index("ix_event_facility_ids", "facility_ids", postgresql_using="gin"),
        Index("ix_event_enterprise_ids", "enterprise_ids", postgresql_using="gin"),
        Index("ix_event_lot_ids", "lot_ids", postgresql_using="gin"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    txid: int | None = Field(
        default=None,
        sa_column=Column(Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
    )
    type: str = Field(max_length=64, index=True)
    subject_type: str = Field(max_length=32)
    subject_id: str = Field(max_length=64)
    actor_kind: str = Field(max_length=16)
    actor_principal_id: uuid.UUID | None = None
    actor_role: str = Field(max_length=32)
    actor_enterprise_id: uuid.UUID | None = None
    actor_authority_id: uuid.UUID | None = None
    request_id: str | None = Field(default=None, max_length=128)
    enterprise_ids: list[uuid.UUID] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Uuid()), nullable=False),
    )
    facility_ids: list[uuid.UUID] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Uuid()), nullable=False),
    )
    # The lots a change touched: a lot's history is `lot_ids @> {lot}`.
    lot_ids: list[uuid.UUID] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Uuid()), nullable=False, server_default=text("'{}'")),
    )
    region_codes: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String(6)), nullable=False)
    )
    occurred_at: datetime | None = Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()")
        ),
    )
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    # Filled by the sealer (issue 6); NULL until then.
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, unique=True))
    prev_hash: bytes | None = Field(default=None, sa_column=Column(LargeBinary(32)))
    hash: bytes | None = Field(default=None, sa_column=Column(LargeBinary(32)))


class SigningKey(SQLModel, table=True):
    """A platform public key (Ed25519). Kept published after a newer key takes over, so that what
    an older key signed (certificates, checkpoints) can still be verified."""

    __tablename__ = "signing_key"

    key_id: str = Field(sa_column=Column(String(64), primary_key=True))
    algorithm: str = Field(default="Ed25519", max_length=16)
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class Checkpoint(SQLModel, table=True):
    """A signed statement of the chain head: whoever keeps one can later prove that nothing up to
    `seq` was edited, removed or reordered."""

    __tablename__ = "audit_checkpoint"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True))
    head_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    made_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    key_id: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
