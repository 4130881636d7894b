"""Lineage benchmark (issue 4): upstream of a product lot with many ancestors over 5 levels.

    .venv/bin/python -m tests.bench.lineage [--sources 8000] [--repeat 20]

Builds the ancestry through the bulk path (rows and lineage edges written by SQL, fan-in 5 per
level: 8,000 + 1,600 + 320 + 64 + 16 = 10,000 ancestors, then one product from the 16), starts the
real server and times GET /api/v1/lots/{product}/lineage?direction=upstream over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import asyncpg
import httpx

from tests.bench.run import Seed, _seed
from tests.bench.server import database, dsn, serve

FAN_IN = 5
LEVELS = 5

BUILD = """
CREATE TEMP TABLE ancestry AS
SELECT level, idx, gen_random_uuid() AS id
FROM (SELECT l AS level, ({sources} / power({fan_in}, l - 1))::int AS n
      FROM generate_series(1, {levels}) l) v,
     generate_series(0, n - 1) idx
UNION ALL SELECT {levels} + 1, 0, gen_random_uuid();

INSERT INTO lot (id, code, kind, metal, category, net_g, post_consumer_g, pre_consumer_g,
    primary_g, origin, registered_facility_id, holder_facility_id, holder_enterprise_id, status,
    version, enterprise_ids, region_prefixes, facility_ids, registered_at, updated_at)
SELECT a.id, 'BL' || a.level || '-' || a.idx,
       CASE WHEN a.level > {levels} THEN 'product' ELSE 'scrap' END, 'aluminium',
       CASE WHEN a.level > {levels} THEN NULL ELSE 'GB13586-CAST' END,
       m.net, m.net, 0, 0, 'domestic',
       '{facility}'::uuid, '{facility}'::uuid, '{enterprise}'::uuid,
       CASE WHEN a.level > {levels} THEN 'active' ELSE 'consumed' END, 1,
       ARRAY['{enterprise}'::uuid], ARRAY['52', '5201', '520102'], ARRAY['{facility}'::uuid],
       now(), now()
FROM ancestry a
CROSS JOIN LATERAL (SELECT (1000 * power({fan_in}, a.level - 1))::bigint
                    * CASE WHEN a.level > {levels}
                           THEN ({sources} / power({fan_in}, {levels} - 1))::int
                           ELSE 1 END AS net) m;

INSERT INTO lot_source (lot_id, source_lot_id, grams, of_g, via)
SELECT child.id, parent.id, p.net_g, c.net_g, 'transformation'
FROM ancestry child
JOIN ancestry parent ON parent.level = child.level - 1
 AND (child.level > {levels} OR parent.idx / {fan_in} = child.idx)
JOIN lot c ON c.id = child.id
JOIN lot p ON p.id = parent.id;
"""


async def _build(dsn: str, seed: Seed, sources: int) -> tuple[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            # Only integers and UUIDs of our own go into the text.
            await conn.execute(
                BUILD.format(
                    sources=int(sources),
                    fan_in=FAN_IN,
                    levels=LEVELS,
                    facility=uuid.UUID(seed.facility_id),
                    enterprise=uuid.UUID(seed.enterprise_id),
                )
            )
        product = await conn.fetchval("SELECT id FROM ancestry WHERE level = $1", LEVELS + 1)
        ancestors = await conn.fetchval("SELECT count(*) FROM ancestry WHERE level <= $1", LEVELS)
        await conn.execute("ANALYZE lot; ANALYZE lot_source")
        return str(product), int(ancestors)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sources", type=int, default=8000, help="lots at the deepest level")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)

    with database("lineage") as url:
        seed = asyncio.run(_seed(url))
        product, ancestors = asyncio.run(_build(dsn(url), seed, args.sources))
        with serve(url) as port:
            timings = []
            headers = {"Authorization": f"Bearer {seed.api_key}"}
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False
            ) as http:
                for _ in range(args.repeat + 1):
                    started = time.perf_counter()
                    response = http.get(
                        f"/api/v1/lots/{product}/lineage",
                        params={"direction": "upstream", "max_depth": LEVELS + 1},
                        headers=headers,
                    )
                    timings.append(time.perf_counter() - started)
                    response.raise_for_status()
    body = response.json()
    sources_found = sum(1 for lot in body["lots"] if lot["end"])
    measured = timings[1:]  # the first warms the connection and the plan cache
    row = {
        "ancestors": ancestors,
        "lots_returned": len(body["lots"]),
        "sources": sources_found,
        "kg_balance_ok": round(
            sum(lot["kg"] for lot in body["lots"] if lot["end"]) + body["primary_kg"], 3
        )
        == body["net_kg"],
        "p50_ms": round(statistics.median(measured) * 1000, 1),
        "max_ms": round(max(measured) * 1000, 1),
    }
    print("\nlineage benchmark: upstream of one product lot")
    print(" | ".join(row))
    print(" | ".join(str(v) for v in row.values()))
    return row


if __name__ == "__main__":
    main()
