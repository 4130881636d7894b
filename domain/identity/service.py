"""Identity use cases: principals, login, refresh-token rotation, API keys, first-start admin."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import ColumnElement, Select, false, func, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from domain.actor import Actor, PrincipalKind, Role
from domain.audit import service as audit
from domain.base import utcnow
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from domain.identity.models import ApiKey, RefreshToken, User
from domain.identity.rules import (
    MIN_PASSWORD_LENGTH,
    USERNAME,
    api_key_well_formed,
    display_prefix,
    new_api_key,
    new_refresh_token,
    role_fits_owner,
    secret_hash,
)
from domain.pagination import Page, keyset_page
from domain.registry.models import Authority, Enterprise, Facility
from domain.registry.service import get_authority, get_enterprise

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a miss costs as long as a hit.
_DUMMY_HASH = _hasher.hash("scrapflow-timing-equaliser")


class RefreshTokenReused(Unauthenticated):
    code = "refresh_token_reused"
    title = "Refresh token already used"
    keeps_writes = True  # the family stays revoked although the request fails


@dataclass(frozen=True, slots=True)
class Owner:
    enterprise_id: uuid.UUID | None
    authority_id: uuid.UUID | None


# --- resolving principals ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a credential stands for, and until when that answer may be reused."""

    actor: Actor
    expires_at: datetime | None = None


def _principal_query(model: type[User] | type[ApiKey]) -> Select[SQLModel, str, str]:
    """The principal with its enterprise's status and its authority's jurisdiction, one query."""
    return (
        select(model, col(Enterprise.status), col(Authority.jurisdiction))
        .outerjoin(Enterprise, col(Enterprise.id) == model.enterprise_id)
        .outerjoin(Authority, col(Authority.id) == model.authority_id)
    )


def _actor(
    principal: User | ApiKey, kind: PrincipalKind, status: str | None, jurisdiction: str | None
) -> Actor:
    return Actor(
        principal_id=principal.id,
        principal_kind=kind,
        role=Role(principal.role),
        enterprise_id=principal.enterprise_id,
        authority_id=principal.authority_id,
        jurisdiction=jurisdiction,
        enterprise_active=status in (None, "active"),
        facility_id=principal.facility_id if isinstance(principal, ApiKey) else None,
    )


async def principal_for_api_key(session: AsyncSession, token: str) -> Principal:
    if not api_key_well_formed(token):
        raise Unauthenticated("the API key is malformed (bad length, characters or checksum)")
    row = (
        await session.execute(
            _principal_query(ApiKey).where(col(ApiKey.secret_hash) == secret_hash(token))
        )
    ).first()
    now = utcnow()
    key = row[0] if row else None
    if (
        row is None
        or not isinstance(key, ApiKey)
        or key.revoked_at is not None
        or (key.expires_at and key.expires_at <= now)
    ):
        raise Unauthenticated("the API key is unknown, revoked or expired")
    return Principal(_actor(key, PrincipalKind.api_key, row[1], row[2]), key.expires_at)


async def principal_for_user(session: AsyncSession, user_id: uuid.UUID) -> Principal:
    row = (await session.execute(_principal_query(User).where(col(User.id) == user_id))).first()
    user = row[0] if row else None
    if row is None or not isinstance(user, User) or user.status != "active":
        raise Unauthenticated("the user behind this token no longer exists or is disabled")
    return Principal(_actor(user, PrincipalKind.user, row[1], row[2]))


async def actor_for_api_key(
    session: AsyncSession, token: str, request_id: str | None = None
) -> Actor:
    actor = (await principal_for_api_key(session, token)).actor
    return replace(actor, request_id=request_id)


async def actor_for_user(
    session: AsyncSession, user_id: uuid.UUID, request_id: str | None = None
) -> Actor:
    actor = (await principal_for_user(session, user_id)).actor
    return replace(actor, request_id=request_id)


# --- who manages whom -------------------------------------------------------------------------


async def _check_manages(session: AsyncSession, actor: Actor, owner: Owner, role: Role) -> None:
    """Platform admins manage everyone; an enterprise admin its enterprise; a supervisor its
    authority. The owner must be visible first (404 otherwise), then manageable (403)."""
    if owner.enterprise_id is not None and owner.authority_id is not None:
        raise InvalidInput("a principal belongs to an enterprise or an authority, not both")
    if not role_fits_owner(
        role, enterprise=owner.enterprise_id is not None, authority=owner.authority_id is not None
    ):
        raise InvalidInput(
            f"role {role.value} does not fit this owner: enterprises have admin/operator/viewer, "
            "authorities inspector/supervisor, platform admins no owner",
            errors=[{"pointer": "/role", "detail": "role does not fit the owner"}],
        )
    if owner.enterprise_id is not None:
        await get_enterprise(session, actor, owner.enterprise_id)
    if owner.authority_id is not None:
        await get_authority(session, actor, owner.authority_id)
    if actor.is_platform_admin:
        return
    manages_enterprise = (
        owner.enterprise_id is not None
        and actor.enterprise_id == owner.enterprise_id
        and actor.role is Role.admin
        and actor.enterprise_active
    )
    manages_authority = (
        owner.authority_id is not None
        and actor.authority_id == owner.authority_id
        and actor.role is Role.supervisor
    )
    if manages_enterprise or manages_authority:
        return
    raise Forbidden("only the owner's admin (or supervisor) or a platform admin manages principals")


def principal_visible_to(actor: Actor, model: type[User] | type[ApiKey]) -> ColumnElement[bool]:
    if actor.is_platform_admin:
        return true()
    if actor.enterprise_id is not None and actor.role is Role.admin:
        return model.enterprise_id == actor.enterprise_id  # type: ignore[return-value]
    if actor.authority_id is not None and actor.role is Role.supervisor:
        return model.authority_id == actor.authority_id  # type: ignore[return-value]
    if actor.principal_id is not None:
        return model.id == actor.principal_id  # type: ignore[return-value]
    return false()


def _owner_ids(owner: Owner) -> list[uuid.UUID | None]:
    return [owner.enterprise_id]


# --- users ------------------------------------------------------------------------------------


async def create_user(
    session: AsyncSession,
    actor: Actor,
    *,
    username: str,
    display_name: str,
    password: str,
    role: Role,
    owner: Owner,
) -> User:
    if role is Role.device:
        raise InvalidInput(
            "role device is for weighbridge API keys; people log in with another role",
            errors=[{"pointer": "/role", "detail": "devices use API keys"}],
        )
    await _check_manages(session, actor, owner, role)
    username = username.lower()
    if not USERNAME.match(username):
        raise InvalidInput(
            "username: 3-64 characters of a-z, 0-9, '.', '_', '@', '-', starting alphanumeric",
            errors=[{"pointer": "/username", "detail": "invalid username"}],
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password must have at least {MIN_PASSWORD_LENGTH} characters",
            errors=[{"pointer": "/password", "detail": "too short"}],
        )
    if await session.scalar(select(col(User.id)).where(col(User.username) == username)) is not None:
        raise Conflict(f"username {username} is taken")
    user = User(
        username=username,
        display_name=display_name,
        password_hash=await asyncio.to_thread(_hasher.hash, password),
        role=role.value,
        enterprise_id=owner.enterprise_id,
        authority_id=owner.authority_id,
    )
    session.add(user)
    await session.flush()
    await audit.record(
        session,
        actor,
        "user.created",
        subject_type="user",
        subject_id=user.id,
        enterprise_ids=_owner_ids(owner),
        payload={
            "username": username,
            "role": role.value,
            "enterprise_id": owner.enterprise_id,
            "authority_id": owner.authority_id,
        },
    )
    return user


async def get_user(session: AsyncSession, actor: Actor, user_id: uuid.UUID) -> User:
    user = await session.scalar(
        select(User).where(col(User.id) == user_id, principal_visible_to(actor, User))
    )
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def list_users(
    session: AsyncSession, actor: Actor, *, after: uuid.UUID | None, limit: int
) -> Page[User]:
    query = select(User).where(principal_visible_to(actor, User))
    return await keyset_page(session, query, col(User.id), after=after, limit=limit)


# --- login and refresh ------------------------------------------------------------------------


async def _issue_refresh_token(
    session: AsyncSession, user: User, family_id: uuid.UUID, lifetime: timedelta
) -> str:
    token = new_refresh_token()
    session.add(
        RefreshToken(
            family_id=family_id,
            user_id=user.id,
            token_hash=secret_hash(token),
            expires_at=utcnow() + lifetime,
        )
    )
    await session.flush()
    return token


async def login(
    session: AsyncSession,
    username: str,
    password: str,
    *,
    refresh_lifetime: timedelta,
    request_id: str | None,
) -> tuple[User, str]:
    user = await session.scalar(select(User).where(col(User.username) == username.lower()))
    try:
        await asyncio.to_thread(
            _hasher.verify, user.password_hash if user else _DUMMY_HASH, password
        )
    except (VerifyMismatchError, InvalidHashError):
        user = None
    if user is None or user.status != "active":
        raise Unauthenticated("unknown username or wrong password")
    actor = await actor_for_user(session, user.id, request_id)
    token = await _issue_refresh_token(session, user, uuid.uuid4(), refresh_lifetime)
    await audit.record(
        session, actor, "user.logged_in", subject_type="user", subject_id=user.id, payload={}
    )
    return user, token


async def refresh(
    session: AsyncSession, token: str, *, refresh_lifetime: timedelta, request_id: str | None
) -> tuple[User, str]:
    current = await session.scalar(
        select(RefreshToken)
        .where(col(RefreshToken.token_hash) == secret_hash(token))
        .with_for_update()
    )
    if current is None:
        raise Unauthenticated("unknown refresh token")
    actor = await actor_for_user(session, current.user_id, request_id)
    now = utcnow()
    if current.rotated_at is not None:
        await _revoke_family(session, current.family_id, now)
        await audit.record(
            session,
            actor,
            "user.refresh_token_reused",
            subject_type="user",
            subject_id=current.user_id,
            payload={"family_id": current.family_id, "token_id": current.id},
        )
        raise RefreshTokenReused(
            "this refresh token was already used; every token of its login is now revoked"
        )
    if current.revoked_at is not None:
        raise Unauthenticated("the refresh token was revoked (logout or an earlier reuse)")
    if current.expires_at <= now:
        raise Unauthenticated("the refresh token has expired")
    current.rotated_at = now
    user = await session.get_one(User, current.user_id)
    new_token = await _issue_refresh_token(session, user, current.family_id, refresh_lifetime)
    return user, new_token


async def logout(session: AsyncSession, token: str) -> None:
    current = await session.scalar(
        select(RefreshToken).where(col(RefreshToken.token_hash) == secret_hash(token))
    )
    if current is not None:
        await _revoke_family(session, current.family_id, utcnow())


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )


# --- API keys ---------------------------------------------------------------------------------


async def create_api_key(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    role: Role,
    owner: Owner,
    expires_at: datetime | None,
    facility_id: uuid.UUID | None = None,
) -> tuple[ApiKey, str]:
    await _check_manages(session, actor, owner, role)
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput(
            "expires_at must be in the future",
            errors=[{"pointer": "/expires_at", "detail": "in the past"}],
        )
    await _check_device_facility(session, role, owner, facility_id)
    key, secret = await _insert_api_key(
        session, name, role, owner, actor.principal_id, expires_at, facility_id
    )
    await audit.record(
        session,
        actor,
        "api_key.created",
        subject_type="api_key",
        subject_id=key.id,
        enterprise_ids=_owner_ids(owner),
        payload={
            "name": name,
            "role": role.value,
            "prefix": key.prefix,
            "expires_at": expires_at,
            "enterprise_id": owner.enterprise_id,
            "authority_id": owner.authority_id,
            "facility_id": facility_id,
        },
    )
    return key, secret


async def _check_device_facility(
    session: AsyncSession, role: Role, owner: Owner, facility_id: uuid.UUID | None
) -> None:
    """A device key (a weighbridge) is bound to one facility of its own enterprise; no other key
    names a facility. A facility of another enterprise reads as a missing one."""
    if role is not Role.device:
        if facility_id is not None:
            raise InvalidInput(
                "only device keys (role device) are bound to a facility",
                errors=[{"pointer": "/facility_id", "detail": "only for role device"}],
            )
        return
    if facility_id is None:
        raise InvalidInput(
            "a device key needs the facility_id of its weighbridge",
            errors=[{"pointer": "/facility_id", "detail": "required for role device"}],
        )
    enterprise_id = await session.scalar(
        select(col(Facility.enterprise_id)).where(col(Facility.id) == facility_id)
    )
    if enterprise_id is None or enterprise_id != owner.enterprise_id:
        raise InvalidInput(
            f"facility {facility_id} is not a facility of enterprise {owner.enterprise_id}",
            errors=[{"pointer": "/facility_id", "detail": "not a facility of this enterprise"}],
        )


async def _insert_api_key(
    session: AsyncSession,
    name: str,
    role: Role,
    owner: Owner,
    created_by: uuid.UUID | None,
    expires_at: datetime | None,
    facility_id: uuid.UUID | None = None,
) -> tuple[ApiKey, str]:
    secret = new_api_key()
    key = ApiKey(
        name=name,
        prefix=display_prefix(secret),
        secret_hash=secret_hash(secret),
        role=role.value,
        enterprise_id=owner.enterprise_id,
        authority_id=owner.authority_id,
        facility_id=facility_id,
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return key, secret


async def list_api_keys(
    session: AsyncSession, actor: Actor, *, after: uuid.UUID | None, limit: int
) -> Page[ApiKey]:
    query = select(ApiKey).where(principal_visible_to(actor, ApiKey))
    return await keyset_page(session, query, col(ApiKey.id), after=after, limit=limit)


async def get_api_key(
    session: AsyncSession, actor: Actor, key_id: uuid.UUID, *, lock: bool = False
) -> ApiKey:
    query = select(ApiKey).where(col(ApiKey.id) == key_id, principal_visible_to(actor, ApiKey))
    key = await session.scalar(query.with_for_update() if lock else query)
    if key is None:
        raise NotFound(f"api key {key_id} not found")
    return key


async def revoke_api_key(session: AsyncSession, actor: Actor, key_id: uuid.UUID) -> ApiKey:
    key = await get_api_key(session, actor, key_id, lock=True)
    await _check_manages(session, actor, Owner(key.enterprise_id, key.authority_id), Role(key.role))
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
        await audit.record(
            session,
            actor,
            "api_key.revoked",
            subject_type="api_key",
            subject_id=key.id,
            enterprise_ids=[key.enterprise_id],
            payload={"prefix": key.prefix},
        )
    return key


# --- first start ------------------------------------------------------------------------------


async def bootstrap_platform_admin(session: AsyncSession, actor: Actor) -> str | None:
    """Against an empty registry, create the platform admin's API key and return it (once)."""
    # Serialise concurrent first starts (two processes on one database).
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('scrapflow.bootstrap'))"))
    has_admin = await session.scalar(
        select(func.count()).select_from(User).where(col(User.role) == Role.platform_admin.value)
    )
    has_key = await session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(col(ApiKey.role) == Role.platform_admin.value)
    )
    if has_admin or has_key:
        return None
    key, secret = await _insert_api_key(
        session, "first-start platform admin", Role.platform_admin, Owner(None, None), None, None
    )
    await audit.record(
        session,
        actor,
        "api_key.created",
        subject_type="api_key",
        subject_id=key.id,
        payload={"name": key.name, "role": key.role, "prefix": key.prefix, "bootstrap": True},
    )
    return secret
