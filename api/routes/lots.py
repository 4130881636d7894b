from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import orjson
from fastapi import Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import CurrentActor, PageParams, Session, encode_cursor, etag, require
from api.limits import check_batch_size
from api.problems import json_response, pointer, responses
from api.routes import resource_router
from api.schemas.common import Page, Timestamp
from api.schemas.lots import (
    EventOut,
    ImportOrigin,
    IndividualSeller,
    LotBatchCreate,
    LotBatchOut,
    LotCreate,
    LotOut,
    OrganisationSeller,
    SellerFull,
    SellerViewIn,
    SplitIn,
    SplitOut,
)
from api.schemas.transformations import LineageFacility, LineageLot, LineageOut
from api.uow import Idempotent, IdempotentActor
from domain.actor import Role
from domain.lots import service as lots
from domain.lots.rules import LotStatus, Metal, Origin
from domain.lots.service import SellerVault
from domain.mass import g_to_kg, kg_to_g

router = resource_router("custody")
WRITE = responses(401, 403, 404, 409, 422)


def _registration(body: LotCreate) -> lots.Registration:
    origin, seller = body.origin, body.seller
    imported = origin if isinstance(origin, ImportOrigin) else None
    individual = seller if isinstance(seller, IndividualSeller) else None
    return lots.Registration(
        facility_id=body.facility_id,
        metal=body.metal,
        category=body.category,
        net_g=kg_to_g(body.net_kg),
        consumer_class=body.consumer_class,
        channel=body.channel.value,
        collected_at=body.collected_at,
        origin=Origin.import_ if imported else Origin.domestic,
        import_country=imported.country if imported else None,
        customs_declaration_no=imported.customs_declaration_no if imported else None,
        conformity_standard=imported.conformity_standard if imported else None,
        seller=lots.Seller(
            kind=seller.kind,
            name=seller.name,
            id_number=individual.id_number if individual else None,
            uscc=seller.uscc if isinstance(seller, OrganisationSeller) else None,
        ),
    )


def _vault(request: Request) -> SellerVault:
    vault: SellerVault = request.app.state.vault
    return vault


@router.post(
    "/lots",
    status_code=201,
    response_model=LotOut,
    responses=WRITE,
    summary="Register a purchased lot at a collection point of the caller's enterprise",
)
async def register_lot(
    body: LotCreate, request: Request, session: Session, actor: IdempotentActor
) -> Response:
    lot = await lots.register_lot(session, actor, _vault(request), _registration(body))
    headers = {"Location": f"/api/v1/lots/{lot.id}", "ETag": etag(lot.version)}
    return json_response(LotOut.of(lot), 201, headers)


def _read_batch(
    raw: bytes, maximum: int
) -> tuple[list[lots.Registration | None], list[dict[str, Any]]]:
    """The batch's items, read straight from the JSON bytes. When some are bad, each item is read
    alone so that every bad item is named, while the good ones still get the business checks.
    More than `maximum` items is `batch_too_large`, whatever the items say."""
    try:
        batch = LotBatchCreate.model_validate_json(raw)
    except ValidationError as error:
        whole_batch_error = RequestValidationError(error.errors(include_url=False), body=raw)
        try:
            document = json.loads(raw)
        except ValueError:
            raise whole_batch_error from error
        items = document.get("lots") if isinstance(document, dict) else None
        if isinstance(items, list):
            check_batch_size(len(items), maximum, "/lots")
        if not isinstance(items, list) or not items or len(document) != 1:
            raise whole_batch_error from error
    else:
        check_batch_size(len(batch.lots), maximum, "/lots")
        return [_registration(item) for item in batch.lots], []
    registrations: list[lots.Registration | None] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            registrations.append(_registration(LotCreate.model_validate(item)))
        except ValidationError as item_error:
            registrations.append(None)
            for detail in item_error.errors(include_url=False):
                at, _ = pointer(detail["loc"], item)
                problems.append({"pointer": f"/lots/{index}{at}", "detail": detail["msg"]})
    return registrations, problems


@router.post(
    "/lots/batch",
    status_code=201,
    response_model=LotBatchOut,
    responses=WRITE,
    summary="Register up to 5,000 lots (SCRAPFLOW_MAX_BATCH_ITEMS), all or nothing; errors point"
    " at /lots/{index}/field",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/LotBatchCreate"}}
            },
        }
    },
)
async def register_batch(request: Request, session: Session, actor: IdempotentActor) -> Response:
    # The body is read here rather than declared: pydantic-core parses the JSON bytes directly
    # (a 5,000-lot body is 1.7 MB), and a bad batch still names every bad item.
    maximum = request.app.state.settings.max_batch_items
    registrations, problems = _read_batch(await request.body(), maximum)
    registered = await lots.register_batch(session, actor, _vault(request), registrations, problems)
    return Response(batch_answer(registered), status_code=201, media_type="application/json")


def batch_answer(registered: Sequence[lots.Registered]) -> bytes:
    """LotBatchOut's JSON, written directly: building 5,000 validated LotRef models cost 8 times
    as much (tests/unit/test_batch_answer.py keeps the two byte for byte alike). Grams over 1000
    as a float is the float of the exact kilograms: both are correctly rounded."""
    return orjson.dumps(
        {
            "count": len(registered),
            "lots": [
                {"id": lot.id, "code": lot.code, "net_kg": lot.net_g / 1000} for lot in registered
            ],
        }
    )


@router.get(
    "/lots",
    response_model=Page[LotOut],
    responses=responses(401, 422),
    summary="Lots the caller may see: current and past holders, authorities with jurisdiction",
)
async def list_lots(
    session: Session,
    actor: CurrentActor,
    page: PageParams,
    facility_id: Annotated[uuid.UUID | None, Query(description="Current holder")] = None,
    status: LotStatus | None = None,
    metal: Metal | None = None,
    category: Annotated[str | None, Query(max_length=32)] = None,
    collected_from: Annotated[Timestamp | None, Query(description="Inclusive")] = None,
    collected_to: Annotated[Timestamp | None, Query(description="Exclusive")] = None,
) -> Page[LotOut]:
    result = await lots.list_lots(
        session,
        actor,
        lots.LotFilter(facility_id, status, metal, category, collected_from, collected_to),
        after=page.after,
        limit=page.limit,
    )
    return Page(
        items=[LotOut.of(lot) for lot in result.items], next_cursor=encode_cursor(result.next_after)
    )


@router.get(
    "/lots/{lot_id}",
    response_model=LotOut,
    responses=responses(401, 404, 422),
    summary="One lot",
)
async def get_lot(
    lot_id: uuid.UUID, session: Session, actor: CurrentActor, response: Response
) -> LotOut:
    lot = await lots.get_lot(session, actor, lot_id)
    response.headers["ETag"] = etag(lot.version)
    return LotOut.of(lot)


@router.get(
    "/lots/{lot_id}/history",
    response_model=list[EventOut],
    responses=responses(401, 404, 422),
    summary="Every event of the lot, oldest first",
)
async def lot_history(lot_id: uuid.UUID, session: Session, actor: CurrentActor) -> list[EventOut]:
    return [EventOut.of(e) for e in await lots.lot_history(session, actor, lot_id)]


@router.post(
    "/lots/{lot_id}/split",
    status_code=201,
    response_model=SplitOut,
    dependencies=[Idempotent],
    responses=WRITE,
    summary="Split a held lot into parts that sum exactly to it",
)
async def split_lot(
    lot_id: uuid.UUID, body: SplitIn, session: Session, actor: CurrentActor
) -> SplitOut:
    parent, children = await lots.split_lot(
        session, actor, lot_id, [kg_to_g(part) for part in body.parts_kg]
    )
    return SplitOut(parent=LotOut.of(parent), children=[LotOut.of(c) for c in children])


@router.post(
    "/lots/{lot_id}/seller-view",
    response_model=SellerFull,
    dependencies=[require(Role.supervisor)],
    responses=responses(401, 403, 404, 422),
    summary="The seller's full name and ID number (authority supervisors; every view is audited)",
)
async def view_seller(
    lot_id: uuid.UUID, body: SellerViewIn, request: Request, session: Session, actor: CurrentActor
) -> SellerFull:
    seller = await lots.reveal_seller(session, actor, _vault(request), lot_id, body.reason)
    return SellerFull(**seller)


@router.get(
    "/lots/{lot_id}/lineage",
    response_model=LineageOut,
    responses=responses(401, 404, 422),
    summary="Where the lot came from (upstream) or where its metal went (downstream), in kg",
)
async def lineage(
    lot_id: uuid.UUID,
    session: Session,
    actor: CurrentActor,
    direction: Literal["upstream", "downstream"] = "upstream",
    max_depth: Annotated[int, Query(ge=1, le=lots.MAX_LINEAGE_DEPTH)] = 20,
) -> LineageOut:
    found = await lots.lineage(session, actor, lot_id, direction, max_depth)
    return LineageOut(
        lot_id=found.lot.id,
        code=found.lot.code,
        direction=direction,
        net_kg=g_to_kg(found.lot.net_g),
        primary_kg=g_to_kg(found.primary_g),
        complete=found.complete,
        lots=[
            LineageLot(
                lot_id=r.lot_id,
                code=r.code,
                kind=r.kind,
                metal=r.metal,
                category=r.category,
                product_form=r.product_form,
                status=r.status,
                depth=r.depth,
                end=r.end,
                holder_facility_id=r.holder_facility_id,
                registered_facility_id=r.registered_facility_id,
                kg=g_to_kg(r.grams),
            )
            for r in found.lots
        ],
        facilities=[
            LineageFacility(facility_id=facility, kg=g_to_kg(grams))
            for facility, grams in found.facilities.items()
        ],
    )
