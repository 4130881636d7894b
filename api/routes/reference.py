from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from api.deps import ANY_PRINCIPAL, Session, require
from api.problems import responses
from api.routes import resource_router
from api.schemas.reference import (
    EmissionFactorOut,
    EmissionFactorSetOut,
    RegionOut,
    ScrapCategoryOut,
)
from domain.reference import service as reference

router = resource_router("reference")
_guard = [require(*ANY_PRINCIPAL)]


@router.get(
    "/reference/regions",
    response_model=list[RegionOut],
    dependencies=_guard,
    responses=responses(401),
    summary="GB/T 2260 provinces and Guizhou's prefectures",
)
async def regions(session: Session) -> list[RegionOut]:
    return [RegionOut.model_validate(r) for r in await reference.list_regions(session)]


@router.get(
    "/reference/scrap-categories",
    response_model=list[ScrapCategoryOut],
    dependencies=_guard,
    responses=responses(401, 422),
    summary="Scrap categories of the national standards and ISRI",
)
async def scrap_categories(
    session: Session,
    metal: Annotated[Literal["aluminium", "copper"] | None, Query()] = None,
) -> list[ScrapCategoryOut]:
    rows = await reference.list_scrap_categories(session, metal)
    return [ScrapCategoryOut.model_validate(r) for r in rows]


@router.get(
    "/reference/emission-factors",
    response_model=EmissionFactorSetOut,
    dependencies=_guard,
    responses=responses(401),
    summary="The current emission-factor set with its version",
)
async def emission_factors(session: Session) -> EmissionFactorSetOut:
    factor_set, factors = await reference.current_emission_factors(session)
    return EmissionFactorSetOut(
        version=factor_set.version,
        label=factor_set.label,
        source=factor_set.source,
        published_at=factor_set.published_at,
        factors=[EmissionFactorOut.model_validate(f) for f in factors],
    )
