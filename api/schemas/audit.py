"""The audit trail: sealed events, checkpoints, verification."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.schemas.common import Page
from domain.audit.models import Checkpoint, Event
from domain.audit.service import Verification
from domain.credits.service import b64url


class EventOut(BaseModel):
    seq: int
    id: int
    type: str
    subject_type: str
    subject_id: str
    actor_kind: str
    actor_principal_id: uuid.UUID | None
    actor_role: str
    actor_enterprise_id: uuid.UUID | None
    actor_authority_id: uuid.UUID | None
    request_id: str | None
    enterprise_ids: list[uuid.UUID]
    facility_ids: list[uuid.UUID]
    lot_ids: list[uuid.UUID]
    region_codes: list[str]
    occurred_at: datetime
    payload: dict[str, Any]
    prev_hash: str = Field(description="Hex SHA-256 of the event before (zeros for the first)")
    hash: str = Field(description="Hex SHA-256 over prev_hash and this event's canonical JSON")

    @classmethod
    def of(cls, event: Event) -> EventOut:
        assert event.hash is not None
        assert event.prev_hash is not None
        return cls.model_validate(
            {
                **event.model_dump(exclude={"txid", "prev_hash", "hash"}),
                "prev_hash": event.prev_hash.hex(),
                "hash": event.hash.hex(),
            }
        )


class EventPage(Page[EventOut]):
    next_after_seq: int | None = Field(
        description="Pass as `after_seq` to continue; null at the end"
    )


class CheckpointOut(BaseModel):
    seq: int = Field(description="The chain head it states")
    head_hash: str = Field(description="Hex hash of event `seq`")
    made_at: datetime
    key_id: str = Field(description="See /api/v1/public/keys")
    payload: str = Field(description="The exact signed bytes (canonical JSON)")
    signature: str = Field(description="Ed25519 over payload, base64url")

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> CheckpointOut:
        return cls(
            seq=checkpoint.seq,
            head_hash=checkpoint.head_hash.hex(),
            made_at=checkpoint.made_at,
            key_id=checkpoint.key_id,
            payload=checkpoint.payload,
            signature=b64url(checkpoint.signature),
        )


class BreakOut(BaseModel):
    seq: int = Field(description="The first sequence number that does not hold")
    reason: str = Field(
        description="missing, reordered, edited, bad_checkpoint_signature or checkpoint_mismatch"
    )
    detail: str


class VerificationOut(BaseModel):
    valid: bool
    from_seq: int
    to_seq: int
    head_seq: int
    events_checked: int
    checkpoints_checked: int
    broken: BreakOut | None

    @classmethod
    def of(cls, result: Verification) -> VerificationOut:
        broken = result.broken
        return cls(
            valid=result.valid,
            from_seq=result.from_seq,
            to_seq=result.to_seq,
            head_seq=result.head_seq,
            events_checked=result.events_checked,
            checkpoints_checked=result.checkpoints_checked,
            broken=BreakOut(seq=broken.seq, reason=broken.reason, detail=broken.detail)
            if broken
            else None,
        )
