"""Nothing secret is stored in clear: after an API key, a login (password and refresh token), a
webhook secret and an individual seller's ID number have all gone through the API, every column
of every table is searched for each of them, as text and as bytes."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.api.test_auth import PASSWORD, create_key, create_user, login
from tests.conftest import World
from tests.custody.conftest import lot_body

SELLER_ID = "52010219900101123X"  # what lot_body's individual seller carries


async def _columns(session: AsyncSession) -> list[tuple[str, str, str]]:
    rows = await session.execute(
        text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
            " AND data_type IN ('text', 'character varying', 'bytea', 'jsonb', 'json', 'ARRAY')"
        )
    )
    return [(t, c, d) for t, c, d in rows]


async def _found(session: AsyncSession, needle: str) -> list[str]:
    """Columns holding `needle`, as text or as its UTF-8 bytes."""
    hits = []
    for table, column, kind in await _columns(session):
        condition = (
            f"position(convert_to(:needle, 'UTF8') in \"{column}\") > 0"
            if kind == "bytea"
            else f'position(:needle in "{column}"::text) > 0'
        )
        count = await session.scalar(
            text(f'SELECT count(*) FROM "{table}" WHERE {condition}'),  # noqa: S608 - catalogue names
            {"needle": needle},
        )
        if count:
            hits.append(f"{table}.{column}")
    return hits


async def test_no_secret_is_stored_in_clear(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    secrets: dict[str, str] = {}
    key = await create_key(client, world)
    assert key.status_code == 201, key.text
    secrets["api key"] = key.json()["secret"]

    user = await create_user(
        client, world.a_admin.headers, username="secret.scan", enterprise_id=world.enterprise_a
    )
    assert user.status_code == 201, user.text
    secrets["password"] = PASSWORD
    tokens: dict[str, Any] = (await login(client, "secret.scan", PASSWORD)).json()
    secrets["refresh token"] = tokens["refresh_token"]

    webhook = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://erp.example.com/scrapflow", "event_types": ["*"]},
        headers=world.a_admin.headers,
    )
    assert webhook.status_code == 201, webhook.text
    secrets["webhook secret"] = webhook.json()["secret"]

    lot = await client.post(
        "/api/v1/lots",
        json=lot_body(str(world.facility_a)),
        headers=world.a_operator.headers,
    )
    assert lot.status_code == 201, lot.text
    secrets["seller ID number"] = SELLER_ID

    assert len(await _columns(session)) > 50  # the scan really covers the schema
    for what, secret in secrets.items():
        assert await _found(session, secret) == [], f"the {what} is stored in clear"
    # The scan does find what is there: the seller's masked ID is stored in clear, by design.
    masked = lot.json()["seller"]["id_number"]
    assert await _found(session, masked), "the scan finds nothing at all"
