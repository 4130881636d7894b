"""Stored responses of creating POSTs, keyed by (principal, Idempotency-Key).

The record is written in the same transaction as the write it describes, so a replayed response
always describes a committed write, and a write is never committed without its record. A
transaction-scoped advisory lock on the key tells a concurrent retry that the first is in flight.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, Integer, LargeBinary, String, func, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from domain.errors import Conflict, InvalidInput

MAX_KEY_LENGTH = 255
REPLAYED_HEADERS = ("location", "etag", "content-type")


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"

    principal_id: uuid.UUID = Field(primary_key=True)
    key: str = Field(sa_column=Column(String(MAX_KEY_LENGTH), primary_key=True))
    fingerprint: str = Field(max_length=64)
    status_code: int = Field(sa_column=Column(Integer, nullable=False))
    headers: dict[str, str] = Field(sa_column=Column(JSONB, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True), nullable=False, server_default=text("now()"), index=True
        ),
    )


class IdempotencyInFlight(Conflict):
    code = "idempotency_in_flight"
    title = "A request with this Idempotency-Key is still being processed"


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"


@dataclass(frozen=True, slots=True)
class Claim:
    principal_id: uuid.UUID
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _lock_id(claim: Claim) -> int:
    raw = hashlib.sha256(f"{claim.principal_id}:{claim.key}".encode()).digest()
    return int.from_bytes(raw[:8], "big", signed=True)


async def claim(session: AsyncSession, claim: Claim, ttl: timedelta) -> StoredResponse | None:
    """Take the key for this transaction; return the stored response to replay, or None."""
    locked = await session.scalar(select(func.pg_try_advisory_xact_lock(_lock_id(claim))))
    if not locked:
        raise IdempotencyInFlight("the first request with this Idempotency-Key has not finished")
    record = await session.get(IdempotencyRecord, (claim.principal_id, claim.key))
    if record is None or record.created_at is None:
        return None
    now = await session.scalar(select(func.now()))
    assert now is not None
    if record.created_at < now - ttl:
        return None  # expired: the key may be used afresh
    if record.fingerprint != claim.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was first used with another method, path or body; "
            "use a new key for a new request"
        )
    return StoredResponse(record.status_code, dict(record.headers), record.body)


async def remember(
    session: AsyncSession, claim: Claim, status_code: int, headers: dict[str, Any], body: bytes
) -> None:
    kept = {k: str(v) for k, v in headers.items() if k.lower() in REPLAYED_HEADERS}
    values = {
        "principal_id": claim.principal_id,
        "key": claim.key,
        "fingerprint": claim.fingerprint,
        "status_code": status_code,
        "headers": kept,
        "body": body,
        "created_at": func.now(),
    }
    statement = insert(IdempotencyRecord).values(**values)
    # Overwrites only an expired record: `claim` returned None for a live one only if absent.
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["principal_id", "key"],
            set_={k: statement.excluded[k] for k in values if k not in ("principal_id", "key")},
        )
    )
