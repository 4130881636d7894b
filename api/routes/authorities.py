from __future__ import annotations

import uuid

from fastapi import Response

from api.deps import CurrentActor, PageParams, Session, encode_cursor, require
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Page
from api.schemas.registry import AuthorityCreate, AuthorityOut
from api.uow import Idempotent
from domain.actor import Role
from domain.registry import service as registry

router = resource_router("registry")


@router.post(
    "/authorities",
    status_code=201,
    response_model=AuthorityOut,
    dependencies=[require(Role.platform_admin), Idempotent],
    responses=responses(401, 403, 422),
    summary="Register a regulating authority with its jurisdiction (platform admin)",
)
async def create_authority(
    body: AuthorityCreate, session: Session, actor: CurrentActor, response: Response
) -> AuthorityOut:
    authority = await registry.create_authority(session, actor, **body.model_dump())
    response.headers["Location"] = f"/api/v1/authorities/{authority.id}"
    return AuthorityOut.model_validate(authority)


@router.get(
    "/authorities",
    response_model=Page[AuthorityOut],
    responses=responses(401, 422),
    summary="Authorities the caller may see (its own; all for platform admins)",
)
async def list_authorities(
    session: Session, actor: CurrentActor, page: PageParams
) -> Page[AuthorityOut]:
    result = await registry.list_authorities(session, actor, after=page.after, limit=page.limit)
    return Page(
        items=[AuthorityOut.model_validate(a) for a in result.items],
        next_cursor=encode_cursor(result.next_after),
    )


@router.get(
    "/authorities/{authority_id}",
    response_model=AuthorityOut,
    responses=responses(401, 404, 422),
    summary="One authority (its members, platform admins)",
)
async def get_authority(
    authority_id: uuid.UUID, session: Session, actor: CurrentActor
) -> AuthorityOut:
    return AuthorityOut.model_validate(await registry.get_authority(session, actor, authority_id))
