"""The Location of a created user or key resolves for its managers and for itself, not others."""

from __future__ import annotations

import httpx

from tests.conftest import World


async def test_created_user_and_key_are_readable_by_managers_only(
    client: httpx.AsyncClient, world: World
) -> None:
    user = await client.post(
        "/api/v1/users",
        json={
            "username": "reader.one",
            "display_name": "R",
            "password": "a long password!",
            "role": "viewer",
            "enterprise_id": str(world.enterprise_a),
        },
        headers=world.a_admin.headers,
    )
    assert user.status_code == 201, user.text
    key = await client.post(
        "/api/v1/api-keys",
        json={"name": "erp", "role": "operator", "enterprise_id": str(world.enterprise_a)},
        headers=world.a_admin.headers,
    )
    assert key.status_code == 201, key.text
    for created in (user, key):
        location = created.headers["location"]
        mine = await client.get(location, headers=world.a_admin.headers)
        assert mine.status_code == 200
        assert mine.json()["id"] == created.json()["id"]
        assert "secret" not in mine.json()
        for outsider in (world.b_admin, world.a_operator, world.province_supervisor):
            hidden = await client.get(location, headers=outsider.headers)
            assert hidden.status_code == 404, (outsider.role, location)
            assert hidden.json()["code"] == "not_found"
            assert "reader.one" not in hidden.text
            assert '"erp"' not in hidden.text

    own = {"Authorization": f"Bearer {key.json()['secret']}"}
    itself = await client.get(key.headers["location"], headers=own)
    assert itself.status_code == 200
