"""Registry over HTTP: USCC problems, duplicates, facilities, If-Match, suspension, pagination."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import World
from tests.factories import random_uscc

PROBLEM = "application/problem+json"


def _enterprise(**overrides: object) -> dict[str, object]:
    return {
        "name": "遵义铝业",
        "uscc": random_uscc("520300"),
        "roles": ["smelter", "importer"],
        "region_code": "520302",
        **overrides,
    }


@pytest.mark.parametrize(
    ("uscc", "rule"),
    [
        ("91520000214434146X", "check_character"),
        ("9152000021443414", "length"),
        ("91520000214434I46R", "charset"),
        ("9152A000214434146R", "region_code"),
    ],
)
async def test_invalid_uscc_names_the_rule(
    client: httpx.AsyncClient, world: World, uscc: str, rule: str
) -> None:
    response = await client.post(
        "/api/v1/enterprises", json=_enterprise(uscc=uscc), headers=world.admin.headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "invalid_uscc"
    assert problem["rule"] == rule
    assert rule in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/uscc"


async def test_duplicate_uscc_is_409(client: httpx.AsyncClient, world: World) -> None:
    body = _enterprise()
    assert (
        await client.post("/api/v1/enterprises", json=body, headers=world.admin.headers)
    ).status_code == 201
    again = await client.post("/api/v1/enterprises", json=body, headers=world.admin.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "duplicate_uscc"


async def test_enterprise_and_facility_round_trip(client: httpx.AsyncClient, world: World) -> None:
    created = await client.post(
        "/api/v1/enterprises", json=_enterprise(), headers=world.admin.headers
    )
    assert created.status_code == 201, created.text
    enterprise = created.json()
    assert enterprise["roles"] == ["importer", "smelter"]
    assert created.headers["etag"] == '"1"'
    fetched = await client.get(created.headers["location"], headers=world.admin.headers)
    assert fetched.json() == enterprise

    facility = await client.post(
        "/api/v1/facilities",
        json={
            "enterprise_id": enterprise["id"],
            "name": "电解铝厂",
            "kind": "smelter",
            "region_code": "520302",
            "address": "遵义市红花岗区",
            "latitude": 27.7,
            "longitude": 106.9,
            "annual_capacity_t": 120000.5,
            "permit_no": "P-1",
        },
        headers=world.admin.headers,
    )
    assert facility.status_code == 201, facility.text
    assert facility.json()["annual_capacity_t"] == 120000.5
    assert facility.json()["status"] == "active"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("region_code", "529901"),  # Guizhou has no prefecture 5299
        ("region_code", "990101"),  # no province 99
        ("latitude", 91),
        ("annual_capacity_t", -1),
        ("annual_capacity_t", 1.0000001),  # finer than a gram
        ("kind", "mine"),
        ("unexpected", "field"),
    ],
)
async def test_bad_facility_input_is_422_and_changes_nothing(
    client: httpx.AsyncClient, world: World, field: str, value: object
) -> None:
    body = {
        "enterprise_id": str(world.enterprise_a),
        "name": "x",
        "kind": "warehouse",
        "region_code": "520102",
        "address": "a",
        field: value,
    }
    response = await client.post("/api/v1/facilities", json=body, headers=world.a_admin.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"]
    listing = await client.get("/api/v1/facilities", headers=world.a_admin.headers)
    assert [f["id"] for f in listing.json()["items"]] == [str(world.facility_a)]


async def test_patch_needs_a_fresh_if_match(client: httpx.AsyncClient, world: World) -> None:
    url = f"/api/v1/facilities/{world.facility_a}"
    read = await client.get(url, headers=world.a_admin.headers)
    tag = read.headers["etag"]

    missing = await client.patch(url, json={"name": "new"}, headers=world.a_admin.headers)
    assert missing.status_code == 428
    assert missing.json()["code"] == "precondition_required"

    ok = await client.patch(
        url, json={"name": "new"}, headers={**world.a_admin.headers, "If-Match": tag}
    )
    assert ok.status_code == 200
    assert ok.json()["name"] == "new"
    assert ok.headers["etag"] == '"2"'

    stale = await client.patch(
        url, json={"name": "newer"}, headers={**world.a_admin.headers, "If-Match": tag}
    )
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    assert (await client.get(url, headers=world.a_admin.headers)).json()["name"] == "new"


async def test_enterprise_admin_may_rename_but_not_change_roles(
    client: httpx.AsyncClient, world: World
) -> None:
    url = f"/api/v1/enterprises/{world.enterprise_a}"
    headers = {**world.a_admin.headers, "If-Match": '"1"'}
    refused = await client.patch(url, json={"roles": ["smelter"]}, headers=headers)
    assert refused.status_code == 403
    renamed = await client.patch(url, json={"name": "A renamed"}, headers=headers)
    assert renamed.status_code == 200 and renamed.json()["name"] == "A renamed"


async def test_supervisor_suspends_within_jurisdiction(
    client: httpx.AsyncClient, world: World
) -> None:
    url = f"/api/v1/enterprises/{world.enterprise_a}"
    zunyi = await client.post(
        f"{url}/suspend", json={"reason": "no permit"}, headers=world.zunyi_supervisor.headers
    )
    assert zunyi.status_code == 404  # A (Guiyang) is outside Zunyi's jurisdiction: invisible
    suspended = await client.post(
        f"{url}/suspend", json={"reason": "no permit"}, headers=world.guiyang_supervisor.headers
    )
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    twice = await client.post(
        f"{url}/suspend", json={"reason": "no permit"}, headers=world.guiyang_supervisor.headers
    )
    assert twice.status_code == 409

    # A suspended enterprise's admin can read but no longer change the registry.
    assert (await client.get(url, headers=world.a_admin.headers)).status_code == 200
    blocked = await client.post(
        "/api/v1/facilities",
        json={
            "enterprise_id": str(world.enterprise_a),
            "name": "x",
            "kind": "warehouse",
            "region_code": "520102",
            "address": "a",
        },
        headers=world.a_admin.headers,
    )
    assert blocked.status_code == 403
    assert blocked.json()["code"] == "enterprise_suspended"

    reinstated = await client.post(
        f"{url}/reinstate",
        json={"reason": "permit renewed"},
        headers=world.province_supervisor.headers,
    )
    assert reinstated.status_code == 200 and reinstated.json()["status"] == "active"


async def test_keyset_pagination_walks_every_row_once(
    client: httpx.AsyncClient, world: World
) -> None:
    for i in range(7):
        response = await client.post(
            "/api/v1/facilities",
            json={
                "enterprise_id": str(world.enterprise_a),
                "name": f"f{i}",
                "kind": "warehouse",
                "region_code": "520102",
                "address": "a",
            },
            headers=world.a_admin.headers,
        )
        assert response.status_code == 201
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (
            await client.get("/api/v1/facilities", params=params, headers=world.a_admin.headers)
        ).json()
        seen.extend(f["id"] for f in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # A row inserted mid-walk lands after the cursor (time-ordered ids): no duplicate, no skip.
        if pages == 1:
            await client.post(
                "/api/v1/facilities",
                json={
                    "enterprise_id": str(world.enterprise_a),
                    "name": "late",
                    "kind": "warehouse",
                    "region_code": "520102",
                    "address": "a",
                },
                headers=world.a_admin.headers,
            )
    assert len(seen) == len(set(seen)) == 9  # the world's facility, 7 and the late one
    assert pages == 3


@pytest.mark.parametrize("params", [{"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 501}])
async def test_bad_paging_is_422(
    client: httpx.AsyncClient, world: World, params: dict[str, object]
) -> None:
    response = await client.get("/api/v1/facilities", params=params, headers=world.a_admin.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
