"""Webhook subscriptions, the deliveries of events to them, and every attempt made.

The event log is the outbox (DESIGN §2.8): a subscription's `cursor_seq` is the last sealed event
the relay has considered for it; each matching event after it becomes one delivery row, committed
before anything is sent."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from domain.base import timestamp
from domain.ids import new_id


def _enterprise() -> Column[uuid.UUID]:
    return Column(Uuid(), ForeignKey("enterprise.id"), nullable=False)


class Subscription(SQLModel, table=True):
    __tablename__ = "webhook_subscription"
    __table_args__ = (
        Index("ix_webhook_subscription_enterprise", "enterprise_id", "id"),
        CheckConstraint("status IN ('active', 'disabled')", name="status_known"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    url: str = Field(max_length=2048)
    description: str | None = Field(default=None, max_length=200)
    # Exact types, prefixes ending in ".*", or ["*"] for every event.
    event_types: list[str] = Field(sa_column=Column(ARRAY(String(64)), nullable=False))
    status: str = Field(default="active", max_length=16)
    # The signing secret, AES-GCM sealed with the subscription id as associated data; never
    # stored in the clear (the relay opens it to sign).
    secret_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_by: uuid.UUID | None = None
    created_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    updated_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    # Failed attempts in a row, over all of the subscription's deliveries, and since when.
    consecutive_failures: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    failing_since: datetime | None = Field(default=None, sa_column=timestamp())
    disabled_at: datetime | None = Field(default=None, sa_column=timestamp())
    disabled_reason: str | None = Field(default=None, max_length=500)
    cursor_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    # One relay at a time works a subscription (ordering): it holds the lease until then.
    lease_until: datetime | None = Field(default=None, sa_column=timestamp())
    lease_owner: uuid.UUID | None = None


class Delivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_seq", name="uq_webhook_delivery_event"),
        # The queue of a subscription, head first.
        Index(
            "ix_webhook_delivery_pending",
            "subscription_id",
            "event_seq",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_delivery_listing", "subscription_id", "id"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status_known"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    subscription_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("webhook_subscription.id"), nullable=False)
    )
    enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    event_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_type: str = Field(max_length=64)
    webhook_id: str = Field(max_length=64, unique=True)
    status: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    next_attempt_at: datetime = Field(sa_column=timestamp(nullable=False))
    last_attempt_at: datetime | None = Field(default=None, sa_column=timestamp())
    last_status: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = Field(default=None, sa_column=timestamp())
    created_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id", "id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    delivery_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("webhook_delivery.id"), nullable=False)
    )
    enterprise_id: uuid.UUID = Field(sa_column=_enterprise())
    attempted_at: datetime = Field(sa_column=timestamp(nullable=False))
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: int = Field(sa_column=Column(Integer, nullable=False))
