"""When the database cannot be had, a request is a 503 problem with Retry-After (never a 500), and
the service recovers without a restart: a connection terminated under the pool fails one request
and the next one is served."""

from __future__ import annotations

import asyncpg
import httpx
from sqlalchemy import func, select

from api.app import create_app
from integrations.settings import Settings
from tests.bench.server import dsn
from tests.conftest import Live


async def _terminate(database_url: str, pid: int) -> None:
    conn = await asyncpg.connect(dsn(database_url))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    assert response.json()["code"] == "database_unavailable"


async def test_dead_pooled_connections_fail_one_request_then_the_pool_reconnects(
    live: Live, database_url: str
) -> None:
    # Two idle connections in the pool, both terminated: the first request finds its connection
    # dead (503) and invalidates the pool, so the second gets a new connection, not the other
    # dead one (integrations/database.py: no pre-ping).
    async with live.engine.connect() as first, live.engine.connect() as second:
        pids = [await c.scalar(select(func.pg_backend_pid())) for c in (first, second)]
    assert live.engine.pool.checkedin() == 2  # type: ignore[attr-defined]
    for pid in pids:
        assert pid is not None
        await _terminate(database_url, pid)
    headers = live.world.a_operator.headers

    _unavailable(await live.client.get("/api/v1/lots", headers=headers))

    assert (await live.client.get("/api/v1/lots", headers=headers)).status_code == 200
    assert (await live.client.get("/readyz")).status_code == 200


async def test_no_free_connection_in_time_is_503_database_busy(
    live: Live, settings: Settings, database_url: str
) -> None:
    one = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_seconds": 0.3}
    )
    app = create_app(one, database_url)
    try:
        transport = httpx.ASGITransport(app=app)
        headers = live.world.a_operator.headers
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            async with app.state.engine.connect() as held:  # the pool's only connection, busy
                await held.execute(select(1))
                busy = await client.get("/api/v1/lots", headers=headers)
            assert busy.status_code == 503, busy.text
            assert busy.headers["content-type"] == "application/problem+json"
            assert busy.headers["Retry-After"] == "1"
            assert busy.json()["code"] == "database_busy"
            assert (await client.get("/api/v1/lots", headers=headers)).status_code == 200
    finally:
        await app.state.engine.dispose()
