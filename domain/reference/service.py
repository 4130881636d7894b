"""Reading reference data and checking codes against it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.errors import InvalidInput
from domain.reference.models import EmissionFactor, EmissionFactorSet, Region, ScrapCategory
from domain.reference.rules import GUIZHOU, is_jurisdiction, is_region_code, region_prefixes


class UnknownRegion(InvalidInput):
    code = "unknown_region"


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
    latest = await session.scalar(select(func.max(col(EmissionFactorSet.version))))
    factor_set = await session.get_one(EmissionFactorSet, latest)
    factors = await session.scalars(
        select(EmissionFactor)
        .where(col(EmissionFactor.set_version) == latest)
        .order_by(col(EmissionFactor.key))
    )
    return factor_set, factors.all()


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
