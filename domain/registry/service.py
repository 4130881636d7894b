"""Registry use cases: enterprises, facilities and authorities. Services flush, never commit."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, exists, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import Actor, Role
from domain.audit import service as audit
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed
from domain.pagination import Page, keyset_page
from domain.reference.service import check_jurisdiction, check_region_code
from domain.registry.models import Authority, Enterprise, Facility
from domain.registry.rules import Status, uscc_violation

Row = TypeVar("Row", Enterprise, Facility)


class InvalidUscc(InvalidInput):
    code = "invalid_uscc"
    title = "Invalid unified social credit code"


class DuplicateUscc(Conflict):
    code = "duplicate_uscc"
    title = "An enterprise with this unified social credit code exists"


class EnterpriseSuspended(Forbidden):
    code = "enterprise_suspended"
    title = "The enterprise is suspended"


# --- visibility -------------------------------------------------------------------------------


def _in_jurisdiction(column: Any, actor: Actor) -> ColumnElement[bool]:
    assert actor.jurisdiction is not None
    return column.startswith(actor.jurisdiction, autoescape=True)  # type: ignore[no-any-return]


def enterprise_visible_to(actor: Actor) -> ColumnElement[bool]:
    """Members see their enterprise; authorities those with a home or a facility in jurisdiction."""
    if actor.is_platform_admin:
        return true()
    if actor.enterprise_id is not None:
        return col(Enterprise.id) == actor.enterprise_id
    if actor.jurisdiction is not None:
        facility_inside = exists().where(
            col(Facility.enterprise_id) == col(Enterprise.id),
            _in_jurisdiction(col(Facility.region_code), actor),
        )
        return or_(_in_jurisdiction(col(Enterprise.region_code), actor), facility_inside)
    return false()


def facility_visible_to(actor: Actor) -> ColumnElement[bool]:
    if actor.is_platform_admin:
        return true()
    if actor.enterprise_id is not None:
        return col(Facility.enterprise_id) == actor.enterprise_id
    if actor.jurisdiction is not None:
        return _in_jurisdiction(col(Facility.region_code), actor)
    return false()


def authority_visible_to(actor: Actor) -> ColumnElement[bool]:
    if actor.is_platform_admin:
        return true()
    if actor.authority_id is not None:
        return col(Authority.id) == actor.authority_id
    return false()


async def _visible(
    session: AsyncSession, query: Select[Any], what: str, id: uuid.UUID, *, lock: bool = False
) -> Any:
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound(f"{what} {id} not found")
    return row


# --- permissions ------------------------------------------------------------------------------


def require_enterprise_admin(actor: Actor, enterprise_id: uuid.UUID) -> None:
    """Platform admins, or an admin of this very enterprise while it is active."""
    if actor.is_platform_admin:
        return
    if actor.enterprise_id != enterprise_id or actor.role is not Role.admin:
        raise Forbidden("only the enterprise's admin or a platform admin may do this")
    if not actor.enterprise_active:
        raise EnterpriseSuspended("a suspended enterprise cannot change the registry")


def require_supervisor_over(actor: Actor, region_codes: list[str]) -> None:
    """Platform admins, or an authority supervisor governing one of the regions."""
    if actor.is_platform_admin:
        return
    if actor.role is Role.supervisor and any(actor.governs(code) for code in region_codes):
        return
    raise Forbidden(
        "only a supervising authority with jurisdiction, or a platform admin, may do this"
    )


def check_version(current: int, expected: int, what: str) -> None:
    if current != expected:
        raise PreconditionFailed(
            f"{what} is at version {current}, the request was made against version {expected}",
            current_version=current,
        )


# --- enterprises ------------------------------------------------------------------------------


async def create_enterprise(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    uscc: str,
    roles: list[str],
    region_code: str,
) -> Enterprise:
    if not actor.is_platform_admin:
        raise Forbidden("only a platform admin registers enterprises")
    violation = uscc_violation(uscc)
    if violation is not None:
        raise InvalidUscc(
            f"uscc breaks the {violation.rule} rule: {violation.detail}",
            errors=[{"pointer": "/uscc", "detail": violation.detail, "rule": violation.rule}],
            rule=violation.rule,
        )
    await check_region_code(session, region_code, "region_code")
    if (
        await session.scalar(select(col(Enterprise.id)).where(col(Enterprise.uscc) == uscc))
        is not None
    ):
        raise DuplicateUscc(f"an enterprise with uscc {uscc} is already registered")
    enterprise = Enterprise(name=name, uscc=uscc, roles=sorted(set(roles)), region_code=region_code)
    session.add(enterprise)
    await session.flush()
    await audit.record(
        session,
        actor,
        "enterprise.registered",
        subject_type="enterprise",
        subject_id=enterprise.id,
        enterprise_ids=[enterprise.id],
        region_codes=[region_code],
        payload={"name": name, "uscc": uscc, "roles": enterprise.roles, "region_code": region_code},
    )
    return enterprise


async def get_enterprise(
    session: AsyncSession, actor: Actor, enterprise_id: uuid.UUID, *, lock: bool = False
) -> Enterprise:
    query = select(Enterprise).where(
        col(Enterprise.id) == enterprise_id, enterprise_visible_to(actor)
    )
    enterprise: Enterprise = await _visible(session, query, "enterprise", enterprise_id, lock=lock)
    return enterprise


async def list_enterprises(
    session: AsyncSession, actor: Actor, *, after: uuid.UUID | None, limit: int
) -> Page[Enterprise]:
    query = select(Enterprise).where(enterprise_visible_to(actor))
    return await keyset_page(session, query, col(Enterprise.id), after=after, limit=limit)


async def _enterprise_regions(session: AsyncSession, enterprise: Enterprise) -> list[str]:
    facility_regions = await session.scalars(
        select(col(Facility.region_code))
        .where(col(Facility.enterprise_id) == enterprise.id)
        .distinct()
    )
    return [enterprise.region_code, *facility_regions]


async def update_enterprise(
    session: AsyncSession,
    actor: Actor,
    enterprise_id: uuid.UUID,
    *,
    expected_version: int,
    changes: dict[str, Any],
) -> Enterprise:
    """Name by the enterprise's admin; roles and home region by a platform admin only."""
    enterprise = await get_enterprise(session, actor, enterprise_id, lock=True)
    require_enterprise_admin(actor, enterprise.id)
    if not actor.is_platform_admin and set(changes) - {"name"}:
        raise Forbidden("an enterprise admin may change the name only")
    check_version(enterprise.version, expected_version, "enterprise")
    if "region_code" in changes:
        await check_region_code(session, changes["region_code"], "region_code")
    if "roles" in changes:
        changes["roles"] = sorted(set(changes["roles"]))
    return await _apply_changes(session, actor, enterprise, changes, "enterprise.updated")


async def set_enterprise_status(
    session: AsyncSession, actor: Actor, enterprise_id: uuid.UUID, status: Status, reason: str
) -> Enterprise:
    enterprise = await get_enterprise(session, actor, enterprise_id, lock=True)
    require_supervisor_over(actor, await _enterprise_regions(session, enterprise))
    if enterprise.status == status:
        raise Conflict(f"enterprise is already {status}")
    event = "enterprise.suspended" if status is Status.suspended else "enterprise.reinstated"
    return await _apply_changes(
        session, actor, enterprise, {"status": status.value}, event, reason=reason
    )


# --- facilities -------------------------------------------------------------------------------


async def create_facility(
    session: AsyncSession, actor: Actor, *, enterprise_id: uuid.UUID, **fields: Any
) -> Facility:
    # Visibility first: an enterprise the caller cannot see is 404, not 403.
    enterprise = await get_enterprise(session, actor, enterprise_id)
    require_enterprise_admin(actor, enterprise.id)
    if enterprise.status != Status.active:
        raise EnterpriseSuspended("a suspended enterprise cannot open facilities")
    await check_region_code(session, fields["region_code"], "region_code")
    facility = Facility(enterprise_id=enterprise.id, **fields)
    session.add(facility)
    await session.flush()
    await audit.record(
        session,
        actor,
        "facility.registered",
        subject_type="facility",
        subject_id=facility.id,
        enterprise_ids=[enterprise.id],
        facility_ids=[facility.id],
        region_codes=[facility.region_code],
        payload={"enterprise_id": enterprise.id, **fields},
    )
    return facility


async def get_facility(
    session: AsyncSession, actor: Actor, facility_id: uuid.UUID, *, lock: bool = False
) -> Facility:
    query = select(Facility).where(col(Facility.id) == facility_id, facility_visible_to(actor))
    facility: Facility = await _visible(session, query, "facility", facility_id, lock=lock)
    return facility


async def list_facilities(
    session: AsyncSession,
    actor: Actor,
    *,
    enterprise_id: uuid.UUID | None,
    kind: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> Page[Facility]:
    query = select(Facility).where(facility_visible_to(actor))
    if enterprise_id is not None:
        query = query.where(col(Facility.enterprise_id) == enterprise_id)
    if kind is not None:
        query = query.where(col(Facility.kind) == kind)
    return await keyset_page(session, query, col(Facility.id), after=after, limit=limit)


async def update_facility(
    session: AsyncSession,
    actor: Actor,
    facility_id: uuid.UUID,
    *,
    expected_version: int,
    changes: dict[str, Any],
) -> Facility:
    facility = await get_facility(session, actor, facility_id, lock=True)
    require_enterprise_admin(actor, facility.enterprise_id)
    check_version(facility.version, expected_version, "facility")
    if "region_code" in changes:
        await check_region_code(session, changes["region_code"], "region_code")
    return await _apply_changes(session, actor, facility, changes, "facility.updated")


async def set_facility_status(
    session: AsyncSession, actor: Actor, facility_id: uuid.UUID, status: Status, reason: str
) -> Facility:
    facility = await get_facility(session, actor, facility_id, lock=True)
    require_supervisor_over(actor, [facility.region_code])
    if facility.status == status:
        raise Conflict(f"facility is already {status}")
    event = "facility.suspended" if status is Status.suspended else "facility.reinstated"
    return await _apply_changes(
        session, actor, facility, {"status": status.value}, event, reason=reason
    )


async def _apply_changes(
    session: AsyncSession,
    actor: Actor,
    row: Row,
    changes: dict[str, Any],
    event_type: str,
    *,
    reason: str | None = None,
) -> Row:
    before = {field: getattr(row, field) for field in changes}
    for field, value in changes.items():
        setattr(row, field, value)
    row.version += 1
    row.updated_at = await session.scalar(select(func.now()))
    await session.flush()
    is_facility = isinstance(row, Facility)
    payload: dict[str, Any] = {"before": before, "after": changes, "version": row.version}
    if reason is not None:
        payload["reason"] = reason
    await audit.record(
        session,
        actor,
        event_type,
        subject_type="facility" if is_facility else "enterprise",
        subject_id=row.id,
        enterprise_ids=[row.enterprise_id if isinstance(row, Facility) else row.id],
        facility_ids=[row.id] if is_facility else [],
        region_codes=[row.region_code],
        payload=payload,
    )
    return row


# --- authorities ------------------------------------------------------------------------------


async def create_authority(
    session: AsyncSession, actor: Actor, *, name: str, jurisdiction: str
) -> Authority:
    if not actor.is_platform_admin:
        raise Forbidden("only a platform admin registers authorities")
    await check_jurisdiction(session, jurisdiction)
    authority = Authority(name=name, jurisdiction=jurisdiction)
    session.add(authority)
    await session.flush()
    await audit.record(
        session,
        actor,
        "authority.registered",
        subject_type="authority",
        subject_id=authority.id,
        region_codes=[],
        payload={"name": name, "jurisdiction": jurisdiction},
    )
    return authority


async def get_authority(session: AsyncSession, actor: Actor, authority_id: uuid.UUID) -> Authority:
    query = select(Authority).where(col(Authority.id) == authority_id, authority_visible_to(actor))
    authority: Authority = await _visible(session, query, "authority", authority_id)
    return authority


async def list_authorities(
    session: AsyncSession, actor: Actor, *, after: uuid.UUID | None, limit: int
) -> Page[Authority]:
    query = select(Authority).where(authority_visible_to(actor))
    return await keyset_page(session, query, col(Authority.id), after=after, limit=limit)
