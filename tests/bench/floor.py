"""The floor: a minimal Starlette + asyncpg endpoint that writes what a registration writes (the
lot row and its event row, in one transaction), with none of the service's checks.

Run by the benchmark as `uvicorn tests.bench.floor:app`; BENCH_DSN names the database."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

INSERT_LOT = """
INSERT INTO lot (id, code, kind, metal, category, net_g, post_consumer_g, pre_consumer_g,
    primary_g, consumer_class, channel, origin, collected_at, registered_facility_id,
    holder_facility_id, holder_enterprise_id, status, version, enterprise_ids, region_prefixes,
    facility_ids)
VALUES ($1, $2, 'scrap', $3, $4, $5, $5, 0, 0, 'post_consumer', $6, 'domestic', now(), $7, $7,
    $8, 'active', 1, ARRAY[$8]::uuid[], ARRAY['52', '5201', '520102'], ARRAY[$7]::uuid[])
"""
INSERT_EVENT = """
INSERT INTO event (type, subject_type, subject_id, actor_kind, actor_role, enterprise_ids,
    facility_ids, region_codes, lot_ids, payload)
VALUES ('lot.registered', 'lot', $1, 'api_key', 'operator', ARRAY[$2]::uuid[], ARRAY[$3]::uuid[],
    ARRAY['520102'], ARRAY[$4]::uuid[], $5::jsonb)
"""

pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=10, max_size=20)
    yield
    await pool.close()


async def register(request: Request) -> JSONResponse:
    body = await request.json()
    lot_id = uuid.uuid4()
    code = "F" + lot_id.hex[:12]
    grams = round(body["net_kg"] * 1000)
    facility = uuid.UUID(body["facility_id"])
    enterprise = uuid.UUID(request.headers["x-enterprise"])
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            INSERT_LOT,
            lot_id,
            code,
            body["metal"],
            body["category"],
            grams,
            body["channel"],
            facility,
            enterprise,
        )
        payload = json.dumps({"code": code, "net_g": grams})
        await conn.execute(INSERT_EVENT, str(lot_id), enterprise, facility, lot_id, payload)
    return JSONResponse(
        {"id": str(lot_id), "code": code, "net_kg": body["net_kg"]}, status_code=201
    )


app = Starlette(routes=[Route("/lots", register, methods=["POST"])], lifespan=lifespan)
