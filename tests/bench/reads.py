"""Read latency at 10 thousand and at 1 million lots (issues 5 and 8, DESIGN §7).

    .venv/bin/python -m tests.bench.reads [--small 10000] [--large 1000000] [--repeat 200]
                                          [--report-repeat 10] [--check] [--json FILE]

Part of `python -m tests.bench`. One run, one server, one database (tests/bench/server.py: on an
embedded PostgreSQL, or `bench_reads` on the server BENCH_DATABASE_URL names). Builds a province
of `--small` lots, starts the real server (`scrapflow serve`, production settings, real API-key
authentication) and times over HTTP, one request at a time, the endpoints taking turns (and a
control request, an enterprise by id, that shows what the machine did between the two timings):

- GET /api/v1/enterprises/{id}/statement?from=&to= for the measured smelter and recycler, over
  the last calendar month (reported as "not available" when the route does not exist);
- GET /api/v1/enterprises/{id}/credits for the measured smelter;
- GET /api/v1/lots/{id}/lineage?direction=upstream for one of its products;
- GET /api/v1/lots?facility_id=... (first page) at the measured recycler's pretreatment centre;
- GET /api/v1/facilities/{id}/register?direction=incoming (CSV) of that centre over the month;
- GET /api/v1/reports/{flows,indicators,anomalies} for the provincial authority over 12 months
  (the whole province's year: these grow with the data; timed in `--report-repeat` rounds only).

Then it grows the same database to `--large` lots (the rest of the province), runs VACUUM
ANALYZE, and times the same requests against the same server. One table: p50/p95/max at both
sizes and the ratio large/small.

The dataset is what the services would have written, built in bulk (INSERT ... SELECT and COPY)
rather than through HTTP. Enterprises, facilities and API keys are made by the registry and
identity services. Each supply chain is one recycler's collection points → a pretreatment centre
→ a smelter → a processor, spread over the nine prefectures. Over 12 months, scrap lots are
registered at the collection points (wholly post- or pre-consumer, by category and channel,
some with an organisation seller), trucked 20 at a time to the pretreatment centre (distance
from the coordinates, vehicle energy, some lots weighing a little less at receipt), shredded or
sorted into one output lot per truckload (pooled composition and lineage edges by the largest
remainder rule, a loss), trucked 3 at a time to the smelter and melted with primary metal into
two products and dross (the service's own `pool`), each product crediting its recycled grams
to the smelter's ledger (tranche and entry, running balances). Products go on to a processor.
Every step writes its event row as the service would (type, actor, enterprise/facility/region
arrays, payload; seq and hash NULL) and leaves the lots in the state the service would (status,
holder, version, mass after weighing, the enterprise/region/facility arrays). What happened
after the build time has not happened yet: recent lots are still at the collection points, in
transit, or waiting to be processed.

The measured recycler, smelter and processor form one chain whose volume is the same in both
datasets (`--small` // 2 scrap lots a year); only the rest of the province grows. The audit
sealer does not run in the API process during the benchmark (SCRAPFLOW_SEALER_IN_API=false):
sealing the bulk-built history is another benchmark and would compete for the same two cores.

`--check` counts, after each build, the rows that break the services' rules (keys, visibility
arrays, custody, consumption, run balances, lineage shares, ledger, one event per change) and
recomputes a sample of runs with `pool()`; the CI-sized run requires none. Known simplifications:
sellers are organisations (an individual's sealed identity needs the server's key per lot), no
certificates are issued (the ledger holds credits only), and the growth's secondary indexes are
built afresh after the load (compact, where years of inserts would have split pages); foreign keys
are not checked row by row during the load (session_replication_role, when the role may) since
`--check` covers them."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx

from tests.bench.server import database, dsn, serve

LOTS_PER_TRUCK = 20  # collection point → pretreatment centre; one run per truckload
BALES_PER_TRUCK = 3  # pretreatment centre → smelter; one melt per truckload
YEAR = timedelta(days=360)  # inside the 365-day credit period: nothing has expired yet
CST = timezone(timedelta(hours=8))

# The nine prefectures of Guizhou: a district each, its name, number plates and coordinates.
PLACES: dict[str, tuple[str, str, float, float]] = {
    "520102": ("贵阳市南明区", "贵A", 26.57, 106.71),
    "520302": ("遵义市红花岗区", "贵C", 27.69, 106.92),
    "520402": ("安顺市西秀区", "贵G", 26.25, 105.93),
    "520502": ("毕节市七星关区", "贵F", 27.30, 105.28),
    "520602": ("铜仁市碧江区", "贵D", 27.72, 109.19),
    "522301": ("兴义市", "贵E", 25.09, 104.90),
    "522601": ("凯里市", "贵H", 26.58, 107.98),
    "522701": ("都匀市", "贵J", 26.26, 107.52),
    "520203": ("六枝特区", "贵B", 26.21, 105.48),
}
REGIONS = list(PLACES)
SCRAP = {
    "aluminium": [
        "GB13586-WROUGHT", "GB13586-CAST", "GB13586-TURNINGS", "ISRI-TALC", "ISRI-ZORBA",
        "ISRI-TENSE", "ISRI-TUTU",
    ],
    "copper": ["GB13587-I", "GB13587-II", "GB13587-VIII", "ISRI-BIRCH", "ISRI-BERRY"],
}  # fmt: skip
SELLERS = ["汽车修理厂", "建材有限公司", "物业管理有限公司", "电器维修部", "拆除工程有限公司"]


# --- the province ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    id: uuid.UUID
    region: str
    lat: float
    lon: float


@dataclass
class Party:
    """An enterprise, its facilities, and the operator API key its events name as the actor."""

    enterprise_id: uuid.UUID
    actor_id: uuid.UUID
    sites: list[Site]


@dataclass
class Chain:
    index: int
    metal: str
    n: int  # scrap lots registered over the year
    serial0: int  # lot-code serials [serial0, serial0 + serials) are this chain's
    recycler: Party  # its sites are the collection points
    pretreater: Party
    pc: Site
    smelter: Party
    processor: Party
    process: str
    loss: tuple[float, float]
    sellers: list[tuple[str, str]]

    @property
    def serials(self) -> int:
        return self.n + self.n // LOTS_PER_TRUCK + 2 * (self.n // (LOTS_PER_TRUCK * 3)) + 8


@dataclass
class Province:
    """What the build made: the chains, and the measured parties with their read-only keys."""

    chains: list[Chain] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # measured enterprise → API key secret
    t0: datetime = field(default_factory=lambda: datetime.now(UTC))
    size: int = 0  # scrap lots a year of the measured chain, and of the others


def _distance_km(a: Site, b: Site) -> float:
    """Road distance: the great circle times 1.3, at least 3 km."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(max(3.0, 1.3 * 2 * 6371 * math.asin(math.sqrt(h))), 1)


async def _party(
    session: Any,
    rng: random.Random,
    name: str,
    roles: list[str],
    region: str,
    sites: list[tuple[str, str, int]],
) -> Party:
    """An enterprise with its facilities (kind, region, capacity in tonnes) and operator key,
    through the registry and identity services."""
    from domain.actor import SYSTEM, Role
    from domain.identity import service as identity
    from domain.registry import service as registry
    from tests.factories import random_uscc

    enterprise = await registry.create_enterprise(
        session, SYSTEM, name=name, uscc=random_uscc(region), roles=roles, region_code=region
    )
    made = []
    for number, (kind, where, tonnes) in enumerate(sites, 1):
        place, _, lat, lon = PLACES[where]
        lat, lon = (
            round(lat + rng.uniform(-0.08, 0.08), 5),
            round(lon + rng.uniform(-0.08, 0.08), 5),
        )
        facility = await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=enterprise.id,
            name=f"{name} {kind} {number}",
            kind=kind,
            region_code=where,
            address=f"{place}工业园区{rng.randint(1, 99)}号",
            latitude=lat,
            longitude=lon,
            annual_capacity_g=tonnes * 1_000_000,
            permit_no=f"{where}-{kind[:2].upper()}-{rng.randint(10000, 99999)}",
        )
        made.append(Site(facility.id, where, lat, lon))
    key, _ = await identity.create_api_key(
        session,
        SYSTEM,
        name="operations",
        role=Role.operator,
        owner=identity.Owner(enterprise.id, None),
        expires_at=None,
    )
    return Party(enterprise.id, key.id, made)


async def _inspector_key(session: Any) -> str:
    """A key of the provincial authority (jurisdiction 52: the whole province)."""
    from domain.actor import SYSTEM, Role
    from domain.identity import service as identity
    from domain.registry import service as registry

    authority = await registry.create_authority(
        session, SYSTEM, name="贵州省商务厅", jurisdiction="52"
    )
    _, secret = await identity.create_api_key(
        session,
        SYSTEM,
        name="bench reports",
        role=Role.inspector,
        owner=identity.Owner(None, authority.id),
        expires_at=None,
    )
    return secret


async def _viewer_key(session: Any, enterprise_id: uuid.UUID) -> str:
    from domain.actor import SYSTEM, Role
    from domain.identity import service as identity

    _, secret = await identity.create_api_key(
        session,
        SYSTEM,
        name="bench reads",
        role=Role.viewer,
        owner=identity.Owner(enterprise_id, None),
        expires_at=None,
    )
    return secret


def _sellers(rng: random.Random, region: str) -> list[tuple[str, str]]:
    from tests.factories import random_uscc

    city = PLACES[region][0]
    return [(f"{city}{rng.choice(SELLERS)}{k}", random_uscc(region)) for k in range(1, 21)]


async def _chains(
    url: str, province: Province, measured: bool, others: int, n: int, rng: random.Random
) -> list[Chain]:
    """Registry and chains of one build step: the measured chain (recycler with two collection
    points and its own pretreatment centre, a smelter and a processor of its own), and `others`
    chains of `n` scrap lots, 4 recyclers to a pretreater, 20 to a smelter (a quarter of the
    smelters melt copper), each smelter with its processor."""
    from integrations.database import create_engine, session_factory

    engine = create_engine(url, pool_size=1)
    chains: list[Chain] = []
    try:
        async with session_factory(engine)() as session:
            if measured:
                recycler = await _party(
                    session,
                    rng,
                    "贵阳城南再生资源回收有限公司",
                    ["recycler", "pretreater"],
                    "520102",
                    [
                        ("collection_point", "520102", 6000),
                        ("collection_point", "520102", 6000),
                        ("pretreatment_center", "520102", 30000),
                    ],
                )
                smelter = await _party(
                    session,
                    rng,
                    "安顺再生铝业有限公司",
                    ["smelter"],
                    "520402",
                    [("smelter", "520402", 60000)],
                )
                processor = await _party(
                    session,
                    rng,
                    "安顺铝合金材料有限公司",
                    ["processor"],
                    "520402",
                    [("processing_plant", "520402", 80000)],
                )
                province.keys["recycler"] = await _viewer_key(session, recycler.enterprise_id)
                province.keys["smelter"] = await _viewer_key(session, smelter.enterprise_id)
                province.keys["processor"] = await _viewer_key(session, processor.enterprise_id)
                province.keys["province"] = await _inspector_key(session)
                cps, pc = recycler.sites[:2], recycler.sites[2]
                chains.append(
                    Chain(
                        0,
                        "aluminium",
                        n,
                        0,
                        Party(recycler.enterprise_id, recycler.actor_id, cps),
                        recycler,
                        pc,
                        smelter,
                        processor,
                        "shredding",
                        (0.005, 0.025),
                        _sellers(rng, "520102"),
                    )
                )
            pretreaters: dict[int, Party] = {}
            smelters: dict[int, tuple[Party, Party, str]] = {}
            for k in range(others):
                index = len(province.chains) + len(chains)
                region = REGIONS[index % len(REGIONS)]
                city = PLACES[region][0]
                if k // 20 not in smelters:
                    j = len(province.chains) + len(chains)  # spreads smelters over prefectures
                    where = REGIONS[(j // 20 * 4 + 2) % len(REGIONS)]
                    metal = "copper" if (k // 20) % 4 == 3 else "aluminium"
                    word = "铜" if metal == "copper" else "铝"
                    smelter = await _party(
                        session,
                        rng,
                        f"{PLACES[where][0]}再生{word}业有限公司{index}",
                        ["smelter"],
                        where,
                        [("smelter", where, 100000)],
                    )
                    processor = await _party(
                        session,
                        rng,
                        f"{PLACES[where][0]}{word}材加工有限公司{index}",
                        ["processor"],
                        where,
                        [("processing_plant", where, 120000)],
                    )
                    smelters[k // 20] = (smelter, processor, metal)
                if k // 4 not in pretreaters:
                    pretreaters[k // 4] = await _party(
                        session,
                        rng,
                        f"{city}废旧金属分拣中心有限公司{index}",
                        ["pretreater"],
                        region,
                        [("pretreatment_center", region, 40000)],
                    )
                recycler = await _party(
                    session,
                    rng,
                    f"{city}再生资源回收有限公司{index}",
                    ["recycler"],
                    region,
                    [("collection_point", region, 5000), ("collection_point", region, 5000)],
                )
                smelter, processor, metal = smelters[k // 20]
                shredding = metal == "aluminium" and index % 3 != 0
                chains.append(
                    Chain(
                        index,
                        metal,
                        n,
                        0,
                        recycler,
                        pretreaters[k // 4],
                        pretreaters[k // 4].sites[0],
                        smelter,
                        processor,
                        "shredding" if shredding else "sorting",
                        (0.005, 0.025) if shredding else (0.01, 0.04),
                        _sellers(rng, region),
                    )
                )
            await session.commit()
    finally:
        await engine.dispose()
    province.chains.extend(chains)
    return chains


# --- the bulk build ----------------------------------------------------------------------------

FUNCTIONS = """
-- `domain.ids.new_id` at a given time (random bits from md5: gen_random_uuid costs 10 times more)
CREATE FUNCTION pg_temp.uuid7(at timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS $$
SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
        || overlay(substr(md5(random()::text), 1, 19) PLACING '8' FROM 4 FOR 1))::uuid
$$;
CREATE FUNCTION pg_temp.iso(at timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
CREATE FUNCTION pg_temp.lot_code(metal text, at timestamptz, serial bigint) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT upper(left(metal, 1)) || to_char(at AT TIME ZONE 'UTC', 'YY') || '-'
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((serial >> 25) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((serial >> 20) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((serial >> 15) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((serial >> 10) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((serial >> 5) & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (serial & 31)::int + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U', (serial % 37)::int + 1, 1)
$$;
CREATE TEMP TABLE bench_chain (
    chain int PRIMARY KEY, metal text, n int, serial0 bigint, t_start timestamptz, step interval,
    recycler uuid, r_actor uuid, n_cps int, pc uuid, pc_ent uuid, pc_region text, pc_actor uuid,
    smelter uuid, sm_ent uuid, sm_region text, sm_actor uuid, categories text[],
    bale_category text, process text, loss_lo float8, loss_hi float8, loss_threshold float8,
    d2 numeric, plate2 text, carrier2 text, seller_names text[], seller_usccs text[],
    bale_pref_before text[], bale_ent_after uuid[], bale_pref_after text[], bale_fac_after uuid[],
    ev2_ent uuid[], ev2_fac uuid[], ev2_reg text[]
);
CREATE TEMP TABLE bench_cp (
    chain int, cp_index int, cp uuid, cp_region text, d1 numeric, plate1 text, carrier1 text,
    pref_before text[], ent_after uuid[], pref_after text[], fac_after uuid[],
    ev1_ent uuid[], ev1_fac uuid[], ev1_reg text[], PRIMARY KEY (chain, cp_index)
);
CREATE TEMP TABLE ev_stage AS SELECT type, subject_type, subject_id, actor_kind,
    actor_principal_id, actor_role, actor_enterprise_id, actor_authority_id, request_id,
    enterprise_ids, facility_ids, region_codes::text[], lot_ids, payload, occurred_at
FROM event WITH NO DATA;
"""

# Scrap lots: raw draws first (materialised, so that each is drawn once), then the lot.
SCRAP_SQL = """
CREATE TEMP TABLE scrap AS
WITH raw AS MATERIALIZED (
    SELECT c.chain, s.i, random() AS u_t, random() AS u_c, random() AS u_w, random() AS u_d,
           random() AS u_d2, random() AS u_p, random() AS u_k, random() AS u_o, random() AS u_s,
           random() AS u_s2
    FROM bench_chain c CROSS JOIN LATERAL generate_series(0, c.n - 1) s(i)
)
SELECT r.chain, r.i / 20 AS grp, p.cp_index, p.cp, pg_temp.uuid7(x.t) AS id,
       pg_temp.lot_code(c.metal, x.t, c.serial0 + r.i) AS code, x.t AS registered_at,
       x.t - (5 + 40 * r.u_c) * interval '1 minute' AS collected_at, x.net_g,
       x.net_g - CASE WHEN r.u_d < 0.3 THEN floor(x.net_g * 0.005 * r.u_d2 / 100)::bigint * 100
                      ELSE 0 END AS weighed_g,
       r.u_p < 0.2 AS pre,
       c.categories[1 + floor(r.u_k * cardinality(c.categories))::int] AS category,
       CASE WHEN r.u_o < 0.25 THEN 'online' ELSE 'offline' END AS channel,
       CASE WHEN r.u_s < 0.3 THEN 1 + floor(r.u_s2 * cardinality(c.seller_names))::int END
           AS seller
FROM raw r
JOIN bench_chain c ON c.chain = r.chain
JOIN bench_cp p ON p.chain = r.chain AND p.cp_index = (r.i / 20) % c.n_cps
CROSS JOIN LATERAL (
    SELECT c.t_start + (r.i + r.u_t) * c.step AS t,
           (200 + floor(19800 * r.u_w ^ 2))::bigint * 100 AS net_g
) x;
CREATE INDEX ON scrap (chain, grp);
ANALYZE scrap;
"""

VEHICLE = """CASE WHEN {u} < 0.6 THEN 'diesel' WHEN {u} < 0.75 THEN 'lng'
                  WHEN {u} < 0.92 THEN 'electric' ELSE 'hybrid' END"""
PLATE = """{prefix} || substr('ABCDEFGHJKLMNPQRSTUVWXYZ', 1 + floor({u} * 24)::int, 1)
           || lpad((floor({u} * 240000)::int % 10000)::text, 4, '0')"""

# Truckloads from the collection points (full ones only; the rest waits), and their runs.
SHIP1_SQL = f"""
CREATE TEMP TABLE ship1 AS
WITH g AS MATERIALIZED (
    SELECT chain, grp, cp_index, count(*) AS lots, sum(net_g)::bigint AS dispatched_g,
           sum(weighed_g)::bigint AS received_g,
           coalesce(sum(weighed_g) FILTER (WHERE NOT pre), 0)::bigint AS post_g,
           max(registered_at) AS ready_at, random() AS u_t, random() AS u_e, random() AS u_v,
           random() AS u_r, random() AS u_l, random() AS u_x
    FROM scrap GROUP BY chain, grp, cp_index HAVING count(*) = 20
)
SELECT g.*, g.received_g - g.post_g AS pre_g, d.dispatched_at,
       pg_temp.uuid7(d.dispatched_at) AS id,
       CASE WHEN a.arrive <= $1 THEN a.arrive END AS received_at,
       {VEHICLE.format(u="g.u_e")} AS vehicle_energy,
       {PLATE.format(prefix="p.plate1", u="g.u_v")} AS plate
FROM g
JOIN bench_cp p USING (chain, cp_index)
CROSS JOIN LATERAL (SELECT g.ready_at + (2 + 22 * g.u_t) * interval '1 hour' AS dispatched_at) d
CROSS JOIN LATERAL (
    SELECT d.dispatched_at + (p.d1 / 35 + 0.3) * interval '1 hour' AS arrive
) a
WHERE d.dispatched_at <= $1;
CREATE UNIQUE INDEX ON ship1 (chain, grp);
"""  # noqa: S608 - constant fragments and our own numbers only

RUN1_SQL = """
CREATE TEMP TABLE run1 AS
SELECT h.chain, h.grp, h.received_g AS input_g, h.post_g, h.pre_g, y.loss_g,
       h.received_g - y.loss_g AS output_g,
       -- the output's composition: largest remainder over (post, pre), ties to post
       z.bp + CASE WHEN h.received_g - y.loss_g - z.bp - z.bq = 1
                        AND z.rp >= z.rq THEN 1 ELSE 0 END AS bale_post,
       y.started_at, y.ended_at, y.recorded_at,
       round((h.received_g / 1e6 * (20 + 20 * h.u_x))::numeric, 3) AS electricity_kwh,
       pg_temp.uuid7(y.recorded_at) AS id, pg_temp.uuid7(y.recorded_at) AS bale_id
FROM ship1 h
JOIN bench_chain c USING (chain)
CROSS JOIN LATERAL (
    SELECT floor(h.received_g * (c.loss_lo + (c.loss_hi - c.loss_lo) * h.u_l))::bigint AS loss_g,
           h.received_at + (1 + 20 * h.u_r) * interval '1 hour' AS started_at,
           h.received_at + (2.5 + 23 * h.u_r) * interval '1 hour' AS ended_at,
           h.received_at + (2.7 + 23.5 * h.u_r) * interval '1 hour' AS recorded_at
) y
CROSS JOIN LATERAL (
    SELECT (h.received_g - y.loss_g) * h.post_g / h.received_g AS bp,
           (h.received_g - y.loss_g) * h.pre_g / h.received_g AS bq,
           (h.received_g - y.loss_g) * h.post_g % h.received_g AS rp,
           (h.received_g - y.loss_g) * h.pre_g % h.received_g AS rq
) z
WHERE h.received_at IS NOT NULL AND y.recorded_at <= $1;
CREATE UNIQUE INDEX ON run1 (chain, grp);
CREATE TEMP TABLE bale AS
SELECT r.chain, r.bale_id AS id, r.id AS run_id, r.output_g AS net_g, r.bale_post AS post_g,
       r.output_g - r.bale_post AS pre_g, r.recorded_at,
       (row_number() OVER (PARTITION BY r.chain ORDER BY r.recorded_at, r.grp) - 1)::int AS b
FROM run1 r;
ALTER TABLE bale ADD COLUMN code text;
UPDATE bale b SET code = pg_temp.lot_code(c.metal, b.recorded_at, c.serial0 + c.n + b.b)
FROM bench_chain c WHERE c.chain = b.chain;
CREATE INDEX ON bale (chain, (b / 3));
ANALYZE run1; ANALYZE bale;
"""

# Truckloads of pretreated scrap to the smelter, and when each would be melted.
SHIP2_SQL = f"""
CREATE TEMP TABLE ship2 AS
WITH g AS MATERIALIZED (
    SELECT chain, b / 3 AS grp, count(*) AS lots, sum(net_g)::bigint AS dispatched_g,
           max(recorded_at) AS ready_at, random() AS u_t, random() AS u_e, random() AS u_v,
           random() AS u_m
    FROM bale GROUP BY chain, b / 3 HAVING count(*) = 3
)
SELECT g.*, d.dispatched_at, pg_temp.uuid7(d.dispatched_at) AS id,
       CASE WHEN a.arrive <= $1 THEN a.arrive END AS received_at,
       CASE WHEN a.arrive <= $1 AND m.recorded_at <= $1 THEN m.recorded_at END AS melt_recorded,
       m.started_at AS melt_started, m.ended_at AS melt_ended,
       {VEHICLE.format(u="g.u_e")} AS vehicle_energy,
       {PLATE.format(prefix="c.plate2", u="g.u_v")} AS plate
FROM g
JOIN bench_chain c USING (chain)
CROSS JOIN LATERAL (SELECT g.ready_at + (2 + 30 * g.u_t) * interval '1 hour' AS dispatched_at) d
CROSS JOIN LATERAL (
    SELECT d.dispatched_at + (c.d2 / 45 + 0.5) * interval '1 hour' AS arrive
) a
CROSS JOIN LATERAL (
    SELECT a.arrive + (1 + 12 * g.u_m) * interval '1 hour' AS started_at,
           a.arrive + (5 + 14 * g.u_m) * interval '1 hour' AS ended_at,
           a.arrive + (5.2 + 14.3 * g.u_m) * interval '1 hour' AS recorded_at
) m
WHERE d.dispatched_at <= $1;
CREATE UNIQUE INDEX ON ship2 (chain, grp);
ANALYZE ship1; ANALYZE ship2;
"""  # noqa: S608 - constant fragments and our own numbers only

LOT_COLUMNS = """id, code, kind, metal, category, product_form, destination_use, net_g,
    post_consumer_g, pre_consumer_g, primary_g, consumer_class, channel, origin, collected_at,
    seller_kind, seller_name_masked, seller_id_masked, registered_facility_id,
    holder_facility_id, holder_enterprise_id, status, version, enterprise_ids, region_prefixes,
    facility_ids, registered_at, updated_at"""

# The lots as they are now: stage 0 registered, 1 in transit, 2 received, 3 consumed.
LOTS_SQL = f"""
INSERT INTO lot ({LOT_COLUMNS})
SELECT s.id, s.code, 'scrap', c.metal, s.category, NULL, NULL, m.net_g,
       CASE WHEN s.pre THEN 0 ELSE m.net_g END, CASE WHEN s.pre THEN m.net_g ELSE 0 END, 0,
       CASE WHEN s.pre THEN 'pre_consumer' ELSE 'post_consumer' END, s.channel, 'domestic',
       s.collected_at, CASE WHEN s.seller IS NOT NULL THEN 'organisation' END,
       c.seller_names[s.seller], c.seller_usccs[s.seller], s.cp,
       CASE WHEN st.stage >= 2 THEN c.pc ELSE s.cp END,
       CASE WHEN st.stage >= 2 THEN c.pc_ent ELSE c.recycler END,
       (ARRAY['active', 'in_transit', 'active', 'consumed'])[st.stage + 1], st.stage + 1,
       CASE WHEN st.stage >= 2 THEN p.ent_after ELSE ARRAY[c.recycler] END,
       CASE WHEN st.stage >= 2 THEN p.pref_after ELSE p.pref_before END,
       CASE WHEN st.stage >= 2 THEN p.fac_after ELSE ARRAY[s.cp] END,
       s.registered_at,
       CASE st.stage WHEN 0 THEN s.registered_at WHEN 1 THEN h.dispatched_at
                     WHEN 2 THEN h.received_at ELSE r.recorded_at END
FROM scrap s
JOIN bench_chain c ON c.chain = s.chain
JOIN bench_cp p ON p.chain = s.chain AND p.cp_index = s.cp_index
LEFT JOIN ship1 h ON h.chain = s.chain AND h.grp = s.grp
LEFT JOIN run1 r ON r.chain = s.chain AND r.grp = s.grp
CROSS JOIN LATERAL (
    SELECT CASE WHEN r.id IS NOT NULL THEN 3 WHEN h.received_at IS NOT NULL THEN 2
                WHEN h.id IS NOT NULL THEN 1 ELSE 0 END AS stage
) st
CROSS JOIN LATERAL (
    SELECT CASE WHEN st.stage >= 2 THEN s.weighed_g ELSE s.net_g END AS net_g
) m
ORDER BY s.registered_at;

INSERT INTO lot ({LOT_COLUMNS})
SELECT b.id, b.code, 'scrap', c.metal, c.bale_category, NULL, NULL, b.net_g, b.post_g,
       b.pre_g, 0, NULL, NULL, 'domestic', NULL, NULL, NULL, NULL, c.pc,
       CASE WHEN st.stage >= 2 THEN c.smelter ELSE c.pc END,
       CASE WHEN st.stage >= 2 THEN c.sm_ent ELSE c.pc_ent END,
       (ARRAY['active', 'in_transit', 'active', 'consumed'])[st.stage + 1], st.stage + 1,
       CASE WHEN st.stage >= 2 THEN c.bale_ent_after ELSE ARRAY[c.pc_ent] END,
       CASE WHEN st.stage >= 2 THEN c.bale_pref_after ELSE c.bale_pref_before END,
       CASE WHEN st.stage >= 2 THEN c.bale_fac_after ELSE ARRAY[c.pc] END,
       b.recorded_at,
       CASE st.stage WHEN 0 THEN b.recorded_at WHEN 1 THEN h.dispatched_at
                     WHEN 2 THEN h.received_at ELSE h.melt_recorded END
FROM bale b
JOIN bench_chain c ON c.chain = b.chain
LEFT JOIN ship2 h ON h.chain = b.chain AND h.grp = b.b / 3
CROSS JOIN LATERAL (
    SELECT CASE WHEN h.melt_recorded IS NOT NULL THEN 3 WHEN h.received_at IS NOT NULL THEN 2
                WHEN h.id IS NOT NULL THEN 1 ELSE 0 END AS stage
) st
ORDER BY b.recorded_at;
"""  # noqa: S608 - constant fragments and our own numbers only

SHIPMENT_COLUMNS = """id, from_facility_id, to_facility_id, sender_enterprise_id,
    receiver_enterprise_id, from_region, to_region, status, carrier, vehicle_plate,
    vehicle_energy, emission_standard, distance_km, dispatched_g, dispatched_at, received_at,
    weighbridge_ticket_no, version"""
TICKET = """CASE WHEN {h}.received_at IS NOT NULL THEN 'WB' || to_char({h}.received_at
    AT TIME ZONE 'Asia/Shanghai', 'YYMMDDHH24MISS') || '-' || left({h}.id::text, 4) END"""
STANDARD = "CASE {h}.vehicle_energy WHEN 'electric' THEN NULL ELSE 'China VI' END"

SHIPMENTS_SQL = f"""
INSERT INTO shipment ({SHIPMENT_COLUMNS})
SELECT h.id, p.cp, c.pc, c.recycler, c.pc_ent, p.cp_region, c.pc_region,
       CASE WHEN h.received_at IS NULL THEN 'dispatched' ELSE 'received' END, p.carrier1,
       h.plate, h.vehicle_energy, {STANDARD.format(h="h")}, p.d1, h.dispatched_g,
       h.dispatched_at, h.received_at, {TICKET.format(h="h")},
       CASE WHEN h.received_at IS NULL THEN 1 ELSE 2 END
FROM ship1 h JOIN bench_chain c USING (chain) JOIN bench_cp p USING (chain, cp_index)
ORDER BY h.dispatched_at;

INSERT INTO shipment_item (shipment_id, lot_id, status_before, dispatched_g, received_g,
    refused_g, difference_g)
SELECT h.id, s.id, 'active', s.net_g, r.received_g, r.refused_g, r.difference_g
FROM scrap s JOIN ship1 h USING (chain, grp)
CROSS JOIN LATERAL (
    SELECT CASE WHEN h.received_at IS NOT NULL THEN s.weighed_g END AS received_g,
           CASE WHEN h.received_at IS NOT NULL THEN 0 END AS refused_g,
           CASE WHEN h.received_at IS NOT NULL THEN s.net_g - s.weighed_g END AS difference_g
) r
ORDER BY h.dispatched_at, s.id;

INSERT INTO shipment ({SHIPMENT_COLUMNS})
SELECT h.id, c.pc, c.smelter, c.pc_ent, c.sm_ent, c.pc_region, c.sm_region,
       CASE WHEN h.received_at IS NULL THEN 'dispatched' ELSE 'received' END, c.carrier2,
       h.plate, h.vehicle_energy, {STANDARD.format(h="h")}, c.d2, h.dispatched_g,
       h.dispatched_at, h.received_at, {TICKET.format(h="h")},
       CASE WHEN h.received_at IS NULL THEN 1 ELSE 2 END
FROM ship2 h JOIN bench_chain c USING (chain)
ORDER BY h.dispatched_at;

INSERT INTO shipment_item (shipment_id, lot_id, status_before, dispatched_g, received_g,
    refused_g, difference_g)
SELECT h.id, b.id, 'active', b.net_g,
       CASE WHEN h.received_at IS NOT NULL THEN b.net_g END,
       CASE WHEN h.received_at IS NOT NULL THEN 0 END,
       CASE WHEN h.received_at IS NOT NULL THEN 0 END
FROM bale b JOIN ship2 h ON h.chain = b.chain AND h.grp = b.b / 3
ORDER BY h.dispatched_at, b.id;
"""  # noqa: S608 - constant fragments and our own numbers only

RUNS_SQL = """
INSERT INTO transformation (id, facility_id, enterprise_id, region_code, process, metal,
    input_g, primary_g, output_g, loss_g, loss_flagged, electricity_kwh, started_at, ended_at,
    status, recorded_at, version)
SELECT r.id, c.pc, c.pc_ent, c.pc_region, c.process, c.metal, r.input_g, 0, r.output_g,
       r.loss_g, r.loss_g::float8 / r.input_g > c.loss_threshold, r.electricity_kwh,
       r.started_at, r.ended_at, 'recorded', r.recorded_at, 1
FROM run1 r JOIN bench_chain c USING (chain)
ORDER BY r.recorded_at;

INSERT INTO transformation_input (transformation_id, lot_id, taken_g, post_consumer_g,
    pre_consumer_g, primary_g, status_before)
SELECT r.id, s.id, s.weighed_g, CASE WHEN s.pre THEN 0 ELSE s.weighed_g END,
       CASE WHEN s.pre THEN s.weighed_g ELSE 0 END, 0, 'active'
FROM run1 r JOIN scrap s USING (chain, grp)
ORDER BY r.recorded_at, s.id;

INSERT INTO transformation_output (transformation_id, lot_id)
SELECT id, bale_id FROM run1 ORDER BY recorded_at;

INSERT INTO transformation_loss (transformation_id, position, kind, grams, post_consumer_g,
    pre_consumer_g, primary_g)
SELECT r.id, 0, 'non_metallic_residue', r.loss_g, r.post_g - r.bale_post,
       r.pre_g - (r.output_g - r.bale_post), 0
FROM run1 r ORDER BY r.recorded_at;

-- Lineage: each input's grams in the output, floored, then one more gram to the largest
-- remainders (the order of `apportion` for one output and one loss; inputs in id order).
INSERT INTO lot_source (lot_id, source_lot_id, grams, of_g, via, transformation_id)
SELECT e.bale_id, e.lot_id, e.base + CASE WHEN e.rank <= e.missing THEN 1 ELSE 0 END,
       e.output_g, 'transformation', e.run_id
FROM (
    SELECT r.bale_id, r.id AS run_id, r.output_g, s.id AS lot_id, q.base,
           row_number() OVER (PARTITION BY r.id ORDER BY q.rem DESC, s.id) AS rank,
           r.output_g - sum(q.base) OVER (PARTITION BY r.id) AS missing
    FROM run1 r JOIN scrap s USING (chain, grp)
    CROSS JOIN LATERAL (
        SELECT s.weighed_g * r.output_g / r.input_g AS base,
               s.weighed_g * r.output_g % r.input_g AS rem
    ) q
) e;
"""

EVENT_COLUMNS = """type, subject_type, subject_id, actor_kind, actor_principal_id, actor_role,
    actor_enterprise_id, actor_authority_id, request_id, enterprise_ids, facility_ids,
    region_codes, lot_ids, payload, occurred_at"""
REQUEST_ID = "md5(random()::text)"  # 32 hex digits, like the middleware's uuid4().hex

# Every change's event, in the order they happened.
EVENTS_SQL = f"""
-- The truckloads' lots as the payloads list them (JSON written as text: cheaper than jsonb_agg).
CREATE TEMP TABLE ship1_lots AS
SELECT s.chain, s.grp, array_agg(s.id ORDER BY s.id) AS lot_ids,
       ('[' || string_agg(format('{{"id": "%s", "code": "%s", "net_g": %s}}',
                                 s.id, s.code, s.net_g), ', ' ORDER BY s.id) || ']')::jsonb
           AS lots,
       ('[' || string_agg(format('{{"lot_id": "%s", "dispatched_g": %s, "received_g": %s,'
                                 ' "refused_g": 0, "difference_g": %s, "refusal_reason": null,'
                                 ' "refused_lot_id": null}}', s.id, s.net_g, s.weighed_g,
                                 s.net_g - s.weighed_g), ', ' ORDER BY s.id) || ']')::jsonb
           AS items,
       ('[' || string_agg(format('{{"lot_id": "%s", "taken_g": %s}}', s.id, s.weighed_g), ', '
                          ORDER BY s.id) || ']')::jsonb AS taken
FROM scrap s JOIN ship1 h USING (chain, grp)
GROUP BY s.chain, s.grp;
CREATE TEMP TABLE ship2_lots AS
SELECT b.chain, b.b / 3 AS grp, array_agg(b.id ORDER BY b.id) AS lot_ids,
       jsonb_agg(jsonb_build_object('id', b.id, 'code', b.code, 'net_g', b.net_g)
                 ORDER BY b.id) AS lots,
       jsonb_agg(jsonb_build_object('lot_id', b.id, 'dispatched_g', b.net_g,
                                    'received_g', b.net_g, 'refused_g', 0, 'difference_g', 0,
                                    'refusal_reason', NULL, 'refused_lot_id', NULL)
                 ORDER BY b.id) AS items
FROM bale b JOIN ship2 h ON h.chain = b.chain AND h.grp = b.b / 3
GROUP BY b.chain, b.b / 3;

INSERT INTO event ({EVENT_COLUMNS})
SELECT * FROM (
    SELECT 'lot.registered', 'lot', s.id::text, 'api_key', c.r_actor, 'operator', c.recycler,
           NULL::uuid, {REQUEST_ID}, ARRAY[c.recycler], ARRAY[s.cp], ARRAY[p.cp_region],
           ARRAY[s.id],
           -- `registered_payload`; written as text (half the cost of jsonb_build_object)
           format('{{"code": "%s", "metal": "%s", "category": "%s", "net_g": %s,'
                  ' "post_consumer_g": %s, "pre_consumer_g": %s, "primary_g": 0,'
                  ' "channel": "%s", "origin": "domestic", "import_country": null,'
                  ' "customs_declaration_no": null, "conformity_standard": null,'
                  ' "collected_at": "%s", "seller_kind": %s, "facility_id": "%s"}}',
                  s.code, c.metal, s.category, s.net_g,
                  CASE WHEN s.pre THEN 0 ELSE s.net_g END,
                  CASE WHEN s.pre THEN s.net_g ELSE 0 END, s.channel,
                  pg_temp.iso(s.collected_at),
                  CASE WHEN s.seller IS NOT NULL THEN '"organisation"' ELSE 'null' END,
                  s.cp)::jsonb,
           s.registered_at
    FROM scrap s JOIN bench_chain c USING (chain) JOIN bench_cp p USING (chain, cp_index)
    UNION ALL
    SELECT 'shipment.dispatched', 'shipment', h.id::text, 'api_key', c.r_actor, 'operator',
           c.recycler, NULL, {REQUEST_ID}, p.ev1_ent, p.ev1_fac, p.ev1_reg, l.lot_ids,
           jsonb_build_object(
               'from_facility_id', p.cp, 'to_facility_id', c.pc, 'lots', l.lots,
               'dispatched_g', h.dispatched_g, 'carrier', p.carrier1, 'vehicle_plate', h.plate,
               'vehicle_energy', h.vehicle_energy, 'distance_km', p.d1::text),
           h.dispatched_at
    FROM ship1 h JOIN ship1_lots l USING (chain, grp) JOIN bench_chain c USING (chain)
    JOIN bench_cp p USING (chain, cp_index)
    UNION ALL
    SELECT 'shipment.received', 'shipment', h.id::text, 'api_key', c.pc_actor, 'operator',
           c.pc_ent, NULL, {REQUEST_ID}, p.ev1_ent, p.ev1_fac, p.ev1_reg, l.lot_ids,
           jsonb_build_object(
               'status', 'received', 'received_at', pg_temp.iso(h.received_at),
               'weighbridge_ticket_no', {TICKET.format(h="h")}, 'items', l.items),
           h.received_at
    FROM ship1 h JOIN ship1_lots l USING (chain, grp) JOIN bench_chain c USING (chain)
    JOIN bench_cp p USING (chain, cp_index)
    WHERE h.received_at IS NOT NULL
    UNION ALL
    SELECT 'transformation.recorded', 'transformation', r.id::text, 'api_key', c.pc_actor,
           'operator', c.pc_ent, NULL, {REQUEST_ID}, ARRAY[c.pc_ent], ARRAY[c.pc],
           ARRAY[c.pc_region], l.lot_ids || r.bale_id,
           jsonb_build_object(
               'facility_id', c.pc, 'process', c.process, 'metal', c.metal, 'inputs', l.taken,
               'primary_inputs', '[]'::jsonb,
               'outputs', jsonb_build_array(jsonb_build_object(
                   'lot_id', r.bale_id, 'code', b.code, 'kind', 'scrap', 'net_g', r.output_g,
                   'recycled_g', r.output_g)),
               'losses', jsonb_build_array(jsonb_build_object(
                   'kind', 'non_metallic_residue', 'grams', r.loss_g)),
               'loss_flagged', r.loss_g::float8 / r.input_g > c.loss_threshold,
               'started_at', pg_temp.iso(r.started_at), 'ended_at', pg_temp.iso(r.ended_at)),
           r.recorded_at
    FROM run1 r JOIN ship1_lots l USING (chain, grp) JOIN bench_chain c USING (chain)
    JOIN bale b ON b.id = r.bale_id
    UNION ALL
    SELECT 'shipment.dispatched', 'shipment', h.id::text, 'api_key', c.pc_actor, 'operator',
           c.pc_ent, NULL, {REQUEST_ID}, c.ev2_ent, c.ev2_fac, c.ev2_reg, l.lot_ids,
           jsonb_build_object(
               'from_facility_id', c.pc, 'to_facility_id', c.smelter, 'lots', l.lots,
               'dispatched_g', h.dispatched_g, 'carrier', c.carrier2, 'vehicle_plate', h.plate,
               'vehicle_energy', h.vehicle_energy, 'distance_km', c.d2::text),
           h.dispatched_at
    FROM ship2 h JOIN ship2_lots l USING (chain, grp) JOIN bench_chain c USING (chain)
    UNION ALL
    SELECT 'shipment.received', 'shipment', h.id::text, 'api_key', c.sm_actor, 'operator',
           c.sm_ent, NULL, {REQUEST_ID}, c.ev2_ent, c.ev2_fac, c.ev2_reg, l.lot_ids,
           jsonb_build_object(
               'status', 'received', 'received_at', pg_temp.iso(h.received_at),
               'weighbridge_ticket_no', {TICKET.format(h="h")}, 'items', l.items),
           h.received_at
    FROM ship2 h JOIN ship2_lots l USING (chain, grp) JOIN bench_chain c USING (chain)
    WHERE h.received_at IS NOT NULL
    UNION ALL
    SELECT {EVENT_COLUMNS} FROM ev_stage
) e (type, subject_type, subject_id, actor_kind, actor_principal_id, actor_role,
     actor_enterprise_id, actor_authority_id, request_id, enterprise_ids, facility_ids,
     region_codes, lot_ids, payload, occurred_at)
ORDER BY occurred_at;
"""  # noqa: S608 - constant fragments and our own numbers only

MELTS_SQL = """
SELECT h.chain, h.grp, h.melt_started, h.melt_ended, h.melt_recorded,
       array_agg(b.id ORDER BY b.id) AS ids, array_agg(b.code ORDER BY b.id) AS codes,
       array_agg(b.net_g ORDER BY b.id) AS nets, array_agg(b.post_g ORDER BY b.id) AS posts,
       array_agg(b.pre_g ORDER BY b.id) AS pres
FROM ship2 h JOIN bale b ON b.chain = h.chain AND b.b / 3 = h.grp
WHERE h.melt_recorded IS NOT NULL
GROUP BY h.chain, h.grp, h.melt_started, h.melt_ended, h.melt_recorded
ORDER BY h.melt_recorded
"""


def _prefixes(*regions: str) -> list[str]:
    from domain.lots.service import region_prefixes

    return list(dict.fromkeys(p for r in regions for p in region_prefixes(r)))


def _chain_rows(
    chains: list[Chain], t0: datetime, rng: random.Random
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    from domain.transformations.rules import LOSS_THRESHOLD, Process

    chain_rows, cp_rows = [], []
    for c in chains:
        pc, sm = c.pc, c.smelter.sites[0]
        r_ent, p_ent, s_ent = (
            c.recycler.enterprise_id,
            c.pretreater.enterprise_id,
            c.smelter.enterprise_id,
        )
        bale = {
            "aluminium": {"shredding": "GB13586-FRAGMENTS", "sorting": "GB13586-WROUGHT"},
            "copper": {"sorting": "GB38471-CU"},
        }[c.metal][c.process]
        chain_rows.append(
            (
                c.index,
                c.metal,
                c.n,
                c.serial0,
                t0 - YEAR,
                YEAR / c.n,
                r_ent,
                c.recycler.actor_id,
                len(c.recycler.sites),
                pc.id,
                p_ent,
                pc.region,
                c.pretreater.actor_id,
                sm.id,
                s_ent,
                sm.region,
                c.smelter.actor_id,
                SCRAP[c.metal],
                bale,
                c.process,
                c.loss[0],
                c.loss[1],
                float(LOSS_THRESHOLD[Process(c.process)]),
                Decimal(str(_distance_km(pc, sm))),
                PLACES[pc.region][1],
                f"{PLACES[pc.region][0]}顺达物流有限公司",
                [s[0] for s in c.sellers],
                [s[1] for s in c.sellers],
                _prefixes(pc.region),
                list(dict.fromkeys([p_ent, s_ent])),
                _prefixes(pc.region, sm.region),
                [pc.id, sm.id],
                sorted({p_ent, s_ent}),
                sorted({pc.id, sm.id}),
                sorted({pc.region, sm.region}),
            )
        )
        for k, cp in enumerate(c.recycler.sites):
            cp_rows.append(
                (
                    c.index,
                    k,
                    cp.id,
                    cp.region,
                    Decimal(str(_distance_km(cp, pc))),
                    PLACES[cp.region][1],
                    f"{PLACES[cp.region][0]}{rng.choice(['安达', '顺丰', '通达'])}运输有限公司",
                    _prefixes(cp.region),
                    list(dict.fromkeys([r_ent, p_ent])),
                    _prefixes(cp.region, pc.region),
                    [cp.id, pc.id],
                    sorted({r_ent, p_ent}),
                    sorted({cp.id, pc.id}),
                    sorted({cp.region, pc.region}),
                )
            )
    return chain_rows, cp_rows


def _uuid7(at: datetime, rng: random.Random) -> uuid.UUID:
    """`domain.ids.new_id` at a given time."""
    ms = int(at.timestamp() * 1000)
    rand = rng.getrandbits(80)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


@dataclass
class Written:
    """Rows made in Python (melts and what follows them), COPY'd table by table."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, table: str, row: dict[str, Any]) -> None:
        if table not in self.columns:
            self.columns[table] = tuple(row)
            self.rows[table] = []
        self.rows[table].append(tuple(row[c] for c in self.columns[table]))


def _event(
    actor: Party,
    type: str,
    subject: uuid.UUID,
    at: datetime,
    payload: dict[str, Any],
    *,
    enterprises: list[uuid.UUID],
    facilities: list[uuid.UUID],
    regions: list[str],
    lots: list[uuid.UUID],
) -> dict[str, Any]:
    """An event row as `domain.audit.service.event_rows` makes it for an operator API key."""
    from domain.audit.rules import event_payload
    from domain.audit.service import payload_json

    return {
        "type": type,
        "subject_type": type.split(".")[0],
        "subject_id": str(subject),
        "actor_kind": "api_key",
        "actor_principal_id": actor.actor_id,
        "actor_role": "operator",
        "actor_enterprise_id": actor.enterprise_id,
        "actor_authority_id": None,
        "request_id": uuid.uuid4().hex,
        "enterprise_ids": sorted({*enterprises, actor.enterprise_id}),
        "facility_ids": sorted(set(facilities)),
        "region_codes": sorted(set(regions)),
        "lot_ids": list(dict.fromkeys(lots)),
        "payload": payload_json(event_payload(payload)),
        "occurred_at": at,
    }


def _melts(chains: dict[int, Chain], melts: list[Any], t0: datetime, rng: random.Random) -> Written:
    """Each melt through the service's own rules: pooled composition, exact balance, lineage,
    the smelter's credits (one tranche and entry per product and class, running balances), and
    the products' truck to the processor. Rows are plain dicts (the models' columns): building
    ORM objects would cost more than the rest of the build."""
    from domain.credits.rules import ACCOUNTING_PERIOD_DAYS, expires_at, recycled_of
    from domain.lots.rules import Composition, lot_code
    from domain.lots.rules import Metal as MetalKind
    from domain.transformations.rules import Process, loss_flagged, pool
    from domain.transformations.service import _recorded_payload

    out = Written()
    balances: dict[tuple[uuid.UUID, str, str], int] = {}
    last: dict[tuple[uuid.UUID, str, str], datetime] = {}
    serials = {i: c.serial0 + c.n + c.n // LOTS_PER_TRUCK + 1 for i, c in chains.items()}
    for melt in melts:
        c = chains[melt["chain"]]
        plant, smelter = c.smelter.sites[0], c.smelter.enterprise_id
        at: datetime = melt["melt_recorded"]
        taken = [
            Composition(post, pre, 0) for post, pre in zip(melt["posts"], melt["pres"], strict=True)
        ]
        input_g = sum(melt["nets"])
        aluminium = c.metal == "aluminium"
        primary_g = int(input_g * (rng.uniform(0.05, 0.25) if aluminium else rng.uniform(0.1, 0.3)))
        total = input_g + primary_g
        loss_g = int(total * rng.uniform(0.02, 0.06))
        first = int((total - loss_g) * rng.uniform(0.55, 0.8))
        outputs = [first, total - loss_g - first]
        pooled = pool(taken, primary_g, [*outputs, loss_g])
        run = {
            "id": _uuid7(at, rng),
            "facility_id": plant.id,
            "enterprise_id": smelter,
            "region_code": plant.region,
            "process": Process.melting.value,
            "metal": c.metal,
            "input_g": input_g,
            "primary_g": primary_g,
            "output_g": sum(outputs),
            "loss_g": loss_g,
            "loss_flagged": loss_flagged(Process.melting, loss_g, input_g, primary_g),
            "electricity_kwh": Decimal(f"{total / 1e6 * rng.uniform(30, 50):.3f}"),
            "natural_gas_m3": Decimal(f"{total / 1e6 * rng.uniform(60, 90):.3f}"),
            "started_at": melt["melt_started"],
            "ended_at": melt["melt_ended"],
            "status": "recorded",
            "recorded_at": at,
            "version": 1,
        }
        inputs = [
            {
                "transformation_id": run["id"],
                "lot_id": lot_id,
                "taken_g": part.total_g,
                "post_consumer_g": part.post_consumer_g,
                "pre_consumer_g": part.pre_consumer_g,
                "primary_g": 0,
                "status_before": "active",
            }
            for lot_id, part in zip(melt["ids"], taken, strict=True)
        ]
        primaries = [
            {
                "transformation_id": run["id"],
                "position": 0,
                "metal": c.metal,
                "description": "primary aluminium ingot (Al99.70)"
                if aluminium
                else "copper cathode (Cu-CATH-1)",
                "grams": primary_g,
            }
        ]
        forms = (
            [("molten", "direct_alloying" if rng.random() < 0.95 else "casting"), ("ingot", None)]
            if aluminium
            else [("rod", None), ("ingot", None)]
        )
        products = []
        for (form, use), part in zip(forms, pooled.compositions, strict=False):
            serial = serials[c.index]
            serials[c.index] += 1
            products.append(
                {
                    "id": _uuid7(at, rng),
                    "code": lot_code(MetalKind(c.metal), at.year, serial),
                    "kind": "product",
                    "metal": c.metal,
                    "product_form": form,
                    "destination_use": use,
                    "net_g": part.total_g,
                    "post_consumer_g": part.post_consumer_g,
                    "pre_consumer_g": part.pre_consumer_g,
                    "primary_g": part.primary_g,
                    "origin": "domestic",
                    "registered_facility_id": plant.id,
                    "holder_facility_id": plant.id,
                    "holder_enterprise_id": smelter,
                    "status": "active",
                    "version": 1,
                    "enterprise_ids": [smelter],
                    "region_prefixes": _prefixes(plant.region),
                    "facility_ids": [plant.id],
                    "registered_at": at,
                    "updated_at": at,
                }
            )
        dross = pooled.compositions[-1]
        losses = [
            {
                "transformation_id": run["id"],
                "position": 0,
                "kind": "dross",
                "grams": loss_g,
                "post_consumer_g": dross.post_consumer_g,
                "pre_consumer_g": dross.pre_consumer_g,
                "primary_g": dross.primary_g,
            }
        ]
        payload = _recorded_payload(
            SimpleNamespace(**run),
            _attrs(inputs),
            _attrs(primaries),
            _attrs(products),
            _attrs(losses),
        )
        events = [
            _event(
                c.smelter,
                "transformation.recorded",
                run["id"],
                at,
                payload,
                enterprises=[smelter],
                facilities=[plant.id],
                regions=[plant.region],
                lots=[*melt["ids"], *(p["id"] for p in products)],
            )
        ]
        events += _products_truck(out, c, products, at, t0, rng)
        out.add("transformation", run)
        for table, rows in (
            ("transformation_input", inputs),
            ("transformation_primary_input", primaries),
            ("lot", products),
            ("transformation_loss", losses),
        ):
            for row in rows:
                out.add(table, row)
        for lot, shares in zip(products, pooled.from_inputs, strict=False):
            out.add("transformation_output", {"transformation_id": run["id"], "lot_id": lot["id"]})
            for lot_id, grams in zip(melt["ids"], shares, strict=True):
                if grams > 0:
                    out.add(
                        "lot_source",
                        {
                            "lot_id": lot["id"],
                            "source_lot_id": lot_id,
                            "grams": grams,
                            "of_g": lot["net_g"],
                            "via": "transformation",
                            "transformation_id": run["id"],
                        },
                    )
        # credits.credit_products: one tranche and one ledger entry per product and class.
        for lot in products:
            made = Composition(lot["post_consumer_g"], lot["pre_consumer_g"], lot["primary_g"])
            for recycled_class, grams in recycled_of(made).items():
                account = (smelter, c.metal, recycled_class.value)
                balances[account] = balances.get(account, 0) + grams
                last[account] = at
                tranche_id = _uuid7(at, rng)
                out.add(
                    "credit_tranche",
                    {
                        "id": tranche_id,
                        "enterprise_id": smelter,
                        "metal": c.metal,
                        "recycled_class": recycled_class.value,
                        "lot_id": lot["id"],
                        "transformation_id": run["id"],
                        "credited_g": grams,
                        "remaining_g": grams,
                        "credited_at": at,
                        "expires_at": expires_at(at, ACCOUNTING_PERIOD_DAYS),
                    },
                )
                out.add(
                    "credit_entry",
                    {
                        "id": _uuid7(at, rng),
                        "enterprise_id": smelter,
                        "metal": c.metal,
                        "recycled_class": recycled_class.value,
                        "kind": "credit",
                        "grams": grams,
                        "balance_after_g": balances[account],
                        "tranche_id": tranche_id,
                        "lot_id": lot["id"],
                        "transformation_id": run["id"],
                        "recorded_at": at,
                    },
                )
        for event in events:
            out.add("ev_stage", event)
    # Both class accounts of a metal exist once one is credited (`_lock_accounts`).
    for enterprise_id, metal in {(e, m) for e, m, _ in balances}:
        for recycled_class in ("post_consumer", "pre_consumer"):
            account = (enterprise_id, metal, recycled_class)
            out.add(
                "credit_account",
                {
                    "enterprise_id": enterprise_id,
                    "metal": metal,
                    "recycled_class": recycled_class,
                    "balance_g": balances.get(account, 0),
                    "updated_at": max(t for k, t in last.items() if k[:2] == account[:2]),
                },
            )
    return out


def _attrs(rows: list[dict[str, Any]]) -> list[SimpleNamespace]:
    return [SimpleNamespace(**row) for row in rows]


def _products_truck(
    out: Written,
    c: Chain,
    products: list[dict[str, Any]],
    at: datetime,
    t0: datetime,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """A melt's products go to the processor on one truck, if it has left (and arrived) by now;
    the products' rows are moved on accordingly. Returns the events."""
    plant, mill = c.smelter.sites[0], c.processor.sites[0]
    leaves = at + timedelta(hours=rng.uniform(0.5, 6))
    distance = Decimal(str(_distance_km(plant, mill)))
    arrives = leaves + timedelta(hours=float(distance) / 40 + 0.2)
    if leaves > t0:
        return []
    received = arrives <= t0
    shipment_id = _uuid7(leaves, rng)
    energy = rng.choice(["diesel", "diesel", "lng", "electric"])
    carrier = f"{PLACES[plant.region][0]}危货运输有限公司"
    plate = f"{PLACES[plant.region][1]}{rng.choice('ABCDEFGH')}{rng.randint(0, 9999):04d}"
    dispatched_g = sum(p["net_g"] for p in products)
    ticket = f"WB{arrives.astimezone(CST):%y%m%d%H%M%S}-{str(shipment_id)[:4]}"
    parties = [c.smelter.enterprise_id, c.processor.enterprise_id]
    out.add(
        "shipment",
        {
            "id": shipment_id,
            "from_facility_id": plant.id,
            "to_facility_id": mill.id,
            "sender_enterprise_id": parties[0],
            "receiver_enterprise_id": parties[1],
            "from_region": plant.region,
            "to_region": mill.region,
            "status": "received" if received else "dispatched",
            "carrier": carrier,
            "vehicle_plate": plate,
            "vehicle_energy": energy,
            "emission_standard": None if energy == "electric" else "China VI",
            "distance_km": distance,
            "dispatched_g": dispatched_g,
            "dispatched_at": leaves,
            "received_at": arrives if received else None,
            "weighbridge_ticket_no": ticket if received else None,
            "version": 2 if received else 1,
        },
    )
    where: dict[str, Any] = {
        "enterprises": parties,
        "facilities": [plant.id, mill.id],
        "regions": [plant.region, mill.region],
        "lots": [p["id"] for p in products],
    }
    dispatched = {
        "from_facility_id": plant.id,
        "to_facility_id": mill.id,
        "lots": [{"id": p["id"], "code": p["code"], "net_g": p["net_g"]} for p in products],
        "dispatched_g": dispatched_g,
        "carrier": carrier,
        "vehicle_plate": plate,
        "vehicle_energy": energy,
        "distance_km": distance,
    }
    events = [_event(c.smelter, "shipment.dispatched", shipment_id, leaves, dispatched, **where)]
    for p in products:
        out.add(
            "shipment_item",
            {
                "shipment_id": shipment_id,
                "lot_id": p["id"],
                "status_before": "active",
                "dispatched_g": p["net_g"],
                "received_g": p["net_g"] if received else None,
                "refused_g": 0 if received else None,
                "difference_g": 0 if received else None,
            },
        )
        p["version"] = 3 if received else 2
        p["updated_at"] = arrives if received else leaves
        p["status"] = "active" if received else "in_transit"
        if received:
            p["holder_facility_id"] = mill.id
            p["holder_enterprise_id"] = c.processor.enterprise_id
            p["enterprise_ids"] = list(dict.fromkeys(parties))
            p["region_prefixes"] = _prefixes(plant.region, mill.region)
            p["facility_ids"] = [plant.id, mill.id]
    if received:
        items = [
            {
                "lot_id": p["id"],
                "dispatched_g": p["net_g"],
                "received_g": p["net_g"],
                "refused_g": 0,
                "difference_g": 0,
                "refusal_reason": None,
                "refused_lot_id": None,
            }
            for p in products
        ]
        receipt = {
            "status": "received",
            "received_at": arrives,
            "weighbridge_ticket_no": ticket,
            "items": items,
        }
        events.append(
            _event(c.processor, "shipment.received", shipment_id, arrives, receipt, **where)
        )
    return events


COPY_ORDER = (
    "transformation",
    "lot",
    "transformation_input",
    "transformation_primary_input",
    "transformation_output",
    "transformation_loss",
    "lot_source",
    "shipment",
    "shipment_item",
    "credit_tranche",
    "credit_entry",
    "credit_account",
    "ev_stage",
)


# The tables that grow with the lots; their secondary indexes are rebuilt after a large load.
BULK_TABLES = (
    "lot", "event", "lot_source", "shipment", "shipment_item", "transformation",
    "transformation_input", "transformation_output", "credit_tranche", "credit_entry",
)  # fmt: skip
SECONDARY_INDEXES = """
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS ddl
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relname = ANY($1::text[]) AND t.relnamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
ORDER BY t.relname, c.relname
"""


async def _build(
    dsn: str, province: Province, chains: list[Chain], seed: int, *, bulk: bool
) -> dict[str, float]:
    """Write the chains' year in bulk; returns seconds per step. With `bulk`, the secondary
    indexes of the growing tables are dropped first and built again at the end (the same
    definitions, read from the catalogue), as a bulk load does, and the chains are loaded on
    two connections at once (split by smelter, whose ledger runs through its chains)."""
    rng = random.Random(seed)
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        start = await conn.fetchval("SELECT nextval('lot_code_seq')")
        need = sum(c.serials for c in chains)
        await conn.execute(f"SELECT setval('lot_code_seq', {int(start) + 100 * (need // 100 + 1)})")
        serial = int(start)
        for c in chains:
            c.serial0 = serial
            serial += c.serials
        indexes = await conn.fetch(SECONDARY_INDEXES, list(BULK_TABLES)) if bulk else []
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["name"]}"')
    finally:
        await conn.close()

    groups: dict[uuid.UUID, list[Chain]] = {}
    for c in chains:
        groups.setdefault(c.smelter.enterprise_id, []).append(c)
    parts: list[list[Chain]] = [[], []] if bulk else [[]]
    for group in sorted(groups.values(), key=lambda g: -sum(c.n for c in g)):
        min(parts, key=lambda part: sum(c.n for c in part)).extend(group)
    started = time.perf_counter()
    steps = await asyncio.gather(
        *(_load(dsn, province, part, rng.randrange(1 << 30)) for part in parts if part)
    )
    timings["load"] = round(time.perf_counter() - started, 1)
    for name in steps[0] if steps else ():
        timings[f"load: {name}"] = max(step[name] for step in steps)
    if indexes:
        started = time.perf_counter()
        await _in_parallel(dsn, [index["ddl"] for index in indexes])
        timings["indexes"] = round(time.perf_counter() - started, 1)
    return timings


async def _in_parallel(dsn: str, statements: list[str], connections: int = 2) -> None:
    """Run statements on a few connections, each taking the next as it finishes."""
    queue = list(reversed(statements))

    async def worker() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET maintenance_work_mem = '1GB'")
            while queue:
                await conn.execute(queue.pop())
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def _load(dsn: str, province: Province, chains: list[Chain], seed: int) -> dict[str, float]:
    """One transaction: plan the chains' year in temporary tables, then write it."""
    rng = random.Random(seed)
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET work_mem = '512MB'")
        async with conn.transaction():
            if await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
                # Foreign keys hold by construction (and `--check` proves it): not checked row
                # by row, as in a restore.
                await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(FUNCTIONS)
            await conn.execute(f"SELECT setseed({rng.random() - 0.5})")
            chain_rows, cp_rows = _chain_rows(chains, province.t0, rng)
            await conn.copy_records_to_table("bench_chain", records=chain_rows)
            await conn.copy_records_to_table("bench_cp", records=cp_rows)
            await _check_codes(conn)
            now = f"'{province.t0.isoformat()}'::timestamptz"

            async def step(name: str, sql: str) -> None:
                started = time.perf_counter()
                await conn.execute(sql.replace("$1", now))
                timings[name] = round(timings.get(name, 0) + time.perf_counter() - started, 1)

            for sql in (SCRAP_SQL, SHIP1_SQL, RUN1_SQL, SHIP2_SQL):
                await step("plan", sql)
            started = time.perf_counter()
            melts = [dict(r) for r in await conn.fetch(MELTS_SQL)]
            written = _melts({c.index: c for c in chains}, melts, province.t0, rng)
            timings["melts"] = round(time.perf_counter() - started, 1)
            await step("lots", LOTS_SQL)
            await step("shipments", SHIPMENTS_SQL)
            await step("runs", RUNS_SQL)
            started = time.perf_counter()
            for table in COPY_ORDER:
                if table in written.rows:
                    await conn.copy_records_to_table(
                        table, records=written.rows[table], columns=list(written.columns[table])
                    )
            timings["melts"] = round(timings["melts"] + time.perf_counter() - started, 1)
            await step("events", EVENTS_SQL)
    finally:
        await conn.close()
    return timings


async def _check_codes(conn: asyncpg.Connection) -> None:
    """The SQL lot codes are the service's `lot_code`."""
    from domain.lots.rules import Metal, lot_code

    for serial in (100, 123_456, 987_654_321):
        at = datetime(2026, 3, 1, tzinfo=UTC)
        sql = await conn.fetchval("SELECT pg_temp.lot_code('aluminium', $1, $2)", at, serial)
        assert sql == lot_code(Metal.aluminium, 2026, serial), (sql, serial)


async def _vacuum(dsn: str) -> float:
    """VACUUM ANALYZE every table, largest first, two at a time."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'r'"
            " AND relnamespace = 'public'::regnamespace ORDER BY pg_relation_size(oid) DESC"
        )
    finally:
        await conn.close()
    await _in_parallel(dsn, [f'VACUUM (ANALYZE) "{t["relname"]}"' for t in tables])
    return round(time.perf_counter() - started, 1)


# --- what is measured --------------------------------------------------------------------------


@dataclass
class Targets:
    recycler: uuid.UUID
    smelter: uuid.UUID
    pretreatment_centre: uuid.UUID
    product: uuid.UUID
    period: tuple[datetime, datetime]
    month_lots: int  # collected by the measured recycler in the period
    month_melts: int  # melts at the measured smelter in the period


async def _targets(dsn: str, province: Province) -> Targets:
    measured = province.chains[0]
    local = province.t0.astimezone(CST)
    end = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (end - timedelta(days=1)).replace(day=1)
    conn = await asyncpg.connect(dsn)
    try:
        cps = [s.id for s in measured.recycler.sites]
        month_lots = await conn.fetchval(
            "SELECT count(*) FROM lot WHERE registered_facility_id = ANY($1::uuid[])"
            " AND registered_at >= $2 AND registered_at < $3",
            cps,
            start,
            end,
        )
        month_melts = await conn.fetchval(
            "SELECT count(*) FROM transformation WHERE facility_id = $1"
            " AND ended_at >= $2 AND ended_at < $3",
            measured.smelter.sites[0].id,
            start,
            end,
        )
        # A product of the month, made from three truckloads of 20 lots each.
        product = await conn.fetchval(
            "SELECT id FROM lot WHERE registered_facility_id = $1 AND kind = 'product'"
            " AND registered_at < $2 ORDER BY registered_at DESC LIMIT 1",
            measured.smelter.sites[0].id,
            end,
        )
    finally:
        await conn.close()
    return Targets(
        measured.recycler.enterprise_id,
        measured.smelter.enterprise_id,
        measured.pc.id,
        product,
        (start, end),
        int(month_lots),
        int(month_melts),
    )


REPORTS = ("flows", "indicators", "anomalies")
REPORT_ROUTES = {f"/api/v1/reports/{report}" for report in REPORTS}


def _requests(
    targets: Targets, province: Province
) -> dict[str, tuple[str, dict[str, Any], str, str]]:
    """Name → (path, query, whose key, route template)."""
    start, end = (t.isoformat() for t in targets.period)
    period = {"from": start, "to": end}
    smelter, recycler = targets.smelter, targets.recycler
    return {
        "control: GET /enterprises/{id}": (
            f"/api/v1/enterprises/{smelter}", {}, "smelter", "/api/v1/enterprises/{enterprise_id}"
        ),
        "statement, smelter, 1 month": (
            f"/api/v1/enterprises/{smelter}/statement", period, "smelter",
            "/api/v1/enterprises/{enterprise_id}/statement",
        ),
        "statement, recycler, 1 month": (
            f"/api/v1/enterprises/{recycler}/statement", period, "recycler",
            "/api/v1/enterprises/{enterprise_id}/statement",
        ),
        "credits, smelter": (
            f"/api/v1/enterprises/{smelter}/credits", {}, "smelter",
            "/api/v1/enterprises/{enterprise_id}/credits",
        ),
        "lineage upstream (product)": (
            f"/api/v1/lots/{targets.product}/lineage", {"direction": "upstream"}, "smelter",
            "/api/v1/lots/{lot_id}/lineage",
        ),
        "lots at a facility, 1st page": (
            "/api/v1/lots", {"facility_id": str(targets.pretreatment_centre)}, "recycler",
            "/api/v1/lots",
        ),
        "register, pretreatment centre, 1 month": (
            f"/api/v1/facilities/{targets.pretreatment_centre}/register",
            {"direction": "incoming", **period}, "recycler",
            "/api/v1/facilities/{facility_id}/register",
        ),
        **{
            f"{report}, province, 12 months": (
                f"/api/v1/reports/{report}", {}, "province", f"/api/v1/reports/{report}"
            )
            for report in REPORTS
        },
    }  # fmt: skip


def _measure(
    port: int, targets: Targets, province: Province, repeat: int, report_repeat: int
) -> dict[str, dict[str, Any]]:
    """Every endpoint in turn, `repeat` rounds (after 3 warm-up rounds), so that whatever else
    the machine does falls on all of them alike; the province's reports, which read the whole
    province's year, only in the first `report_repeat` rounds."""
    requests = _requests(targets, province)
    timings: dict[str, list[float]] = {name: [] for name in requests}
    statuses: dict[str, set[int]] = {name: set() for name in requests}
    last: dict[str, httpx.Response] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120, trust_env=False) as http:
        paths = http.get("/openapi.json").json().get("paths", {})
        missing = {name for name, (_, _, _, route) in requests.items() if route not in paths}
        for round_ in range(repeat + 3):
            for name, (path, params, who, route) in requests.items():
                if name in missing or (route in REPORT_ROUTES and round_ >= report_repeat + 3):
                    continue
                headers = {"Authorization": f"Bearer {province.keys[who]}"}
                started = time.perf_counter()
                response = http.get(path, params=params, headers=headers)
                elapsed = time.perf_counter() - started
                statuses[name].add(response.status_code)
                last[name] = response
                if round_ >= 3:
                    timings[name].append(elapsed)
    results: dict[str, dict[str, Any]] = {}
    for name in requests:
        if name in missing:
            results[name] = {"status": "not available"}
        elif statuses[name] != {200}:
            results[name] = {"status": sorted(statuses[name]), "body": last[name].text[:300]}
        else:
            times = sorted(timings[name])
            results[name] = {
                "status": 200,
                "bytes": len(last[name].content),
                "p50_ms": round(statistics.median(times) * 1000, 1),
                "p95_ms": round(times[max(0, math.ceil(0.95 * len(times)) - 1)] * 1000, 1),
                "max_ms": round(times[-1] * 1000, 1),
            }
    lineage = last.get("lineage upstream (product)")
    if lineage is not None and lineage.status_code == 200:
        body = lineage.json()
        ends = sum(lot["kg"] for lot in body["lots"] if lot["end"])
        results["lineage upstream (product)"]["kg_balance_ok"] = (
            round(ends + body["primary_kg"], 3) == body["net_kg"]
        )
        results["lineage upstream (product)"]["ancestors"] = len(body["lots"])
    return results


# --- consistency -------------------------------------------------------------------------------

# Each query counts rows that break what the services guarantee; all must be 0. Set-based
# (hash joins over whole tables), so that they also run at a million lots.
CHECKS = {
    "foreign keys": """
SELECT (SELECT count(*) FROM lot l LEFT JOIN facility f ON f.id = l.holder_facility_id
            AND f.enterprise_id = l.holder_enterprise_id WHERE f.id IS NULL)
     + (SELECT count(*) FROM lot l LEFT JOIN facility f ON f.id = l.registered_facility_id
            WHERE f.id IS NULL)
     + (SELECT count(*) FROM shipment_item i LEFT JOIN lot l ON l.id = i.lot_id
            LEFT JOIN shipment s ON s.id = i.shipment_id WHERE l.id IS NULL OR s.id IS NULL)
     + (SELECT count(*) FROM transformation_input i LEFT JOIN lot l ON l.id = i.lot_id
            LEFT JOIN transformation t ON t.id = i.transformation_id
            WHERE l.id IS NULL OR t.id IS NULL)
     + (SELECT count(*) FROM transformation_output o LEFT JOIN lot l ON l.id = o.lot_id
            LEFT JOIN transformation t ON t.id = o.transformation_id
            WHERE l.id IS NULL OR t.id IS NULL)
     + (SELECT count(*) FROM lot_source s LEFT JOIN lot l ON l.id = s.lot_id
            LEFT JOIN lot f ON f.id = s.source_lot_id
            LEFT JOIN transformation t ON t.id = s.transformation_id
            WHERE l.id IS NULL OR f.id IS NULL OR t.id IS NULL)
     + (SELECT count(*) FROM credit_entry e LEFT JOIN credit_tranche t ON t.id = e.tranche_id
            AND t.lot_id = e.lot_id AND t.enterprise_id = e.enterprise_id WHERE t.id IS NULL)
     + (SELECT count(*) FROM credit_tranche c LEFT JOIN lot l ON l.id = c.lot_id
            LEFT JOIN transformation t ON t.id = c.transformation_id
            WHERE l.id IS NULL OR t.id IS NULL)
""",
    "who may see a lot": """
SELECT count(*) FROM lot l JOIN facility f ON f.id = l.holder_facility_id
WHERE NOT l.enterprise_ids @> ARRAY[l.holder_enterprise_id]
   OR NOT l.facility_ids @> ARRAY[l.holder_facility_id, l.registered_facility_id]
   OR NOT l.region_prefixes @> ARRAY[left(f.region_code, 2), left(f.region_code, 4),
                                     f.region_code]::varchar[]
""",
    "custody follows the last shipment": """
SELECT count(*) FROM lot l
LEFT JOIN (SELECT DISTINCT ON (i.lot_id) i.lot_id, s.status, s.from_facility_id,
                  s.to_facility_id
           FROM shipment_item i JOIN shipment s ON s.id = i.shipment_id
           ORDER BY i.lot_id, s.dispatched_at DESC) s ON s.lot_id = l.id
WHERE (l.status = 'in_transit') <> (s.status IS NOT DISTINCT FROM 'dispatched')
   OR (s.status = 'received' AND l.holder_facility_id <> s.to_facility_id)
   OR (s.status = 'dispatched' AND l.holder_facility_id <> s.from_facility_id)
   OR (s.lot_id IS NULL AND l.holder_facility_id <> l.registered_facility_id)
""",
    "consumed means taken by a run": """
SELECT count(*) FROM lot l
LEFT JOIN (SELECT DISTINCT lot_id FROM transformation_input) i ON i.lot_id = l.id
WHERE (l.status = 'consumed') <> (i.lot_id IS NOT NULL)
""",
    "runs balance": """
SELECT count(*) FROM transformation t
LEFT JOIN (SELECT transformation_id, sum(taken_g) AS g FROM transformation_input
           GROUP BY 1) i ON i.transformation_id = t.id
LEFT JOIN (SELECT o.transformation_id, sum(l.net_g) AS g FROM transformation_output o
           JOIN lot l ON l.id = o.lot_id GROUP BY 1) o ON o.transformation_id = t.id
LEFT JOIN (SELECT transformation_id, sum(grams) AS g FROM transformation_loss
           GROUP BY 1) x ON x.transformation_id = t.id
LEFT JOIN (SELECT transformation_id, sum(grams) AS g FROM transformation_primary_input
           GROUP BY 1) p ON p.transformation_id = t.id
WHERE i.g IS DISTINCT FROM t.input_g OR o.g IS DISTINCT FROM t.output_g
   OR x.g IS DISTINCT FROM t.loss_g OR coalesce(p.g, 0) <> t.primary_g
""",
    "lineage shares": """
SELECT count(*) FROM lot l
JOIN transformation_output o ON o.lot_id = l.id
JOIN transformation t ON t.id = o.transformation_id
JOIN (SELECT lot_id, sum(grams) AS g FROM lot_source GROUP BY 1) s ON s.lot_id = l.id
-- the inputs' grams are the mass less the primary metal's share, to the gram (both rounded)
WHERE abs(s.g - (l.net_g - l.primary_g)) > 1 OR (t.primary_g = 0 AND s.g <> l.net_g)
""",
    "ledger": """
SELECT count(*) FROM credit_account a
-- (credits only, so the balance after the last entry is the largest: ids made in the same
-- millisecond are not in order, by the service either)
LEFT JOIN (SELECT enterprise_id, metal, recycled_class, sum(grams) AS g,
                  max(balance_after_g) AS last
           FROM credit_entry GROUP BY 1, 2, 3) e USING (enterprise_id, metal, recycled_class)
LEFT JOIN (SELECT enterprise_id, metal, recycled_class, sum(remaining_g) AS g
           FROM credit_tranche GROUP BY 1, 2, 3) t USING (enterprise_id, metal, recycled_class)
WHERE a.balance_g <> coalesce(e.g, 0) OR a.balance_g <> coalesce(t.g, 0)
   OR a.balance_g <> coalesce(e.last, 0)
""",
    "every change has its event": """
SELECT (SELECT count(*) FROM lot l
        LEFT JOIN (SELECT lot_id, min(dispatched_g) AS g FROM shipment_item GROUP BY 1) i
               ON i.lot_id = l.id
        LEFT JOIN (SELECT subject_id, count(*) AS n, min((payload ->> 'net_g')::bigint) AS g
                   FROM event WHERE type = 'lot.registered' GROUP BY 1) e
               ON e.subject_id = l.id::text
        WHERE l.collected_at IS NOT NULL
          AND (e.n IS DISTINCT FROM 1 OR e.g <> coalesce(i.g, l.net_g)))
     + (SELECT count(*) FROM shipment s
        LEFT JOIN (SELECT subject_id, count(*) AS n FROM event WHERE subject_type = 'shipment'
                   GROUP BY 1) e ON e.subject_id = s.id::text
        WHERE e.n IS DISTINCT FROM CASE s.status WHEN 'dispatched' THEN 1 ELSE 2 END)
     + (SELECT count(*) FROM transformation t
        LEFT JOIN event e ON e.subject_type = 'transformation' AND e.subject_id = t.id::text
              AND e.type = 'transformation.recorded'
        WHERE (e.payload ->> 'loss_flagged')::boolean IS DISTINCT FROM t.loss_flagged)
""",
}

RUN_SAMPLE = """
SELECT t.id, t.primary_g, t.loss_g,
       array_agg(i.post_consumer_g ORDER BY i.lot_id) AS posts,
       array_agg(i.pre_consumer_g ORDER BY i.lot_id) AS pres,
       array_agg(i.lot_id ORDER BY i.lot_id) AS inputs
FROM transformation t JOIN transformation_input i ON i.transformation_id = t.id
WHERE t.id IN (SELECT id FROM transformation ORDER BY random() LIMIT 300)
GROUP BY t.id
"""


async def _check(dsn: str) -> dict[str, int]:
    """Violations of what the services guarantee, by rule (all 0 for a sound dataset), and runs
    whose compositions and lineage grams differ from the service's own `pool`."""
    from domain.lots.rules import Composition
    from domain.transformations.rules import pool

    conn = await asyncpg.connect(dsn)
    try:
        found = {name: int(await conn.fetchval(sql)) for name, sql in CHECKS.items()}
        differ = 0
        for run in await conn.fetch(RUN_SAMPLE):
            outputs = await conn.fetch(
                "SELECT l.id, l.net_g, l.post_consumer_g, l.pre_consumer_g, l.primary_g"
                " FROM transformation_output o JOIN lot l ON l.id = o.lot_id"
                " WHERE o.transformation_id = $1",
                run["id"],
            )
            outputs = sorted(outputs, key=lambda o: -o["net_g"])  # the order the runs gave
            loss = await conn.fetchrow(
                "SELECT post_consumer_g, pre_consumer_g, primary_g FROM transformation_loss"
                " WHERE transformation_id = $1",
                run["id"],
            )
            taken = [Composition(a, b, 0) for a, b in zip(run["posts"], run["pres"], strict=True)]
            pooled = pool(taken, run["primary_g"], [o["net_g"] for o in outputs] + [run["loss_g"]])
            made = [Composition(o["post_consumer_g"], o["pre_consumer_g"], o["primary_g"])
                    for o in outputs] + [Composition(*loss)]  # fmt: skip
            edges = {
                (r["lot_id"], r["source_lot_id"]): r["grams"]
                for r in await conn.fetch(
                    "SELECT lot_id, source_lot_id, grams FROM lot_source"
                    " WHERE transformation_id = $1",
                    run["id"],
                )
            }
            expected = {
                (o["id"], lot_id): grams
                for o, row in zip(outputs, pooled.from_inputs, strict=False)
                for lot_id, grams in zip(run["inputs"], row, strict=True)
                if grams > 0
            }
            differ += made != pooled.compositions or edges != expected
        found["runs that differ from pool()"] = differ
        return found
    finally:
        await conn.close()


# --- the run -----------------------------------------------------------------------------------


async def _count(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        counts = {}
        for table in ("lot", "event", "shipment", "transformation", "credit_entry", "enterprise"):
            counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
        return counts
    finally:
        await conn.close()


async def _grow(
    url: str, dsn: str, province: Province, lots: int, measured: bool, rng: random.Random
) -> dict[str, Any]:
    """Add chains until the database holds about `lots` lots (a chain of n scrap lots makes
    about 1.08 n lots: one pretreated lot per 20, two products per 60)."""
    started = time.perf_counter()
    have = (await _count(dsn))["lot"]
    n = max(province.size, 60)
    scrap = max(0, int((lots - have) / (1 + 1 / LOTS_PER_TRUCK + 2 / 60)))
    if measured:
        scrap -= n
    others, rest = divmod(max(scrap, 0), n)
    chains = await _chains(url, province, measured, others, n, rng)
    if rest >= 60:
        chains += await _chains(url, province, False, 1, rest, rng)
    registry = round(time.perf_counter() - started, 1)
    bulk = lots - have > 50_000
    timings = await _build(dsn, province, chains, rng.randrange(1 << 30), bulk=bulk)
    timings = {"registry": registry, **timings, "vacuum_analyze": await _vacuum(dsn)}
    timings["total"] = round(time.perf_counter() - started, 1)
    return timings


def _ratio(large: dict[str, Any], small: dict[str, Any], key: str) -> str:
    if "p50_ms" not in large or "p50_ms" not in small:
        return ""
    return f"{large[key] / small[key]:.2f}"


def _print(rows: dict[str, dict[str, Any]], info: dict[str, Any]) -> None:
    print(
        f"\nread benchmark: {os.cpu_count()} cores; one request at a time, {info['repeat']} per"
        " endpoint and size after 3 warm-up requests; same server and database, grown in place"
    )
    print(
        f"the queried enterprises' month ({info['period']}) holds {info['month_lots']} lots"
        f" collected by the recycler and {info['month_melts']} melts at the smelter in both"
        f" datasets; the database holds {info['small_lots']:,} / {info['large_lots']:,} lots"
        f" ({info['small_events']:,} / {info['large_events']:,} events)"
    )
    small_load, large_load = info["load_average"]["small"], info["load_average"]["large"]
    print(
        "load average (1 min) before and after timing: small"
        f" {small_load[0]:.1f} / {small_load[1]:.1f}, large {large_load[0]:.1f} /"
        f" {large_load[1]:.1f} (the control row shows what the machine did between the two)"
    )
    print("endpoint | small p50 ms | p95 | max | large p50 ms | p95 | max | ratio p50 | ratio p95")
    for name, row in rows.items():
        small, large = row["small"], row["large"]
        if "p50_ms" not in small or "p50_ms" not in large:
            print(f"{name} | {small.get('status')} | | | {large.get('status')} | | | |")
            continue
        print(
            f"{name} | {small['p50_ms']} | {small['p95_ms']} | {small['max_ms']} | "
            f"{large['p50_ms']} | {large['p95_ms']} | {large['max_ms']} | "
            f"{_ratio(large, small, 'p50_ms')} | {_ratio(large, small, 'p95_ms')}"
        )
    print(f"build seconds: small {info['build_small']}; growth {info['build_large']}")
    for size, found in info["checks"].items():
        broken = {rule: n for rule, n in found.items() if n}
        print(f"dataset check ({size}): {broken or 'every rule holds'}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10_000, help="lots in the first database")
    parser.add_argument("--large", type=int, default=1_000_000, help="lots after growing it")
    parser.add_argument("--repeat", type=int, default=200, help="timed requests per endpoint")
    parser.add_argument(
        "--report-repeat", type=int, default=10, help="timed requests per province report"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--check",
        action="store_true",
        help="after each build, check the dataset against the services' rules (slow at 1M)",
    )
    return parser


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build `--small` lots, time the reads; grow to `--large`, time them again."""
    if args.large <= args.small or args.small < 200:
        raise ValueError("need 200 <= --small < --large")
    rng = random.Random(args.seed)
    with database("reads") as url:
        dsn_ = dsn(url)
        province = Province(size=args.small // 2)
        build_small = asyncio.run(_grow(url, dsn_, province, args.small, True, rng))
        small_counts = asyncio.run(_count(dsn_))
        checks = {"small": asyncio.run(_check(dsn_))} if args.check else {}
        targets = asyncio.run(_targets(dsn_, province))
        # The sealer is left to `scrapflow worker`: sealing the bulk-built history is the audit
        # part's business and would compete for the same cores.
        with serve(url, settings={"SCRAPFLOW_SEALER_IN_API": "false"}) as port:
            load = {"small": [os.getloadavg()[0]]}
            small = _measure(port, targets, province, args.repeat, args.report_repeat)
            load["small"].append(os.getloadavg()[0])
            build_large = asyncio.run(_grow(url, dsn_, province, args.large, False, rng))
            large_counts = asyncio.run(_count(dsn_))
            if args.check:
                checks["large"] = asyncio.run(_check(dsn_))
            large_targets = asyncio.run(_targets(dsn_, province))
            assert (large_targets.month_lots, large_targets.month_melts) == (
                targets.month_lots,
                targets.month_melts,
            ), "the measured enterprises' month changed with the growth"
            load["large"] = [os.getloadavg()[0]]
            large = _measure(port, targets, province, args.repeat, args.report_repeat)
            load["large"].append(os.getloadavg()[0])

    start, end = targets.period
    info = {
        "repeat": args.repeat,
        "report_repeat": args.report_repeat,
        "period": f"{start:%Y-%m-%d} to {end - timedelta(days=1):%Y-%m-%d}",
        "month_lots": targets.month_lots,
        "month_melts": targets.month_melts,
        "small_lots": small_counts["lot"],
        "large_lots": large_counts["lot"],
        "small_events": small_counts["event"],
        "large_events": large_counts["event"],
        "build_small": build_small,
        "build_large": build_large,
        "counts": {"small": small_counts, "large": large_counts},
        "checks": checks,
        "load_average": load,
    }
    rows = {name: {"small": small[name], "large": large[name]} for name in small}
    return {"rows": rows, "info": info}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    result = measure(args)
    _print(result["rows"], result["info"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
