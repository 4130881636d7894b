"""Login, token refresh, logout, and who the caller is."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Form, Request
from sqlalchemy import select
from sqlmodel import col

from api.deps import CurrentActor, Session
from api.problems import responses
from api.routes import resource_router
from api.schemas.identity import MeOut, OwnerSummary, RefreshIn, TokenOut
from api.tokens import TokenIssuer
from domain.identity import service as identity
from domain.identity.models import User
from domain.registry.models import Authority, Enterprise
from integrations.logging import request_id_var

router = resource_router("identity")


class LoginForm:
    """The OAuth2 password form (as FastAPI's), each field as long as what users are created with
    at most; the client fields are accepted and ignored."""

    def __init__(
        self,
        *,
        grant_type: Annotated[str | None, Form(pattern="^password$", max_length=8)] = None,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=256, json_schema_extra={"format": "password"})],
        scope: Annotated[str, Form(max_length=200)] = "",
        client_id: Annotated[str | None, Form(max_length=200)] = None,
        client_secret: Annotated[
            str | None, Form(max_length=200, json_schema_extra={"format": "password"})
        ] = None,
    ):
        self.username = username
        self.password = password


def _tokens(request: Request, user: User, refresh_token: str) -> TokenOut:
    issuer: TokenIssuer = request.app.state.tokens
    return TokenOut(
        access_token=issuer.issue(user.id),
        expires_in=int(issuer.lifetime.total_seconds()),
        refresh_token=refresh_token,
    )


def _refresh_lifetime(request: Request) -> timedelta:
    return timedelta(days=request.app.state.settings.refresh_token_days)


@router.post(
    "/auth/token",
    response_model=TokenOut,
    responses=responses(401, 422),
    summary="Log in with username and password (OAuth2 password form)",
)
async def token(
    request: Request, form: Annotated[LoginForm, Depends()], session: Session
) -> TokenOut:
    user, refresh_token = await identity.login(
        session,
        form.username,
        form.password,
        refresh_lifetime=_refresh_lifetime(request),
        request_id=request_id_var.get(),
    )
    return _tokens(request, user, refresh_token)


@router.post(
    "/auth/refresh",
    response_model=TokenOut,
    responses=responses(401, 422),
    summary="Trade a refresh token for new tokens; reusing an old one revokes the whole login",
)
async def refresh(request: Request, body: RefreshIn, session: Session) -> TokenOut:
    user, refresh_token = await identity.refresh(
        session,
        body.refresh_token,
        refresh_lifetime=_refresh_lifetime(request),
        request_id=request_id_var.get(),
    )
    return _tokens(request, user, refresh_token)


@router.post(
    "/auth/logout",
    status_code=204,
    responses=responses(422),
    summary="Revoke a refresh token and every token of its login",
)
async def logout(body: RefreshIn, session: Session) -> None:
    await identity.logout(session, body.refresh_token)


@router.get(
    "/me",
    response_model=MeOut,
    responses=responses(401),
    summary="Who the caller is",
)
async def me(actor: CurrentActor, session: Session) -> MeOut:
    enterprise = authority = None
    if actor.enterprise_id is not None:
        name = await session.scalar(
            select(col(Enterprise.name)).where(col(Enterprise.id) == actor.enterprise_id)
        )
        enterprise = OwnerSummary(id=actor.enterprise_id, name=name or "")
    if actor.authority_id is not None:
        name = await session.scalar(
            select(col(Authority.name)).where(col(Authority.id) == actor.authority_id)
        )
        authority = OwnerSummary(id=actor.authority_id, name=name or "")
    return MeOut(
        principal_id=actor.principal_id,
        principal_kind=actor.principal_kind.value,
        role=actor.role,
        enterprise=enterprise,
        authority=authority,
        jurisdiction=actor.jurisdiction,
    )
