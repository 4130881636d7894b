"""Reading reference data and checking codes against it; publishing emission factors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import Actor, Role
from domain.audit import service as audit
from domain.base import utcnow
from domain.errors import Forbidden, InvalidInput
from domain.reference.models import EmissionFactor, EmissionFactorSet, Region, ScrapCategory
from domain.reference.rules import (
    CONFIDENCE,
    GUIZHOU,
    factor_unit_problem,
    is_jurisdiction,
    is_region_code,
    region_prefixes,
)


class UnknownRegion(InvalidInput):
    code = "unknown_region"


class UnknownFactorSet(InvalidInput):
    code = "unknown_factor_set"
    title = "No emission-factor set has this version"


async def list_regions(session: AsyncSession) -> Sequence[Region]:
    return (await session.scalars(select(Region).order_by(col(Region.code)))).all()


async def list_scrap_categories(
    session: AsyncSession, metal: str | None = None
) -> Sequence[ScrapCategory]:
    query = select(ScrapCategory).order_by(col(ScrapCategory.code))
    if metal is not None:
        query = query.where(col(ScrapCategory.metal) == metal)
    return (await session.scalars(query)).all()


async def current_emission_factors(
    session: AsyncSession,
) -> tuple[EmissionFactorSet, Sequence[EmissionFactor]]:
    return await emission_factors(session)


async def emission_factors(
    session: AsyncSession, version: int | None = None, *, field: str = "version"
) -> tuple[EmissionFactorSet, Sequence[EmissionFactor]]:
    """A published factor set with its factors: the latest, or the given version (a query
    parameter `field`; an unknown version is a 422 pointing at it)."""
    if version is None:
        version = await session.scalar(select(func.max(col(EmissionFactorSet.version))))
    factor_set = None if version is None else await session.get(EmissionFactorSet, version)
    if factor_set is None:
        raise UnknownFactorSet(
            f"emission-factor set version {version} does not exist",
            errors=[{"pointer": f"/{field}", "detail": "unknown version", "location": "query"}],
        )
    factors = await session.scalars(
        select(EmissionFactor)
        .where(col(EmissionFactor.set_version) == factor_set.version)
        .order_by(col(EmissionFactor.key))
    )
    return factor_set, factors.all()


@dataclass(frozen=True, slots=True)
class Factor:
    key: str
    value: Decimal
    unit: str
    scope: str
    source: str
    confidence: str
    year: int | None = None


@dataclass(frozen=True, slots=True)
class Published:
    factor_set: EmissionFactorSet
    factors: list[EmissionFactor]
    carried_over: list[str]  # keys copied unchanged from the previous version


# Publications are serialised so that two of them cannot both take version max + 1.
_PUBLISH_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('scrapflow.emission_factor_set'))")


def _factor_problems(factors: Sequence[Factor]) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, factor in enumerate(factors):
        at = f"/factors/{index}"
        if factor.key in seen:
            errors.append({"pointer": f"{at}/key", "detail": f"{factor.key} is given twice"})
        seen.add(factor.key)
        if factor.value < 0:
            errors.append({"pointer": f"{at}/value", "detail": "a factor is 0 or more"})
        unit_problem = factor_unit_problem(factor.key, factor.unit)
        if unit_problem:
            errors.append({"pointer": f"{at}/unit", "detail": unit_problem})
        if factor.confidence not in CONFIDENCE:
            errors.append(
                {"pointer": f"{at}/confidence", "detail": f"one of {', '.join(CONFIDENCE)}"}
            )
    return errors


async def publish_emission_factors(
    session: AsyncSession, actor: Actor, *, label: str, source: str, factors: Sequence[Factor]
) -> Published:
    """Publish version max + 1. The factors given replace those of the previous version; every
    key not given is carried over unchanged (a factor is never dropped, only replaced)."""
    if not actor.is_platform_admin and actor.role is not Role.supervisor:
        raise Forbidden("only an authority supervisor or a platform admin publishes factors")
    errors = _factor_problems(factors)
    if not factors:
        errors.append({"pointer": "/factors", "detail": "give at least one factor"})
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidInput(f"{errors[0]['pointer']}: {errors[0]['detail']}{more}", errors=errors)

    await session.execute(_PUBLISH_LOCK)
    previous_set, previous = await emission_factors(session)
    version = previous_set.version + 1
    factor_set = EmissionFactorSet(
        version=version, label=label, source=source, published_at=utcnow()
    )
    session.add(factor_set)
    await session.flush()  # the factors refer to it
    given = {factor.key: factor for factor in factors}
    before = {factor.key: factor for factor in previous}
    rows = [
        EmissionFactor(
            set_version=version,
            key=f.key,
            value=f.value,
            unit=f.unit,
            year=f.year,
            scope=f.scope,
            source=f.source,
            confidence=f.confidence,
        )
        for f in factors
    ]
    carried = sorted(key for key in before if key not in given)
    rows += [
        EmissionFactor.model_validate({**before[key].model_dump(), "set_version": version})
        for key in carried
    ]
    rows.sort(key=lambda row: row.key)
    session.add_all(rows)
    await session.flush()
    await audit.record(
        session,
        actor,
        "emission_factors.published",
        subject_type="emission_factor_set",
        subject_id=str(version),
        # The publishing authority's own audit view finds it through its jurisdiction.
        region_codes=[actor.jurisdiction] if actor.jurisdiction else [],
        payload={
            "version": version,
            "previous_version": previous_set.version,
            "label": label,
            "source": source,
            "factors": [
                {
                    "key": f.key,
                    "value": f.value,
                    "unit": f.unit,
                    "year": f.year,
                    "scope": f.scope,
                    "source": f.source,
                    "confidence": f.confidence,
                    "previous_value": before[f.key].value if f.key in before else None,
                }
                for f in factors
            ],
            "carried_over": carried,
        },
    )
    return Published(factor_set, rows, carried)


async def check_region_code(session: AsyncSession, region_code: str, field: str) -> None:
    """A 6-digit code whose province is known; inside Guizhou its prefecture must be known too."""
    if not is_region_code(region_code):
        raise UnknownRegion(
            f"{field} must be a 6-digit GB/T 2260 code, got {region_code!r}",
            errors=[{"pointer": f"/{field}", "detail": "must be 6 digits"}],
        )
    province, prefecture = region_prefixes(region_code)
    await _require_region(session, province, field, "province")
    if province == GUIZHOU:
        await _require_region(session, prefecture, field, "prefecture")


async def check_jurisdiction(session: AsyncSession, prefix: str) -> None:
    if not is_jurisdiction(prefix):
        raise UnknownRegion(
            f"jurisdiction must be a 2-, 4- or 6-digit region prefix, got {prefix!r}",
            errors=[{"pointer": "/jurisdiction", "detail": "must be 2, 4 or 6 digits"}],
        )
    province, prefecture = region_prefixes(prefix)
    await _require_region(session, province, "jurisdiction", "province")
    if province == GUIZHOU and len(prefix) >= 4:
        await _require_region(session, prefecture, "jurisdiction", "prefecture")


async def _require_region(session: AsyncSession, code: str, field: str, level: str) -> None:
    if await session.get(Region, code) is None:
        raise UnknownRegion(
            f"{field}: {level} {code} is not in the reference regions",
            errors=[{"pointer": f"/{field}", "detail": f"unknown {level} {code}"}],
        )
