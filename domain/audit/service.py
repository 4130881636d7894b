"""Writing the event log: every state change calls `record` in its own transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import Actor
from domain.audit.models import Event
from domain.audit.rules import event_payload


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
) -> None:
    """Append one event. The acting enterprise always counts as touched: it sees its own events."""
    touched = {e for e in (*enterprise_ids, actor.enterprise_id) if e is not None}
    await session.execute(
        insert(Event).values(
            type=type,
            subject_type=subject_type,
            subject_id=str(subject_id),
            actor_kind=actor.principal_kind.value,
            actor_principal_id=actor.principal_id,
            actor_role=actor.role.value,
            actor_enterprise_id=actor.enterprise_id,
            actor_authority_id=actor.authority_id,
            request_id=actor.request_id,
            enterprise_ids=sorted(touched),
            facility_ids=sorted(set(facility_ids)),
            region_codes=sorted(set(region_codes)),
            payload=event_payload(payload),
        )
    )
