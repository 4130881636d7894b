"""Enterprise statements: recycled content, collection, handling, certificates and transport over
a period, with avoided and transport emissions (DESIGN §2.6, §2.7)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Response

from api.deps import CurrentActor, ReadSession
from api.problems import json_response, responses
from api.routes import resource_router
from api.schemas.common import Timestamp
from api.schemas.reports import StatementOut
from domain.lots.rules import Metal
from domain.reports import service as reports

router = resource_router("reports")


@router.get(
    "/enterprises/{enterprise_id}/statement",
    response_model=StatementOut,
    responses=responses(401, 404, 422),
    summary="An enterprise's statement over a period: per metal, smelting (recycled-content"
    " ratio, avoided emissions), collection, handling, certificates received, transport",
    description="The period is half-open, [from, to), in RFC 3339 timestamps with an offset."
    " Without `from` and `to` it is the 12 months up to now; with only `to`, the 12 months"
    " before it; with only `from`, from then until now. `from` must be before `to`. Without"
    " `metal`, aluminium and copper each get their own section. Emission figures use the latest"
    " published emission-factor set unless `factor_set` names an older version, and each states"
    " the version it used. Visible to the enterprise's members, to authorities whose"
    " jurisdiction holds its home region or one of its facilities, and to platform admins;"
    " to anyone else the enterprise does not exist (404).",
)
async def statement(
    enterprise_id: uuid.UUID,
    session: ReadSession,
    actor: CurrentActor,
    period_from: Annotated[
        Timestamp | None,
        Query(alias="from", description="Start, inclusive", examples=["2026-01-01T00:00:00+08:00"]),
    ] = None,
    period_to: Annotated[
        Timestamp | None,
        Query(alias="to", description="End, exclusive", examples=["2027-01-01T00:00:00+08:00"]),
    ] = None,
    metal: Annotated[Metal | None, Query(description="One metal; both when left out")] = None,
    factor_set: Annotated[
        int | None,
        Query(ge=1, le=2_147_483_647, description="Emission-factor set version; latest if omitted"),
    ] = None,
) -> Response:
    found = await reports.statement(
        session,
        actor,
        enterprise_id,
        period_from=period_from,
        period_to=period_to,
        metal=metal,
        factor_set_version=factor_set,
    )
    return json_response(StatementOut.of(found))
