from __future__ import annotations

import httpx

from tests.conftest import World


async def test_me_as_enterprise_admin(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get("/api/v1/me", headers=world.a_admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["role"] == "admin"
    assert body["enterprise"]["id"] == str(world.enterprise_a)
