"""Alembic is the only source of the schema: it round-trips and matches the models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from integrations.migrate import alembic_config, downgrade, upgrade
from tests.databases import drop_database, fresh_database, in_thread


@pytest.fixture
def empty_database() -> Iterator[str]:
    url = fresh_database("sf_migrations")
    yield url
    drop_database(url)


def _tables(url: str) -> set[str]:
    async def fetch() -> set[str]:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {r["tablename"] for r in rows}
        finally:
            await conn.close()

    result: list[set[str]] = []
    in_thread(lambda: result.append(asyncio.run(fetch())))
    return result[0]


def test_upgrade_downgrade_upgrade_then_no_drift(empty_database: str) -> None:
    in_thread(upgrade, empty_database)
    created = _tables(empty_database)
    assert {"enterprise", "facility", "event", "api_key", "ref_region"} <= created

    in_thread(downgrade, empty_database, "base")
    assert _tables(empty_database) == {"alembic_version"}

    in_thread(upgrade, empty_database)
    assert _tables(empty_database) == created
    # `alembic check` raises when autogenerate would emit any operation.
    in_thread(command.check, alembic_config(empty_database))
