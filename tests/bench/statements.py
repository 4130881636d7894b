"""Statement benchmark (issue 5): an enterprise's statement with 10 thousand and with 1 million lots
in the database; the enterprise's own activity is the same in both.

    .venv/bin/python -m tests.bench.statements [--small 10000] [--large 1000000] [--repeat 100]
                                               [--explain]

Builds, by SQL, one enterprise E with a collection point, a pretreatment centre and a smelter and
3 years of activity (3,000 lots bought, shipped in fives, half of the loads shredded, a quarter
melted, certificates), then the same activity spread over 1,000 other enterprises up to `--small`
lots. Starts the real server and times GET /api/v1/enterprises/{E}/statement (12 months, both
metals) over HTTP; grows the others to `--large` lots, and times it again. With
`--explain`, prints the plans of the statement's queries at the large size. BENCH_DATABASE_URL
uses that server (a fresh database on it) instead of an embedded PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.bench.server import BIN, ROOT, free_port, wait_ready

OTHERS = 1000
E_LOTS = 3000

NETWORK = """
INSERT INTO enterprise (id, name, uscc, roles, region_code, status, version)
SELECT gen_random_uuid(), 'bench other ' || k, 'BENCH' || lpad(k::text, 13, '0'),
       ARRAY['recycler', 'pretreater', 'smelter'], '520102', 'active', 1
FROM generate_series(1, {others}) k;
INSERT INTO facility (id, enterprise_id, name, kind, region_code, address, status, version)
SELECT gen_random_uuid(), e.id, e.name || ' ' || kind, kind, '520102', 'bench', 'active', 1
FROM enterprise e
CROSS JOIN unnest(ARRAY['collection_point', 'pretreatment_center', 'smelter']) kind
WHERE e.uscc LIKE 'BENCH%';
"""

# The participants of a block of activity, numbered from 0.
PARTICIPANTS = """
DROP TABLE IF EXISTS net;
CREATE TEMP TABLE net AS
SELECT (row_number() OVER (ORDER BY e.id) - 1)::int AS k, e.id AS enterprise,
       max(f.id::text) FILTER (WHERE f.kind = 'collection_point')::uuid AS point,
       max(f.id::text) FILTER (WHERE f.kind = 'pretreatment_center')::uuid AS centre,
       max(f.id::text) FILTER (WHERE f.kind = 'smelter')::uuid AS smelter
FROM enterprise e JOIN facility f ON f.enterprise_id = e.id
WHERE {where}
GROUP BY e.id;
CREATE UNIQUE INDEX ON net (k);
"""

# `n` lots over the participants, five at a time per enterprise, over the last 3 years; each
# five are shipped to the next participant's centre, every second load is shredded there, every
# fourth melted at its smelter, every tenth certified to the next participant. `tag` keeps codes
# and numbers unique between blocks.
ACTIVITY = """
DROP TABLE IF EXISTS gen;
CREATE TEMP TABLE gen AS
SELECT i, gen_random_uuid() AS id, (i / 5) AS load, ((i / 5) % m.m) AS k,
       CASE WHEN i % 3 = 0 THEN 'copper' ELSE 'aluminium' END AS metal,
       (100000 + (i::bigint * 7919) % 900000) AS net_g,
       now() - interval '3 years' * ((i / 5) * 0.6180339887 % 1) AS t
FROM generate_series({start}, {start} + {n} - 1) i,
     (SELECT count(*) AS m FROM net) m;
CREATE INDEX ON gen (load);

INSERT INTO lot (id, code, kind, metal, category, net_g, post_consumer_g, pre_consumer_g,
    primary_g, consumer_class, channel, origin, collected_at, registered_facility_id,
    holder_facility_id, holder_enterprise_id, status, version, enterprise_ids, region_prefixes,
    facility_ids, registered_at, updated_at)
SELECT g.id, '{tag}' || g.i, 'scrap', g.metal,
       CASE WHEN g.metal = 'copper' THEN 'GB13587-I' ELSE 'GB13586-WROUGHT' END,
       g.net_g, CASE WHEN g.i % 2 = 0 THEN g.net_g ELSE 0 END,
       CASE WHEN g.i % 2 = 0 THEN 0 ELSE g.net_g END, 0,
       CASE WHEN g.i % 2 = 0 THEN 'post_consumer' ELSE 'pre_consumer' END,
       CASE WHEN g.i % 4 < 2 THEN 'online' ELSE 'offline' END, 'domestic', g.t,
       n.point, n.centre, n.enterprise, 'active', 1, ARRAY[n.enterprise],
       ARRAY['52', '5201', '520102'], ARRAY[n.point], g.t, g.t
FROM gen g JOIN net n ON n.k = g.k;

INSERT INTO event (type, subject_type, subject_id, actor_kind, actor_role, enterprise_ids,
    facility_ids, region_codes, lot_ids, occurred_at, payload)
SELECT 'lot.registered', 'lot', g.id::text, 'system', 'platform_admin', ARRAY[n.enterprise],
       ARRAY[n.point], ARRAY['520102'], ARRAY[g.id], g.t,
       jsonb_build_object('code', '{tag}' || g.i, 'metal', g.metal, 'net_g', g.net_g)
FROM gen g JOIN net n ON n.k = g.k;

DROP TABLE IF EXISTS loads;
CREATE TEMP TABLE loads AS
SELECT g.load, min(g.k) AS k, gen_random_uuid() AS shipment, gen_random_uuid() AS run,
       min(g.t) AS t, sum(g.net_g) AS net_g, min(g.metal) AS metal,
       sum(g.post_consumer_g) AS post_g, sum(g.pre_consumer_g) AS pre_g
FROM (SELECT g.*, l.post_consumer_g, l.pre_consumer_g FROM gen g JOIN lot l ON l.id = g.id) g
GROUP BY g.load;

INSERT INTO shipment (id, from_facility_id, to_facility_id, sender_enterprise_id,
    receiver_enterprise_id, from_region, to_region, status, vehicle_energy, distance_km,
    dispatched_g, dispatched_at, received_at, version)
SELECT s.shipment, a.point, b.centre, a.enterprise, b.enterprise, '520102', '520102', 'received',
       (ARRAY['diesel', 'lng', 'electric', 'hybrid'])[1 + s.load % 4],
       CASE WHEN s.load % 7 = 0 THEN NULL ELSE 10 + s.load % 300 END,
       s.net_g, s.t + interval '1 day', s.t + interval '2 days', 2
FROM loads s, (SELECT count(*) AS m FROM net) m
JOIN net a ON true JOIN net b ON true
WHERE a.k = s.k AND b.k = (s.k + 1) % m.m;

INSERT INTO shipment_item (shipment_id, lot_id, status_before, dispatched_g, received_g,
    refused_g, difference_g)
SELECT s.shipment, g.id, 'active', g.net_g, g.net_g, 0, 0
FROM gen g JOIN loads s ON s.load = g.load;

INSERT INTO transformation (id, facility_id, enterprise_id, region_code, process, metal, input_g,
    primary_g, output_g, loss_g, loss_flagged, started_at, ended_at, status, version)
SELECT s.run, CASE WHEN s.load % 4 = 1 THEN b.smelter ELSE b.centre END, b.enterprise, '520102',
       CASE WHEN s.load % 4 = 1 THEN 'melting' ELSE 'shredding' END, s.metal, s.net_g,
       CASE WHEN s.load % 4 = 1 THEN s.net_g / 4 ELSE 0 END,
       CASE WHEN s.load % 4 = 1 THEN s.net_g + s.net_g / 4 ELSE s.net_g END - s.net_g / 50,
       s.net_g / 50, false, s.t + interval '3 days', s.t + interval '3 days 2 hours',
       'recorded', 1
FROM loads s, (SELECT count(*) AS m FROM net) m
JOIN net b ON true
WHERE b.k = (s.k + 1) % m.m AND s.load % 4 IN (0, 1, 2);

INSERT INTO transformation_input (transformation_id, lot_id, taken_g, post_consumer_g,
    pre_consumer_g, primary_g, status_before)
SELECT s.run, g.id, g.net_g, l.post_consumer_g, l.pre_consumer_g, 0, 'active'
FROM gen g JOIN loads s ON s.load = g.load JOIN lot l ON l.id = g.id
WHERE s.load % 4 IN (0, 1, 2);

INSERT INTO event (type, subject_type, subject_id, actor_kind, actor_role, enterprise_ids,
    facility_ids, region_codes, lot_ids, occurred_at, payload)
SELECT 'transformation.recorded', 'transformation', t.id::text, 'system', 'platform_admin',
       ARRAY[t.enterprise_id], ARRAY[t.facility_id], ARRAY['520102'], '{{}}', t.ended_at,
       jsonb_build_object('process', t.process, 'outputs', jsonb_build_array(jsonb_build_object(
           'lot_id', gen_random_uuid(),
           'kind', CASE WHEN t.process = 'melting' THEN 'product' ELSE 'scrap' END,
           'net_g', t.output_g)))
FROM transformation t JOIN loads s ON s.run = t.id;

INSERT INTO certificate (id, number, lot_id, issuer_enterprise_id, recipient_enterprise_id,
    debited_enterprise_id, method, metal, mass_g, claimed_post_consumer_g,
    claimed_pre_consumer_g, payload, signature, key_id, status, issued_at, version)
SELECT gen_random_uuid(), '{tag}-' || s.load, g.id, a.enterprise, b.enterprise, a.enterprise,
       'proportional', g.metal, g.net_g, g.net_g / 2, g.net_g / 4, '{{}}', '\\x00', 'bench',
       'valid', s.t + interval '4 days', 1
FROM loads s, (SELECT count(*) AS m FROM net) m
JOIN net a ON true JOIN net b ON true
JOIN LATERAL (SELECT * FROM gen WHERE gen.load = s.load ORDER BY gen.i LIMIT 1) g ON true
WHERE a.k = s.k AND b.k = (s.k + 1) % m.m AND s.load % 10 = 3;
"""


async def _seed(url: str) -> tuple[str, str]:
    """Enterprise E with its three facilities and an admin key, through the services."""
    from domain.actor import SYSTEM, Role
    from domain.identity import service as identity
    from domain.registry import service as registry
    from integrations.database import create_engine, session_factory
    from tests.factories import random_uscc

    engine = create_engine(url, pool_size=1)
    async with session_factory(engine)() as session:
        enterprise = await registry.create_enterprise(
            session,
            SYSTEM,
            name="bench E",
            uscc=random_uscc(),
            roles=["recycler", "pretreater", "smelter"],
            region_code="520102",
        )
        for kind in ("collection_point", "pretreatment_center", "smelter"):
            await registry.create_facility(
                session,
                SYSTEM,
                enterprise_id=enterprise.id,
                name=f"bench E {kind}",
                kind=kind,
                region_code="520102",
                address="bench",
            )
        _, secret = await identity.create_api_key(
            session,
            SYSTEM,
            name="bench",
            role=Role.viewer,
            owner=identity.Owner(enterprise.id, None),
            expires_at=None,
        )
        await session.commit()
    await engine.dispose()
    return str(enterprise.id), secret


async def _grow(dsn: str, where: str, start: int, n: int, tag: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        async with conn.transaction():
            await conn.execute(PARTICIPANTS.format(where=where))
            # Only integers and constant tags of our own go into the text.
            chunk = 100_000
            for offset in range(0, n, chunk):
                size = min(chunk, n - offset)
                await conn.execute(
                    ACTIVITY.format(start=int(start + offset), n=int(size), tag=f"{tag}{offset}-")
                )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def _time(
    port: int, enterprise: str, key: str, repeat: int, period: dict[str, str]
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    timings = []
    url = f"/api/v1/enterprises/{enterprise}/statement"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False) as http:
        for _ in range(repeat + 5):
            started = time.perf_counter()
            response = http.get(url, params=period, headers=headers)
            timings.append(time.perf_counter() - started)
            response.raise_for_status()
    measured = sorted(timings[5:])  # the first warm the connections and the plan cache
    body = response.json()
    al = next(m for m in body["metals"] if m["metal"] == "aluminium")
    return {
        "p50_ms": round(statistics.median(measured) * 1000, 1),
        "p95_ms": round(measured[int(len(measured) * 0.95) - 1] * 1000, 1),
        "max_ms": round(measured[-1] * 1000, 1),
        "collected_lots": al["collection"]["lots"],
        "smelting_runs": al["smelting"]["runs"],
        "shipments": al["transport"]["shipments"],
    }


async def _explain(dsn: str, enterprise: str) -> None:
    from domain.reports.service import statement_queries

    conn = await asyncpg.connect(dsn)
    try:
        end = datetime.now(UTC)
        params = {"enterprise": uuid.UUID(enterprise), "start": end - timedelta(days=365)}
        params["end"] = end
        for name, query in statement_queries(None).items():
            compiled = query.compile(compile_kwargs={})
            sql = str(compiled)
            names = list(compiled.params)
            for index, param in enumerate(names, start=1):
                sql = sql.replace(f":{param}", f"${index}")
            plan = await conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *(params[p] for p in names)
            )
            print(f"\n-- {name}")
            for row in plan:
                print(row[0])
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10_000, help="lots of the others, first")
    parser.add_argument("--large", type=int, default=1_000_000, help="lots of the others, then")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args(argv)

    from integrations.embedded import EmbeddedPostgres, ensure_database
    from integrations.migrate import upgrade
    from tests.databases import drop_database, fresh_database

    workdir = Path(tempfile.mkdtemp(prefix="sfs", dir="/tmp"))
    embedded = None
    process = None
    external = os.environ.get("BENCH_DATABASE_URL")
    try:
        if external:
            os.environ["TEST_DATABASE_URL"] = external
            url = fresh_database("sf_bench_statements")
        else:
            embedded = EmbeddedPostgres(workdir)
            embedded.start()
            url = embedded.url("bench")
            asyncio.run(ensure_database(url))
        upgrade(url)
        enterprise, key = asyncio.run(_seed(url))
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        asyncio.run(_grow(dsn, f"e.id = '{uuid.UUID(enterprise)}'", 0, E_LOTS, "E"))
        others = "e.uscc LIKE 'BENCH%'"
        asyncio.run(_bench_network(dsn))
        asyncio.run(_grow(dsn, others, 0, args.small, "S"))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPFLOW_")}
        env.update(
            DATABASE_URL=url,
            SCRAPFLOW_PORT=str(port),
            SCRAPFLOW_DATA_DIR=str(workdir / "app"),
            SCRAPFLOW_SEALER_IN_API="false",
        )
        process = subprocess.Popen(
            [str(BIN / "scrapflow"), "serve"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_ready(port, "/readyz", process)
        # The same 12 months for both runs, so that E's figures must be the same.
        end = datetime.now(UTC) + timedelta(hours=1)
        period = {"from": (end - timedelta(days=365)).isoformat(), "to": end.isoformat()}
        small = _time(port, enterprise, key, args.repeat, period)
        asyncio.run(_grow(dsn, others, args.small, args.large - args.small, "L"))
        large = _time(port, enterprise, key, args.repeat, period)
        if args.explain:
            asyncio.run(_explain(dsn, enterprise))
        row = {
            "lots_small": args.small + E_LOTS,
            "lots_large": args.large + E_LOTS,
            "p50_small_ms": small["p50_ms"],
            "p95_small_ms": small["p95_ms"],
            "p50_large_ms": large["p50_ms"],
            "p95_large_ms": large["p95_ms"],
            "max_large_ms": large["max_ms"],
            "ratio_p50": round(large["p50_ms"] / small["p50_ms"], 2),
            "ratio_p95": round(large["p95_ms"] / small["p95_ms"], 2),
            "same_figures": {k: v for k, v in small.items() if not k.endswith("_ms")}
            == {k: v for k, v in large.items() if not k.endswith("_ms")},
        }
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        if embedded is not None:
            embedded.stop()
        elif external:
            drop_database(url)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nstatement benchmark: one enterprise's statement, 12 months, both metals")
    print(" | ".join(row))
    print(" | ".join(str(v) for v in row.values()))
    return row


async def _bench_network(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(NETWORK.format(others=OTHERS))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
