"""What the Schemathesis run (test_openapi.py) found, pinned down as plain tests: each failed
before its fix."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import Json, World
from tests.custody.conftest import lot_body

PROBLEM_JSON = "application/problem+json"


def _problem(response: httpx.Response, status: int, code: str) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: Json = response.json()
    assert body["code"] == code, body
    return body


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/lots?collected_to=0.5",
        "/api/v1/shipments?dispatched_from=1700000000",
        "/api/v1/audit/events?to=0.5",
        "/api/v1/reports/flows?to=0.5",
        "/api/v1/epcis/events?LT_recordTime=0.5",
        "/api/v1/lots?collected_from=2026-11-20T08:00:00",  # no offset
    ],
)
async def test_a_timestamp_is_rfc_3339_text_with_an_offset_never_a_number(
    client: httpx.AsyncClient, world: World, url: str
) -> None:
    # Pydantic read 0.5 as half a second after 1970 and answered 200 with that bound.
    body = _problem(await client.get(url, headers=world.admin.headers), 422, "validation_failed")
    assert body["errors"][0]["location"] == "query"


async def test_a_timestamp_in_a_body_is_no_number_either(
    client: httpx.AsyncClient, world: World
) -> None:
    body = lot_body(str(world.facility_a), 10, collected_at=1_763_596_800)
    response = await client.post("/api/v1/lots", json=body, headers=world.a_operator.headers)
    problem = _problem(response, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/collected_at"]
    listed = await client.get("/api/v1/lots", headers=world.a_admin.headers)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("url", "content_type", "content"),
    [
        ("/api/v1/facilities", "application/json", b'\xff K"\x00'),  # not UTF-8
        ("/api/v1/auth/token", "multipart/form-data", b"--x\r\n"),  # no boundary
    ],
)
async def test_an_undecodable_body_is_422_like_a_json_syntax_error(
    client: httpx.AsyncClient, world: World, url: str, content_type: str, content: bytes
) -> None:
    # FastAPI and Starlette answered a bare 400 that the OpenAPI did not list.
    response = await client.post(
        url, content=content, headers={**world.admin.headers, "Content-Type": content_type}
    )
    body = _problem(response, 422, "validation_failed")
    assert body["errors"][0]["location"] == "body"


async def test_a_device_key_refused_outside_its_routes_gets_a_documented_403(
    client: httpx.AsyncClient, world: World, app: FastAPI
) -> None:
    created = await client.post(
        "/api/v1/api-keys",
        json={
            "name": "scale",
            "role": "device",
            "enterprise_id": str(world.enterprise_a),
            "facility_id": str(world.facility_a),
        },
        headers=world.a_admin.headers,
    )
    assert created.status_code == 201, created.text
    device = {"Authorization": f"Bearer {created.json()['secret']}"}
    _problem(await client.get("/api/v1/lots", headers=device), 403, "forbidden")
    operations = app.openapi()["paths"]
    assert "403" in operations["/api/v1/lots"]["get"]["responses"]
    for path, methods in operations.items():
        for method, operation in methods.items():
            answers = operation["responses"]
            assert "429" in answers, (method, path)
            if operation.get("security"):
                assert {"401", "403"} <= answers.keys(), (method, path)
            if "requestBody" in operation:
                assert "413" in answers, (method, path)


async def test_a_single_valued_query_parameter_given_twice_is_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    # FastAPI kept the last value: `type=a&type=b` filtered on b alone, answering 200.
    response = await client.get(
        "/api/v1/audit/events?type=lot.registered&type=lot.split", headers=world.admin.headers
    )
    body = _problem(response, 422, "invalid_input")
    assert body["errors"] == [
        {"pointer": "/type", "detail": "given more than once", "location": "query"}
    ]
    limit = await client.get("/api/v1/lots?limit=1&limit=2", headers=world.a_admin.headers)
    _problem(limit, 422, "invalid_input")  # a dependency's parameter too
    # A parameter that takes a list still takes it.
    listed = await client.get(
        "/api/v1/epcis/events?eventType=ObjectEvent&eventType=TransformationEvent",
        headers=world.province_inspector.headers,
    )
    assert listed.status_code == 200, listed.text
