"""Users and API keys: created by the owner's admin (enterprise admin, authority supervisor) or a
platform admin. Secrets are returned once."""

from __future__ import annotations

import uuid

from fastapi import Response

from api.deps import (
    PRINCIPAL_MANAGERS,
    CurrentActor,
    ForgetsPrincipals,
    PageParams,
    Session,
    encode_cursor,
    require,
)
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Page
from api.schemas.identity import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, UserCreate, UserOut
from api.uow import Idempotent, keeps_secrets
from domain.identity import service as identity

router = resource_router("identity")


@router.post(
    "/users",
    status_code=201,
    response_model=UserOut,
    dependencies=[require(*PRINCIPAL_MANAGERS), Idempotent],
    responses=responses(401, 403, 404, 409, 422),
    summary="Create a user who logs in with a password",
)
async def create_user(
    body: UserCreate, session: Session, actor: CurrentActor, response: Response
) -> UserOut:
    user = await identity.create_user(
        session,
        actor,
        username=body.username,
        display_name=body.display_name,
        password=body.password,
        role=body.role,
        owner=identity.Owner(body.enterprise_id, body.authority_id),
    )
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return UserOut.model_validate(user)


@router.get(
    "/users",
    response_model=Page[UserOut],
    dependencies=[require(*PRINCIPAL_MANAGERS)],
    responses=responses(401, 403, 422),
    summary="Users the caller manages",
)
async def list_users(session: Session, actor: CurrentActor, page: PageParams) -> Page[UserOut]:
    result = await identity.list_users(session, actor, after=page.after, limit=page.limit)
    return Page(
        items=[UserOut.model_validate(u) for u in result.items],
        next_cursor=encode_cursor(result.next_after),
    )


@router.get(
    "/users/{user_id}",
    response_model=UserOut,
    responses=responses(401, 404, 422),
    summary="One user (the user itself, or whoever manages it)",
)
async def get_user(user_id: uuid.UUID, session: Session, actor: CurrentActor) -> UserOut:
    return UserOut.model_validate(await identity.get_user(session, actor, user_id))


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    dependencies=[require(*PRINCIPAL_MANAGERS), Idempotent, keeps_secrets("secret")],
    responses=responses(401, 403, 404, 422),
    summary="Create an API key; its secret is in this response only",
)
async def create_api_key(
    body: ApiKeyCreate, session: Session, actor: CurrentActor, response: Response
) -> ApiKeyCreated:
    key, secret = await identity.create_api_key(
        session,
        actor,
        name=body.name,
        role=body.role,
        expires_at=body.expires_at,
        owner=identity.Owner(body.enterprise_id, body.authority_id),
        facility_id=body.facility_id,
    )
    response.headers["Location"] = f"/api/v1/api-keys/{key.id}"
    return ApiKeyCreated.model_validate({**key.model_dump(), "secret": secret})


@router.get(
    "/api-keys",
    response_model=Page[ApiKeyOut],
    dependencies=[require(*PRINCIPAL_MANAGERS)],
    responses=responses(401, 403, 422),
    summary="API keys the caller manages (never their secrets)",
)
async def list_api_keys(session: Session, actor: CurrentActor, page: PageParams) -> Page[ApiKeyOut]:
    result = await identity.list_api_keys(session, actor, after=page.after, limit=page.limit)
    return Page(
        items=[ApiKeyOut.model_validate(k) for k in result.items],
        next_cursor=encode_cursor(result.next_after),
    )


@router.get(
    "/api-keys/{key_id}",
    response_model=ApiKeyOut,
    responses=responses(401, 404, 422),
    summary="One API key (the key itself, or whoever manages it); never its secret",
)
async def get_api_key(key_id: uuid.UUID, session: Session, actor: CurrentActor) -> ApiKeyOut:
    return ApiKeyOut.model_validate(await identity.get_api_key(session, actor, key_id))


@router.delete(
    "/api-keys/{key_id}",
    response_model=ApiKeyOut,
    dependencies=[require(*PRINCIPAL_MANAGERS), ForgetsPrincipals],
    responses=responses(401, 403, 404, 422),
    summary="Revoke an API key (idempotent: revoking twice keeps the first time)",
)
async def revoke_api_key(key_id: uuid.UUID, session: Session, actor: CurrentActor) -> ApiKeyOut:
    return ApiKeyOut.model_validate(await identity.revoke_api_key(session, actor, key_id))
