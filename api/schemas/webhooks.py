"""Webhook subscriptions and their deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import Page, Strict
from domain.webhooks.models import Subscription
from domain.webhooks.rules import MAX_EVENT_TYPES, MAX_URL_LENGTH, DeliveryStatus
from domain.webhooks.service import DeliveryView

EventTypePattern = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]


class WebhookCreate(Strict):
    url: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_LENGTH),
        Field(
            description="http(s) URL on a public address: private, loopback, link-local and "
            "reserved destinations are refused (422 `destination_refused`)"
        ),
    ]
    event_types: list[EventTypePattern] = Field(
        default=["*"],
        min_length=1,
        max_length=MAX_EVENT_TYPES,
        description='Event types (`lot.registered`), prefixes (`shipment.*`) or `["*"]` for '
        "every event that touches the enterprise",
    )
    description: Annotated[str | None, StringConstraints(strip_whitespace=True, max_length=200)] = (
        None
    )
    enterprise_id: uuid.UUID | None = Field(
        default=None, description="Platform admins only: whose webhook (others: their own)"
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://erp.example.com/hooks/scrapflow",
                    "event_types": ["shipment.*", "lot.registered"],
                    "description": "ERP inbound",
                }
            ]
        },
    )


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    enterprise_id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    status: str = Field(description="active or disabled")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    consecutive_failures: int = Field(description="Failed attempts in a row")
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    cursor_seq: int = Field(description="The last event sequence number considered for it")

    @classmethod
    def of(cls, subscription: Subscription) -> WebhookOut:
        return cls.model_validate(subscription)


class WebhookCreated(WebhookOut):
    secret: str | None = Field(
        description="The signing secret (`whsec_…`), shown this once; it is stored encrypted. "
        "Verify each request's `webhook-signature` with it (Standard Webhooks). An idempotent "
        "replay of this response has null here."
    )


class DisableIn(Strict):
    reason: Annotated[
        str | None, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)
    ] = None


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered")
    error: str | None = Field(description="Why the attempt failed: status and answer, timeout…")
    duration_ms: int


class DeliveryOut(BaseModel):
    id: uuid.UUID
    webhook_id: str = Field(description="The `webhook-id` header: the same on every attempt")
    event_seq: int
    event_id: int
    event_type: str
    status: DeliveryStatus = Field(
        description="pending (queued or being retried), delivered, or failed (the webhook was "
        "disabled on it)"
    )
    attempts: int
    next_attempt_at: datetime | None = Field(description="When it is tried next, if pending")
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[AttemptOut]

    @classmethod
    def of(cls, view: DeliveryView) -> DeliveryOut:
        d = view.delivery
        return cls(
            id=d.id,
            webhook_id=d.webhook_id,
            event_seq=d.event_seq,
            event_id=d.event_id,
            event_type=d.event_type,
            status=DeliveryStatus(d.status),
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.status != DeliveryStatus.delivered else None,
            last_attempt_at=d.last_attempt_at,
            last_status=d.last_status,
            last_error=d.last_error,
            delivered_at=d.delivered_at,
            created_at=d.created_at,
            attempt_log=[AttemptOut.model_validate(a) for a in view.attempts],
        )


class DeliveryPage(Page[DeliveryOut]):
    pass
