"""Dependencies shared by the routes: the request's session, the caller, roles, paging, If-Match."""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.limits import PageSize
from api.tokens import TokenIssuer
from domain.actor import Actor, Role
from domain.base import utcnow
from domain.errors import DomainError, Forbidden, InvalidInput, Unauthenticated
from domain.identity import service as identity
from domain.identity.rules import API_KEY_PREFIX, secret_hash
from integrations.logging import request_id_var
from integrations.settings import Settings

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])

# Dependencies are `async def` even when they do not await: FastAPI runs plain functions in a
# thread pool, a costly hop on every request.


async def session_of(request: Request) -> AsyncSession:
    session: AsyncSession = request.state.session
    return session


Session = Annotated[AsyncSession, Depends(session_of)]


async def read_session_of(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only session on the replica (`read_database_url`), or the request's own session
    when there is none. Only for heavy report and regulator reads: a replica lags the primary
    (usually well under a second), so a read that must see the caller's own just-committed write
    (a lot or shipment read back after creating it, a list after an update) stays on `Session`.
    Authentication stays on the primary too: a key created a moment ago must work at once."""
    read: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    if read is request.app.state.sessionmaker:
        yield request.state.session
        return
    async with read() as session:
        yield session


# Closed when the route returns, not after the response is sent: the connection goes back to the
# replica's pool before a long body (a register) streams.
ReadSession = Annotated[AsyncSession, Depends(read_session_of, scope="function")]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`sfk_…`) or an access token from POST /api/v1/auth/token.",
)


class PrincipalCache:
    """Who a credential stands for, remembered for a few seconds: authentication is on every
    request's path. Revocations and suspensions made through this process clear it at once
    (see `forgets_principals`); other processes see them within `ttl` seconds."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: dict[str, tuple[float, identity.Principal]] = {}

    def get(self, key: str) -> identity.Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        until, principal = entry
        expired = principal.expires_at is not None and principal.expires_at <= utcnow()
        if time.monotonic() > until or expired:
            del self._entries[key]
            return None
        return principal

    def put(self, key: str, principal: identity.Principal) -> identity.Principal:
        if self.ttl > 0:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl, principal)
        return principal

    def clear(self) -> None:
        self._entries.clear()


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    # The session straight from the request, not as a dependency: FastAPI solves a dependency's
    # own dependencies again at every use, even when its value is cached.
    session: AsyncSession = request.state.session
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send Authorization: Bearer <API key or access token>")
    token = credentials.credentials
    cache: PrincipalCache = request.app.state.principals
    if token.startswith(API_KEY_PREFIX):
        key = "key:" + secret_hash(token)
        principal = cache.get(key) or cache.put(
            key, await identity.principal_for_api_key(session, token)
        )
    else:
        issuer: TokenIssuer = request.app.state.tokens
        user_id = issuer.user_id(token)  # the signature and claims are checked every time
        key = f"user:{user_id}"
        principal = cache.get(key) or cache.put(
            key, await identity.principal_for_user(session, user_id)
        )
    if principal.actor.role is Role.device and not _devices_allowed(request):
        raise Forbidden("a weighbridge device key may only post weighbridge tickets")
    return replace(principal.actor, request_id=request_id_var.get())


def for_devices(endpoint: _Endpoint) -> _Endpoint:
    """Marks a route that weighbridge device keys may call; they may call nothing else."""
    endpoint.devices_allowed = True  # type: ignore[attr-defined]
    return endpoint


def _devices_allowed(request: Request) -> bool:
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    return getattr(endpoint, "devices_allowed", False) is True


async def forget_principals(request: Request) -> None:
    """Dependency of routes that revoke or suspend: the principal cache is cleared after commit."""
    request.state.forget_principals = True


ForgetsPrincipals = Depends(forget_principals)


CurrentActor = Annotated[Actor, Depends(current_actor)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(_settings)]


def require(*roles: Role) -> Any:
    """Route-level role check; services add the finer checks (which enterprise, which region)."""
    allowed = frozenset(roles)

    async def check(actor: CurrentActor) -> Actor:
        if actor.role not in allowed:
            raise Forbidden(
                f"role {actor.role.value} may not do this; allowed: "
                + ", ".join(sorted(r.value for r in allowed))
            )
        return actor

    return Depends(check)


ANY_PRINCIPAL = tuple(Role)
ENTERPRISE_MANAGERS = (Role.platform_admin, Role.admin)
PRINCIPAL_MANAGERS = (Role.platform_admin, Role.admin, Role.supervisor)
SUPERVISORS = (Role.platform_admin, Role.supervisor)


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"


def encode_cursor(after: uuid.UUID | None) -> str | None:
    if after is None:
        return None
    raw = json.dumps({"after": str(after)}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_cursor(cursor: str | None) -> uuid.UUID | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(json.loads(raw)["after"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise InvalidCursor(
            "cursor is not one this service returned; pass next_cursor unchanged",
            errors=[{"pointer": "/cursor", "detail": "malformed", "location": "query"}],
        ) from error


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    after: uuid.UUID | None


async def paging(
    limit: PageSize,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
) -> Paging:
    return Paging(limit, _decode_cursor(cursor))


PageParams = Annotated[Paging, Depends(paging)]


class PreconditionRequired(DomainError):
    code = "precondition_required"
    status = 428
    title = "If-Match required"


async def expected_version(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='The ETag from the last read, e.g. "3". Required for updates.',
            max_length=64,
        ),
    ] = None,
) -> int:
    if if_match is None:
        raise PreconditionRequired("send If-Match with the ETag of the version you read")
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise InvalidInput(
            f'If-Match must be an ETag this service returned, like "3"; got {if_match!r}'
        )
    return int(tag)


ExpectedVersion = Annotated[int, Depends(expected_version)]


def etag(version: int) -> str:
    return f'"{version}"'
