from __future__ import annotations

import uuid

from fastapi import Response

from api.deps import (
    ENTERPRISE_MANAGERS,
    SUPERVISORS,
    CurrentActor,
    ExpectedVersion,
    ForgetsPrincipals,
    PageParams,
    Session,
    encode_cursor,
    etag,
    require,
)
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Page, ReasonBody
from api.schemas.registry import EnterpriseCreate, EnterpriseOut, EnterprisePatch
from api.uow import Idempotent
from domain.actor import Role
from domain.registry import service as registry
from domain.registry.rules import Status

router = resource_router("registry")


@router.post(
    "/enterprises",
    status_code=201,
    response_model=EnterpriseOut,
    dependencies=[require(Role.platform_admin), Idempotent],
    responses=responses(401, 403, 409, 422),
    summary="Register an enterprise (platform admin)",
)
async def create_enterprise(
    body: EnterpriseCreate, session: Session, actor: CurrentActor, response: Response
) -> EnterpriseOut:
    enterprise = await registry.create_enterprise(session, actor, **body.model_dump())
    response.headers["Location"] = f"/api/v1/enterprises/{enterprise.id}"
    response.headers["ETag"] = etag(enterprise.version)
    return EnterpriseOut.model_validate(enterprise)


@router.get(
    "/enterprises",
    response_model=Page[EnterpriseOut],
    responses=responses(401, 422),
    summary="Enterprises the caller may see",
)
async def list_enterprises(
    session: Session, actor: CurrentActor, page: PageParams
) -> Page[EnterpriseOut]:
    result = await registry.list_enterprises(session, actor, after=page.after, limit=page.limit)
    return Page(
        items=[EnterpriseOut.model_validate(e) for e in result.items],
        next_cursor=encode_cursor(result.next_after),
    )


@router.get(
    "/enterprises/{enterprise_id}",
    response_model=EnterpriseOut,
    responses=responses(401, 404, 422),
    summary="One enterprise: its members, authorities with jurisdiction, platform admins",
)
async def get_enterprise(
    enterprise_id: uuid.UUID, session: Session, actor: CurrentActor, response: Response
) -> EnterpriseOut:
    enterprise = await registry.get_enterprise(session, actor, enterprise_id)
    response.headers["ETag"] = etag(enterprise.version)
    return EnterpriseOut.model_validate(enterprise)


@router.patch(
    "/enterprises/{enterprise_id}",
    response_model=EnterpriseOut,
    dependencies=[require(*ENTERPRISE_MANAGERS)],
    responses=responses(401, 403, 404, 412, 422, 428),
    summary="Rename (enterprise admin) or change roles and home region (platform admin)",
)
async def update_enterprise(
    enterprise_id: uuid.UUID,
    body: EnterprisePatch,
    version: ExpectedVersion,
    session: Session,
    actor: CurrentActor,
    response: Response,
) -> EnterpriseOut:
    enterprise = await registry.update_enterprise(
        session,
        actor,
        enterprise_id,
        expected_version=version,
        changes=body.model_dump(exclude_unset=True),
    )
    response.headers["ETag"] = etag(enterprise.version)
    return EnterpriseOut.model_validate(enterprise)


@router.post(
    "/enterprises/{enterprise_id}/suspend",
    response_model=EnterpriseOut,
    dependencies=[require(*SUPERVISORS), ForgetsPrincipals],
    responses=responses(401, 403, 404, 409, 422),
    summary="Suspend an enterprise (authority supervisor with jurisdiction, platform admin)",
)
async def suspend_enterprise(
    enterprise_id: uuid.UUID, body: ReasonBody, session: Session, actor: CurrentActor
) -> EnterpriseOut:
    enterprise = await registry.set_enterprise_status(
        session, actor, enterprise_id, Status.suspended, body.reason
    )
    return EnterpriseOut.model_validate(enterprise)


@router.post(
    "/enterprises/{enterprise_id}/reinstate",
    response_model=EnterpriseOut,
    dependencies=[require(*SUPERVISORS), ForgetsPrincipals],
    responses=responses(401, 403, 404, 409, 422),
    summary="Lift a suspension",
)
async def reinstate_enterprise(
    enterprise_id: uuid.UUID, body: ReasonBody, session: Session, actor: CurrentActor
) -> EnterpriseOut:
    enterprise = await registry.set_enterprise_status(
        session, actor, enterprise_id, Status.active, body.reason
    )
    return EnterpriseOut.model_validate(enterprise)
