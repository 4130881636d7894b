"""EPCIS 2.0 for partners using GS1 traceability standards: the caller's events as a JSON-LD
query document (the mapping and identifiers are described in `integrations/epcis.py`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import Query, Request, Response

from api.deps import CurrentActor, ReadSession
from api.limits import page_size
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Timestamp
from domain.base import utcnow
from domain.errors import InvalidInput
from integrations import epcis

router = resource_router("epcis")

EpcisType = Literal["ObjectEvent", "TransformationEvent"]

DESCRIPTION = """
An EPCIS 2.0 JSON-LD `EPCISQueryDocument` (valid against the GS1 EPCIS 2.0 JSON Schema) of the
sealed events the caller may see, as for `GET /api/v1/audit/events`: authorities those in their
jurisdiction, enterprises those that touch them.

- Lot registration: ObjectEvent `ADD`, bizStep `commissioning`.
- Dispatch: ObjectEvent `OBSERVE`, `shipping`; receipt: `receiving`, then `accepting` for the
  accepted kilograms and `inspecting` / `non_conformant` for refused ones; cancellation:
  `void_shipping`.
- Runs and splits: TransformationEvent with `inputQuantityList` and `outputQuantityList`; a voided
  run is the same event again with an `errorDeclaration`.
- Certificates: their public verification URL in `certificationInfo`.

Quantities are kilograms (`uom` `KGM`) of class-level lot identifiers `urn:scrapflow:lot:<code>`;
facilities are `urn:scrapflow:loc:<id>`; enterprises `urn:scrapflow:party:uscc:<USCC>` as
owning and possessing parties. Events of other kinds (registry, identity, discrepancies) are left
out.

**Paging**: `limit` counts log events (a receipt gives up to three EPCIS events). When there may
be more, the `Link` header (RFC 8288) has the next page (`rel="next"`), and `Next-Cursor` the
cursor to pass as `cursor`.
"""

EXAMPLE: dict[str, Any] = {
    "@context": epcis.DOCUMENT_CONTEXT,
    "type": "EPCISQueryDocument",
    "schemaVersion": "2.0",
    "creationDate": "2026-11-20T08:00:00.000+08:00",
    "epcisBody": {
        "queryResults": {
            "queryName": "SimpleEventQuery",
            "resultsBody": {
                "eventList": [
                    {
                        "type": "ObjectEvent",
                        "eventID": "urn:scrapflow:event:42",
                        "eventTime": "2026-11-20T08:00:00.000+08:00",
                        "eventTimeZoneOffset": "+08:00",
                        "recordTime": "2026-11-20T08:00:00.120+08:00",
                        "action": "OBSERVE",
                        "bizStep": "shipping",
                        "disposition": "in_transit",
                        "quantityList": [
                            {
                                "epcClass": "urn:scrapflow:lot:A26-00000K7",
                                "quantity": 812.345,
                                "uom": "KGM",
                            }
                        ],
                    }
                ]
            },
        }
    },
}


class JsonLdResponse(Response):
    media_type = epcis.MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


@router.get(
    "/epcis/events",
    response_class=JsonLdResponse,
    responses={
        200: {
            "description": "An EPCIS 2.0 query document",
            "content": {
                epcis.MEDIA_TYPE: {
                    "schema": {
                        "type": "object",
                        "required": ["@context", "type", "schemaVersion", "epcisBody"],
                        "properties": {
                            "type": {"type": "string", "enum": ["EPCISQueryDocument"]},
                            "schemaVersion": {"type": "string"},
                            "creationDate": {"type": "string", "format": "date-time"},
                            "epcisBody": {"type": "object"},
                        },
                    },
                    "example": EXAMPLE,
                }
            },
        },
        **responses(401, 422),
    },
    summary="Your visible events as an EPCIS 2.0 JSON-LD query document",
    description=DESCRIPTION,
)
async def events(
    request: Request,
    session: ReadSession,
    actor: CurrentActor,
    limit: Annotated[int, page_size("max_page_size", 50, "Log events per page (default 50)")],
    event_type: Annotated[
        list[EpcisType] | None,
        Query(
            alias="eventType",
            max_length=10,
            description="Only these EPCIS event types (repeatable, at most 10)",
        ),
    ] = None,
    ge_event_time: Annotated[
        Timestamp | None,
        Query(alias="GE_eventTime", description="eventTime at or after"),
    ] = None,
    lt_event_time: Annotated[
        Timestamp | None, Query(alias="LT_eventTime", description="eventTime before")
    ] = None,
    ge_record_time: Annotated[
        Timestamp | None,
        Query(alias="GE_recordTime", description="recordTime at or after"),
    ] = None,
    lt_record_time: Annotated[
        Timestamp | None, Query(alias="LT_recordTime", description="recordTime before")
    ] = None,
    after_seq: Annotated[
        int, Query(ge=0, le=2**62, description="Continue after this audit seq")
    ] = 0,
    cursor: Annotated[
        str | None, Query(max_length=20, description="Next-Cursor of the previous page")
    ] = None,
) -> Response:
    if cursor is not None:
        if not cursor.isdigit():
            raise InvalidInput(
                "cursor is not one this service returned; pass Next-Cursor unchanged",
                errors=[{"pointer": "/cursor", "detail": "malformed", "location": "query"}],
            )
        after_seq = max(after_seq, int(cursor))
    for low, high, name in (
        (ge_event_time, lt_event_time, "LT_eventTime"),
        (ge_record_time, lt_record_time, "LT_recordTime"),
    ):
        if low is not None and high is not None and high <= low:
            raise InvalidInput(
                f"{name} ({high.isoformat()}) is not after GE_{name[3:]} ({low.isoformat()})",
                errors=[{"pointer": f"/{name}", "detail": "empty range", "location": "query"}],
            )
    page = await epcis.query(
        session,
        actor,
        epcis.EventQuery(
            event_types=tuple(dict.fromkeys(event_type or ())),
            ge_event_time=ge_event_time,
            lt_event_time=lt_event_time,
            ge_record_time=ge_record_time,
            lt_record_time=lt_record_time,
        ),
        after_seq=after_seq,
        limit=limit,
        now=utcnow(),
    )
    headers = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
    if page.next_after_seq is not None:
        cursor = str(page.next_after_seq)
        following = request.url.remove_query_params("after_seq").include_query_params(cursor=cursor)
        headers["Link"] = f'<{following}>; rel="next"'
        headers["Next-Cursor"] = cursor
    return JsonLdResponse(page.document, headers=headers)
