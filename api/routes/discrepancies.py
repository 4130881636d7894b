from __future__ import annotations

import uuid

from api.deps import (
    SUPERVISORS,
    CurrentActor,
    PageParams,
    Session,
    encode_cursor,
    require,
)
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Page
from api.schemas.shipments import DiscrepancyOut, NoteIn
from api.uow import Idempotent
from domain.shipments import service as shipments
from domain.shipments.rules import DiscrepancyStatus

router = resource_router("custody")
WRITE = responses(401, 403, 404, 409, 422)


@router.get(
    "/discrepancies",
    response_model=Page[DiscrepancyOut],
    responses=responses(401, 422),
    summary="Weight discrepancies of the caller's shipments, or in an authority's jurisdiction",
)
async def list_discrepancies(
    session: Session, actor: CurrentActor, page: PageParams, status: DiscrepancyStatus | None = None
) -> Page[DiscrepancyOut]:
    result = await shipments.list_discrepancies(
        session, actor, status, after=page.after, limit=page.limit
    )
    return Page(
        items=[DiscrepancyOut.of(d) for d in result.items],
        next_cursor=encode_cursor(result.next_after),
    )


@router.get(
    "/discrepancies/{discrepancy_id}",
    response_model=DiscrepancyOut,
    responses=responses(401, 404, 422),
    summary="One discrepancy",
)
async def get_discrepancy(
    discrepancy_id: uuid.UUID, session: Session, actor: CurrentActor
) -> DiscrepancyOut:
    return DiscrepancyOut.of(await shipments.get_discrepancy(session, actor, discrepancy_id))


async def _answer(
    session: Session,
    actor: CurrentActor,
    discrepancy_id: uuid.UUID,
    answer: DiscrepancyStatus,
    note: str,
) -> DiscrepancyOut:
    return DiscrepancyOut.of(
        await shipments.answer_discrepancy(session, actor, discrepancy_id, answer, note)
    )


@router.post(
    "/discrepancies/{discrepancy_id}/acknowledge",
    response_model=DiscrepancyOut,
    dependencies=[Idempotent],
    responses=WRITE,
    summary="The sender accepts the weight difference",
)
async def acknowledge(
    discrepancy_id: uuid.UUID, body: NoteIn, session: Session, actor: CurrentActor
) -> DiscrepancyOut:
    return await _answer(session, actor, discrepancy_id, DiscrepancyStatus.acknowledged, body.note)


@router.post(
    "/discrepancies/{discrepancy_id}/dispute",
    response_model=DiscrepancyOut,
    dependencies=[Idempotent],
    responses=WRITE,
    summary="The sender disputes the weight difference",
)
async def dispute(
    discrepancy_id: uuid.UUID, body: NoteIn, session: Session, actor: CurrentActor
) -> DiscrepancyOut:
    return await _answer(session, actor, discrepancy_id, DiscrepancyStatus.disputed, body.note)


@router.post(
    "/discrepancies/{discrepancy_id}/resolve",
    response_model=DiscrepancyOut,
    dependencies=[require(*SUPERVISORS), Idempotent],
    responses=WRITE,
    summary="An authority supervisor with jurisdiction closes the discrepancy",
)
async def resolve(
    discrepancy_id: uuid.UUID, body: NoteIn, session: Session, actor: CurrentActor
) -> DiscrepancyOut:
    return DiscrepancyOut.of(
        await shipments.resolve_discrepancy(session, actor, discrepancy_id, body.note)
    )
