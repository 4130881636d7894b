"""An enterprise's recycled credits: balances and the ledger."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from api.deps import CurrentActor, PageParams, ReadSession, encode_cursor
from api.problems import responses
from api.routes import resource_router
from api.schemas.credits import BalanceOut, CreditsOut, EntryOut
from domain.credits import service as credits
from domain.lots.rules import Metal

router = resource_router("credits")


@router.get(
    "/enterprises/{enterprise_id}/credits",
    response_model=CreditsOut,
    responses=responses(401, 404, 422),
    summary="Recycled credit balances by metal and class, and the ledger (oldest first)",
)
async def get_credits(
    enterprise_id: uuid.UUID,
    session: ReadSession,
    actor: CurrentActor,
    page: PageParams,
    metal: Annotated[Metal | None, Query()] = None,
) -> CreditsOut:
    found = await credits.credits(
        session,
        actor,
        enterprise_id,
        metal=metal.value if metal else None,
        after=page.after,
        limit=page.limit,
    )
    return CreditsOut(
        enterprise_id=found.enterprise.id,
        balances=[BalanceOut.of(b) for b in found.balances],
        items=[EntryOut.of(e) for e in found.entries.items],
        next_cursor=encode_cursor(found.entries.next_after),
    )
