"""Weighbridge tickets: posted by a facility's scale with its device key (a key that can do
nothing else), read by the facility's enterprise and the authorities over it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Response

from api.deps import CurrentActor, PageParams, Session, encode_cursor, for_devices, require
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Page
from api.schemas.weighbridge import TicketCreate, TicketOut
from api.uow import Idempotent
from domain.actor import Role
from domain.mass import kg_to_g
from domain.weighbridge import service as weighbridge

router = resource_router("weighbridge")


@router.post(
    "/weighbridge/tickets",
    status_code=201,
    response_model=TicketOut,
    dependencies=[require(Role.device), Idempotent],
    responses=responses(401, 403, 409, 422),
    summary="Record a weighing (device keys only); a repeated ticket number is 409 and an anomaly",
    description="Net must be exactly gross − tare (422 naming both). A ticket number already "
    "recorded at the facility is refused with 409 `duplicate_weighbridge_ticket`, and the attempt "
    "is kept for the regulators' anomaly report: a scale that retries after a lost response "
    "should send the same `Idempotency-Key`, which replays the first answer instead.",
)
@for_devices
async def record_ticket(
    body: TicketCreate, session: Session, actor: CurrentActor, response: Response
) -> TicketOut:
    ticket = await weighbridge.record_ticket(
        session,
        actor,
        weighbridge.Reading(
            ticket_no=body.ticket_no,
            vehicle_plate=body.vehicle_plate,
            gross_g=kg_to_g(body.gross_kg),
            tare_g=kg_to_g(body.tare_kg),
            net_g=kg_to_g(body.net_kg),
            weighed_at=body.weighed_at,
            facility_id=body.facility_id,
        ),
    )
    response.headers["Location"] = f"/api/v1/weighbridge/tickets/{ticket.id}"
    return TicketOut.of(ticket)


@router.get(
    "/weighbridge/tickets",
    response_model=Page[TicketOut],
    responses=responses(401, 403, 404, 422),
    summary="A facility's tickets (its enterprise, authorities over it), oldest first",
)
async def list_tickets(
    session: Session,
    actor: CurrentActor,
    page: PageParams,
    facility_id: uuid.UUID,
    ticket_no: Annotated[str | None, Query(max_length=64)] = None,
    unused: Annotated[
        bool | None, Query(description="true: not yet taken by a receipt; false: taken")
    ] = None,
) -> Page[TicketOut]:
    result = await weighbridge.list_tickets(
        session,
        actor,
        facility_id,
        ticket_no=ticket_no,
        unused=unused,
        after=page.after,
        limit=page.limit,
    )
    return Page(
        items=[TicketOut.of(t) for t in result.items],
        next_cursor=encode_cursor(result.next_after),
    )


@router.get(
    "/weighbridge/tickets/{ticket_id}",
    response_model=TicketOut,
    responses=responses(401, 403, 404, 422),
    summary="One ticket",
)
async def get_ticket(ticket_id: uuid.UUID, session: Session, actor: CurrentActor) -> TicketOut:
    return TicketOut.of(await weighbridge.get_ticket(session, actor, ticket_id))
