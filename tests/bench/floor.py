"""The floor: minimal Starlette + asyncpg endpoints that write what the service writes, in one
transaction each, with none of the service's checks:

- POST /lots: the lot row and its event row (a registration);
- POST /shipments: lock the lots, the shipment, its items, the lots in transit, the event (a
  dispatch);
- POST /shipments/{id}/receipt: lock the shipment, its items weighed, the lots with the receiver
  (mass, holder, visibility arrays), the shipment received, the event (a receipt).

Run by the benchmark as `uvicorn tests.bench.floor:app`; BENCH_DSN names the database. The caller's
enterprise comes in X-Enterprise (no authentication)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

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
VALUES ($1, $2, $3, 'api_key', 'operator', $4::uuid[], $5::uuid[], $6::varchar[], $7::uuid[],
    $8::jsonb)
"""
FACILITIES = "SELECT id, enterprise_id, region_code FROM facility WHERE id = ANY($1::uuid[])"
LOCK_LOTS = """
SELECT id, code, status, net_g FROM lot WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
"""
INSERT_SHIPMENT = """
INSERT INTO shipment (id, from_facility_id, to_facility_id, sender_enterprise_id,
    receiver_enterprise_id, from_region, to_region, status, carrier, dispatched_g, dispatched_at,
    version)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'dispatched', $8, $9, now(), 1)
"""
INSERT_ITEMS = """
INSERT INTO shipment_item (shipment_id, lot_id, status_before, dispatched_g)
SELECT $1, id, status, net_g FROM unnest($2::uuid[], $3::text[], $4::bigint[]) t(id, status, net_g)
"""
LOTS_IN_TRANSIT = """
UPDATE lot SET status = 'in_transit', version = version + 1, updated_at = now()
WHERE id = ANY($1::uuid[])
"""
LOCK_SHIPMENT = """
SELECT s.id, s.from_facility_id, s.to_facility_id, s.sender_enterprise_id,
       s.receiver_enterprise_id, s.from_region, s.to_region, f.region_code
FROM shipment s JOIN facility f ON f.id = s.to_facility_id WHERE s.id = $1 FOR UPDATE OF s
"""
ITEMS_WEIGHED = """
UPDATE shipment_item i SET received_g = t.g, refused_g = 0, difference_g = i.dispatched_g - t.g
FROM unnest($2::uuid[], $3::bigint[]) t(lot_id, g)
WHERE i.shipment_id = $1 AND i.lot_id = t.lot_id
RETURNING i.lot_id, i.dispatched_g, i.received_g, i.difference_g
"""
# The benchmark's lots are wholly post-consumer: their composition is their mass.
LOTS_RECEIVED = """
UPDATE lot l SET net_g = t.g, post_consumer_g = t.g, holder_facility_id = $3,
    holder_enterprise_id = $4, status = 'active', version = version + 1, updated_at = now(),
    enterprise_ids = CASE WHEN $4 = ANY(l.enterprise_ids) THEN l.enterprise_ids
                          ELSE l.enterprise_ids || $4 END,
    facility_ids = CASE WHEN $3 = ANY(l.facility_ids) THEN l.facility_ids
                        ELSE l.facility_ids || $3 END,
    region_prefixes = l.region_prefixes || ARRAY(SELECT unnest($5::varchar[])
                                                 EXCEPT SELECT unnest(l.region_prefixes))
FROM unnest($1::uuid[], $2::bigint[]) t(id, g)
WHERE l.id = t.id
"""
SHIPMENT_RECEIVED = """
UPDATE shipment SET status = 'received', received_at = now(), version = version + 1
WHERE id = $1
"""

pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=10, max_size=20)
    yield
    await pool.close()


def _pool() -> asyncpg.Pool:
    assert pool is not None
    return pool


async def _event(
    conn: asyncpg.Connection,
    type: str,
    subject_id: uuid.UUID,
    enterprises: list[uuid.UUID],
    facilities: list[uuid.UUID],
    regions: list[str],
    lots: list[uuid.UUID],
    payload: dict[str, Any],
) -> None:
    await conn.execute(
        INSERT_EVENT,
        type,
        type.split(".")[0],
        str(subject_id),
        enterprises,
        facilities,
        regions,
        lots,
        json.dumps(payload, default=str),
    )


async def register(request: Request) -> JSONResponse:
    body = await request.json()
    lot_id = uuid.uuid4()
    code = "F" + lot_id.hex[:12]
    grams = round(body["net_kg"] * 1000)
    facility = uuid.UUID(body["facility_id"])
    enterprise = uuid.UUID(request.headers["x-enterprise"])
    async with _pool().acquire() as conn, conn.transaction():
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
        payload = {"code": code, "net_g": grams}
        await _event(
            conn, "lot.registered", lot_id, [enterprise], [facility], ["520102"], [lot_id], payload
        )
    return JSONResponse(
        {"id": str(lot_id), "code": code, "net_kg": body["net_kg"]}, status_code=201
    )


async def dispatch(request: Request) -> JSONResponse:
    body = await request.json()
    shipment_id = uuid.uuid4()
    source, target = uuid.UUID(body["from_facility_id"]), uuid.UUID(body["to_facility_id"])
    lot_ids = [uuid.UUID(i) for i in body["lot_ids"]]
    async with _pool().acquire() as conn, conn.transaction():
        facilities = {row["id"]: row for row in await conn.fetch(FACILITIES, [source, target])}
        lots = await conn.fetch(LOCK_LOTS, lot_ids)
        grams = sum(lot["net_g"] for lot in lots)
        sender, receiver = facilities[source], facilities[target]
        await conn.execute(
            INSERT_SHIPMENT,
            shipment_id,
            source,
            target,
            sender["enterprise_id"],
            receiver["enterprise_id"],
            sender["region_code"],
            receiver["region_code"],
            body.get("carrier"),
            grams,
        )
        await conn.execute(
            INSERT_ITEMS,
            shipment_id,
            [lot["id"] for lot in lots],
            [lot["status"] for lot in lots],
            [lot["net_g"] for lot in lots],
        )
        await conn.execute(LOTS_IN_TRANSIT, lot_ids)
        await _event(
            conn,
            "shipment.dispatched",
            shipment_id,
            [sender["enterprise_id"], receiver["enterprise_id"]],
            [source, target],
            [sender["region_code"], receiver["region_code"]],
            lot_ids,
            {
                "from_facility_id": source,
                "to_facility_id": target,
                "lots": [{"id": i["id"], "code": i["code"], "net_g": i["net_g"]} for i in lots],
                "dispatched_g": grams,
                "carrier": body.get("carrier"),
            },
        )
    return JSONResponse({"id": str(shipment_id), "status": "dispatched"}, status_code=201)


async def receive(request: Request) -> JSONResponse:
    body = await request.json()
    shipment_id = uuid.UUID(request.path_params["shipment_id"])
    lot_ids = [uuid.UUID(item["lot_id"]) for item in body["items"]]
    grams = [round(item["received_kg"] * 1000) for item in body["items"]]
    async with _pool().acquire() as conn, conn.transaction():
        shipment = await conn.fetchrow(LOCK_SHIPMENT, shipment_id)
        items = await conn.fetch(ITEMS_WEIGHED, shipment_id, lot_ids, grams)
        region = shipment["region_code"]
        await conn.execute(
            LOTS_RECEIVED,
            lot_ids,
            grams,
            shipment["to_facility_id"],
            shipment["receiver_enterprise_id"],
            [region[:2], region[:4], region],
        )
        await conn.execute(SHIPMENT_RECEIVED, shipment_id)
        await _event(
            conn,
            "shipment.received",
            shipment_id,
            [shipment["sender_enterprise_id"], shipment["receiver_enterprise_id"]],
            [shipment["from_facility_id"], shipment["to_facility_id"]],
            [shipment["from_region"], shipment["to_region"]],
            lot_ids,
            {"status": "received", "items": [dict(item) for item in items]},
        )
    return JSONResponse({"id": str(shipment_id), "status": "received"}, status_code=201)


app = Starlette(
    routes=[
        Route("/lots", register, methods=["POST"]),
        Route("/shipments", dispatch, methods=["POST"]),
        Route("/shipments/{shipment_id}/receipt", receive, methods=["POST"]),
    ],
    lifespan=lifespan,
)
