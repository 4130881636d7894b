from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import Query, Response

from api.deps import ANY_PRINCIPAL, SUPERVISORS, CurrentActor, Session, require
from api.problems import responses
from api.routes import resource_router
from api.schemas.reference import (
    EmissionFactorOut,
    EmissionFactorSetCreate,
    EmissionFactorSetOut,
    PublishedSetOut,
    RegionOut,
    ScrapCategoryOut,
)
from api.uow import Idempotent
from domain.reference import service as reference
from domain.reference.models import EmissionFactor, EmissionFactorSet

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


def _factor_set(
    factor_set: EmissionFactorSet, factors: Sequence[EmissionFactor]
) -> EmissionFactorSetOut:
    return EmissionFactorSetOut(
        version=factor_set.version,
        label=factor_set.label,
        source=factor_set.source,
        published_at=factor_set.published_at,
        factors=[EmissionFactorOut.model_validate(f) for f in factors],
    )


@router.get(
    "/reference/emission-factors",
    response_model=EmissionFactorSetOut,
    dependencies=_guard,
    responses=responses(401, 422),
    summary="An emission-factor set with its version: the latest, or the version asked for",
)
async def emission_factors(
    session: Session,
    version: Annotated[
        int | None,
        Query(ge=1, le=2_147_483_647, description="A published version; the latest if omitted"),
    ] = None,
) -> EmissionFactorSetOut:
    return _factor_set(*await reference.emission_factors(session, version))


@router.post(
    "/reference/emission-factors",
    status_code=201,
    response_model=PublishedSetOut,
    dependencies=[require(*SUPERVISORS), Idempotent],
    responses=responses(401, 403, 409, 422),
    summary="Publish a new emission-factor set (authority supervisor, platform admin)",
    description="Creates version = latest + 1. The factors given replace those of the previous"
    " version or add new keys; every key not given is carried over unchanged (listed in"
    " `carried_over`). Values are 0 or more; factors the platform computes with keep their units."
    " Statements use the latest version from now on; older versions stay readable with"
    " `?version=`. The publication is an `emission_factors.published` event.",
)
async def publish_emission_factors(
    body: EmissionFactorSetCreate, session: Session, actor: CurrentActor, response: Response
) -> PublishedSetOut:
    published = await reference.publish_emission_factors(
        session,
        actor,
        label=body.label,
        source=body.source,
        factors=[
            reference.Factor(
                key=f.key,
                value=f.value,
                unit=f.unit,
                scope=f.scope,
                source=f.source,
                confidence=f.confidence,
                year=f.year,
            )
            for f in body.factors
        ],
    )
    version = published.factor_set.version
    response.headers["Location"] = f"/api/v1/reference/emission-factors?version={version}"
    return PublishedSetOut(
        **_factor_set(published.factor_set, published.factors).model_dump(),
        carried_over=published.carried_over,
    )
