from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Response

from api.deps import (
    ENTERPRISE_MANAGERS,
    SUPERVISORS,
    CurrentActor,
    ExpectedVersion,
    PageParams,
    Session,
    encode_cursor,
    etag,
    require,
)
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Page, ReasonBody
from api.schemas.registry import FacilityCreate, FacilityOut, FacilityPatch, capacity_grams
from api.uow import Idempotent
from domain.registry import service as registry
from domain.registry.rules import FacilityKind, Status

router = resource_router("registry")


@router.post(
    "/facilities",
    status_code=201,
    response_model=FacilityOut,
    # Any principal: the service answers 404 for an invisible enterprise before 403 for a role.
    dependencies=[Idempotent],
    responses=responses(401, 403, 404, 409, 422),
    summary="Register a facility of an enterprise (its admin, or a platform admin)",
)
async def create_facility(
    body: FacilityCreate, session: Session, actor: CurrentActor, response: Response
) -> FacilityOut:
    fields = body.model_dump(exclude={"annual_capacity_t"})
    facility = await registry.create_facility(
        session, actor, **fields, annual_capacity_g=capacity_grams(body.annual_capacity_t)
    )
    response.headers["Location"] = f"/api/v1/facilities/{facility.id}"
    response.headers["ETag"] = etag(facility.version)
    return FacilityOut.of(facility)


@router.get(
    "/facilities",
    response_model=Page[FacilityOut],
    responses=responses(401, 422),
    summary="Facilities the caller may see",
)
async def list_facilities(
    session: Session,
    actor: CurrentActor,
    page: PageParams,
    enterprise_id: Annotated[uuid.UUID | None, Query()] = None,
    kind: Annotated[FacilityKind | None, Query()] = None,
) -> Page[FacilityOut]:
    result = await registry.list_facilities(
        session, actor, enterprise_id=enterprise_id, kind=kind, after=page.after, limit=page.limit
    )
    return Page(
        items=[FacilityOut.of(f) for f in result.items],
        next_cursor=encode_cursor(result.next_after),
    )


@router.get(
    "/facilities/{facility_id}",
    response_model=FacilityOut,
    responses=responses(401, 404, 422),
    summary="One facility: its enterprise's members, authorities with jurisdiction",
)
async def get_facility(
    facility_id: uuid.UUID, session: Session, actor: CurrentActor, response: Response
) -> FacilityOut:
    facility = await registry.get_facility(session, actor, facility_id)
    response.headers["ETag"] = etag(facility.version)
    return FacilityOut.of(facility)


@router.patch(
    "/facilities/{facility_id}",
    response_model=FacilityOut,
    dependencies=[require(*ENTERPRISE_MANAGERS)],
    responses=responses(401, 403, 404, 412, 422, 428),
    summary="Update a facility (If-Match required)",
)
async def update_facility(
    facility_id: uuid.UUID,
    body: FacilityPatch,
    version: ExpectedVersion,
    session: Session,
    actor: CurrentActor,
    response: Response,
) -> FacilityOut:
    changes = body.model_dump(exclude_unset=True)
    if "annual_capacity_t" in changes:
        changes["annual_capacity_g"] = capacity_grams(changes.pop("annual_capacity_t"))
    facility = await registry.update_facility(
        session, actor, facility_id, expected_version=version, changes=changes
    )
    response.headers["ETag"] = etag(facility.version)
    return FacilityOut.of(facility)


@router.post(
    "/facilities/{facility_id}/suspend",
    response_model=FacilityOut,
    dependencies=[require(*SUPERVISORS)],
    responses=responses(401, 403, 404, 409, 422),
    summary="Suspend a facility (authority supervisor with jurisdiction, platform admin)",
)
async def suspend_facility(
    facility_id: uuid.UUID, body: ReasonBody, session: Session, actor: CurrentActor
) -> FacilityOut:
    facility = await registry.set_facility_status(
        session, actor, facility_id, Status.suspended, body.reason
    )
    return FacilityOut.of(facility)


@router.post(
    "/facilities/{facility_id}/reinstate",
    response_model=FacilityOut,
    dependencies=[require(*SUPERVISORS)],
    responses=responses(401, 403, 404, 409, 422),
    summary="Lift a facility's suspension",
)
async def reinstate_facility(
    facility_id: uuid.UUID, body: ReasonBody, session: Session, actor: CurrentActor
) -> FacilityOut:
    facility = await registry.set_facility_status(
        session, actor, facility_id, Status.active, body.reason
    )
    return FacilityOut.of(facility)
