from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Query, Request, Response

from api.deps import CurrentActor, PageParams, Session, encode_cursor, etag
from api.problems import json_response, responses
from api.routes import resource_router
from api.schemas.common import Page, Timestamp
from api.schemas.shipments import CancelIn, ReceiptIn, ShipmentCreate, ShipmentOut
from api.uow import Idempotent, IdempotentActor
from domain.mass import kg_to_g
from domain.shipments import service as shipments
from domain.shipments.models import Shipment
from domain.shipments.rules import ShipmentStatus

router = resource_router("custody")
WRITE = responses(401, 403, 404, 409, 422)


async def _answer(session: Session, shipment: Shipment, response: Response) -> ShipmentOut:
    response.headers["ETag"] = etag(shipment.version)
    return ShipmentOut.of(shipment, await shipments.shipment_lines(session, shipment.id))


def _written(manifest: shipments.Manifest, headers: dict[str, str] | None = None) -> Response:
    """A dispatch's or receipt's answer, from what it wrote."""
    headers = {**(headers or {}), "ETag": etag(manifest.shipment.version)}
    return json_response(ShipmentOut.of(manifest.shipment, manifest.lines), 201, headers)


@router.post(
    "/shipments",
    status_code=201,
    response_model=ShipmentOut,
    responses=WRITE,
    summary="Dispatch whole lots from a facility of the caller's enterprise",
)
async def dispatch(body: ShipmentCreate, session: Session, actor: IdempotentActor) -> Response:
    manifest = await shipments.dispatch(
        session, actor, shipments.Dispatch(**body.model_dump(mode="python"))
    )
    return _written(manifest, {"Location": f"/api/v1/shipments/{manifest.shipment.id}"})


@router.get(
    "/shipments",
    response_model=Page[ShipmentOut],
    responses=responses(401, 422),
    summary="Shipments the caller sent or receives, or in an authority's jurisdiction",
)
async def list_shipments(
    session: Session,
    actor: CurrentActor,
    page: PageParams,
    direction: Literal["sent", "received"] | None = None,
    status: ShipmentStatus | None = None,
    facility_id: Annotated[uuid.UUID | None, Query(description="Sending or receiving")] = None,
    dispatched_from: Timestamp | None = None,
    dispatched_to: Timestamp | None = None,
) -> Page[ShipmentOut]:
    result = await shipments.list_shipments(
        session,
        actor,
        shipments.ShipmentFilter(direction, status, facility_id, dispatched_from, dispatched_to),
        after=page.after,
        limit=page.limit,
    )
    return Page(
        items=[ShipmentOut.of(s) for s in result.items],
        next_cursor=encode_cursor(result.next_after),
    )


@router.get(
    "/shipments/{shipment_id}",
    response_model=ShipmentOut,
    responses=responses(401, 404, 422),
    summary="One shipment with its lots",
)
async def get_shipment(
    shipment_id: uuid.UUID, session: Session, actor: CurrentActor, response: Response
) -> ShipmentOut:
    return await _answer(
        session, await shipments.get_shipment(session, actor, shipment_id), response
    )


@router.post(
    "/shipments/{shipment_id}/receipt",
    status_code=201,
    response_model=ShipmentOut,
    responses=WRITE,
    summary="Confirm receipt by weight, listing every lot; refusals need a reason",
)
async def receive(
    shipment_id: uuid.UUID,
    body: ReceiptIn,
    request: Request,
    session: Session,
    actor: IdempotentActor,
) -> Response:
    receipt = shipments.Receipt(
        received_at=body.received_at,
        weighbridge_ticket_no=body.weighbridge_ticket_no,
        lines=[
            shipments.ReceiptLine(
                lot_id=item.lot_id,
                received_g=None if item.received_kg is None else kg_to_g(item.received_kg),
                refused_g=kg_to_g(item.refused_kg),
                refusal_reason=item.refusal_reason,
            )
            for item in body.items
        ],
    )
    tolerances: dict[str, Decimal] = request.app.state.settings.discrepancy_tolerance
    manifest = await shipments.receive(session, actor, shipment_id, receipt, tolerances)
    return _written(manifest)


@router.post(
    "/shipments/{shipment_id}/cancel",
    response_model=ShipmentOut,
    dependencies=[Idempotent],
    responses=WRITE,
    summary="Call a shipment back before receipt; its lots return to the sender as they were",
)
async def cancel(
    shipment_id: uuid.UUID,
    body: CancelIn,
    session: Session,
    actor: CurrentActor,
    response: Response,
) -> ShipmentOut:
    shipment = await shipments.cancel(session, actor, shipment_id, body.reason)
    return await _answer(session, shipment, response)
