"""Writing the event log: every state change records its event in its own transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import Actor
from domain.audit.models import Event, SigningKey
from domain.audit.rules import event_payload
from domain.bulk import copy_rows


@dataclass(frozen=True, slots=True)
class Change:
    type: str
    subject_type: str
    subject_id: uuid.UUID | str
    payload: dict[str, Any]
    enterprise_ids: Iterable[uuid.UUID | None] = ()
    facility_ids: Iterable[uuid.UUID] = ()
    region_codes: Iterable[str] = ()
    lot_ids: Iterable[uuid.UUID] = field(default=())


EVENT_COLUMNS = (
    "type", "subject_type", "subject_id", "actor_kind", "actor_principal_id", "actor_role",
    "actor_enterprise_id", "actor_authority_id", "request_id", "enterprise_ids", "facility_ids",
    "region_codes", "lot_ids", "payload",
)  # fmt: skip


def event_rows(actor: Actor, changes: Sequence[Change]) -> list[dict[str, Any]]:
    """The event rows of `changes`. The acting enterprise always counts as touched, so it sees
    its own events."""
    rows = []
    for change in changes:
        touched = {e for e in (*change.enterprise_ids, actor.enterprise_id) if e is not None}
        rows.append(
            {
                "type": change.type,
                "subject_type": change.subject_type,
                "subject_id": str(change.subject_id),
                "actor_kind": actor.principal_kind.value,
                "actor_principal_id": actor.principal_id,
                "actor_role": actor.role.value,
                "actor_enterprise_id": actor.enterprise_id,
                "actor_authority_id": actor.authority_id,
                "request_id": actor.request_id,
                "enterprise_ids": sorted(touched),
                "facility_ids": sorted(set(change.facility_ids)),
                "region_codes": sorted(set(change.region_codes)),
                "lot_ids": list(dict.fromkeys(change.lot_ids)),
                "payload": event_payload(change.payload),
            }
        )
    return rows


async def record_many(session: AsyncSession, actor: Actor, changes: Sequence[Change]) -> None:
    """Append the events of `changes` in one multi-row insert."""
    if changes:
        await session.execute(insert(Event), event_rows(actor, changes))


def payload_json(payload: dict[str, Any]) -> str:
    """A payload as the text a jsonb column takes on the driver's own paths (COPY, raw SQL)."""
    return orjson.dumps(payload).decode()


async def copy_events(session: AsyncSession, actor: Actor, changes: Sequence[Change]) -> None:
    """Append many events through COPY (bulk registration)."""
    rows = event_rows(actor, changes)
    for row in rows:
        row["payload"] = payload_json(row["payload"])
    await copy_rows(
        session, "event", EVENT_COLUMNS, [tuple(r[c] for c in EVENT_COLUMNS) for r in rows]
    )


async def record(
    session: AsyncSession,
    actor: Actor,
    type: str,
    *,
    subject_type: str,
    subject_id: uuid.UUID | str,
    payload: dict[str, Any],
    enterprise_ids: Iterable[uuid.UUID | None] = (),
    facility_ids: Iterable[uuid.UUID] = (),
    region_codes: Iterable[str] = (),
    lot_ids: Iterable[uuid.UUID] = (),
) -> None:
    await record_many(
        session,
        actor,
        [
            Change(
                type=type,
                subject_type=subject_type,
                subject_id=subject_id,
                payload=payload,
                enterprise_ids=enterprise_ids,
                facility_ids=facility_ids,
                region_codes=region_codes,
                lot_ids=lot_ids,
            )
        ],
    )


async def publish_key(session: AsyncSession, key_id: str, public_key: bytes) -> None:
    """Publish a platform public key (once; published keys stay, for what they signed)."""
    await session.execute(
        pg_insert(SigningKey)
        .values(key_id=key_id, public_key=public_key)
        .on_conflict_do_nothing(index_elements=["key_id"])
    )


async def published_keys(session: AsyncSession) -> Sequence[SigningKey]:
    return (await session.scalars(select(SigningKey).order_by(col(SigningKey.created_at)))).all()
