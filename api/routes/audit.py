"""The audit trail for regulators (and enterprises, for their own events)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Request

from api.deps import CurrentActor, ReadSession, require
from api.limits import PageSize
from api.problems import responses
from api.routes import resource_router
from api.schemas.audit import CheckpointOut, EventOut, EventPage, VerificationOut
from api.schemas.common import Timestamp
from domain.actor import Role
from domain.audit import service as audit
from domain.errors import InvalidInput, NotFound

router = resource_router("audit")
_regulators = [require(Role.platform_admin, Role.inspector, Role.supervisor)]


@router.get(
    "/audit/events",
    response_model=EventPage,
    responses=responses(401, 422),
    summary="Sealed events in sequence order: authorities see their jurisdiction, enterprises"
    " the events that touch them",
)
async def events(
    session: ReadSession,
    actor: CurrentActor,
    limit: PageSize,
    type: Annotated[str | None, Query(max_length=64, examples=["lot.registered"])] = None,
    enterprise_id: uuid.UUID | None = None,
    facility_id: uuid.UUID | None = None,
    lot_id: uuid.UUID | None = None,
    occurred_from: Annotated[Timestamp | None, Query(alias="from")] = None,
    occurred_to: Annotated[Timestamp | None, Query(alias="to")] = None,
    after_seq: Annotated[int, Query(ge=0, le=2**62, description="Continue after this seq")] = 0,
    cursor: Annotated[
        str | None, Query(max_length=20, description="next_cursor of the previous page")
    ] = None,
) -> EventPage:
    if cursor is not None:
        if not cursor.isdigit():
            raise InvalidInput(
                "cursor is not one this service returned; pass next_cursor unchanged",
                errors=[{"pointer": "/cursor", "detail": "malformed", "location": "query"}],
            )
        after_seq = max(after_seq, int(cursor))
    rows, next_after = await audit.list_events(
        session,
        actor,
        audit.EventFilter(type, enterprise_id, facility_id, lot_id, occurred_from, occurred_to),
        after_seq=after_seq,
        limit=limit,
    )
    return EventPage(
        items=[EventOut.of(e) for e in rows],
        next_cursor=None if next_after is None else str(next_after),
        next_after_seq=next_after,
    )


@router.get(
    "/audit/verify",
    response_model=VerificationOut,
    dependencies=_regulators,
    responses=responses(401, 403, 422),
    summary="Recompute the hash chain and check the signed checkpoints; the first break and why",
)
async def verify(
    request: Request,
    session: ReadSession,
    from_seq: Annotated[int, Query(ge=1, le=2**62)] = 1,
    to_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> VerificationOut:
    if to_seq is not None and to_seq < from_seq:
        raise InvalidInput(
            f"to_seq ({to_seq}) is before from_seq ({from_seq})",
            errors=[{"pointer": "/to_seq", "detail": "before from_seq", "location": "query"}],
        )
    keys = request.app.state.trusted_keys
    return VerificationOut.of(
        await audit.verify_chain(session, from_seq, to_seq, trusted_keys=keys)
    )


@router.get(
    "/audit/checkpoints/latest",
    response_model=CheckpointOut,
    responses=responses(401, 404),
    summary="The latest signed statement of the chain head",
)
async def latest_checkpoint(session: ReadSession, actor: CurrentActor) -> CheckpointOut:
    checkpoint = await audit.latest_checkpoint(session)
    if checkpoint is None:
        raise NotFound("no checkpoint has been made yet")
    return CheckpointOut.of(checkpoint)
