"""Write benchmark (issues 3 and 8): the real server against the floor, in one run.

    .venv/bin/python -m tests.bench.run [--requests 4000] [--shipments 2000] [--concurrency 64]
                                        [--batches 5] [--workers 1]

On a fresh database: seeds a recycler with a collection point and a pretreater with a
pretreatment centre (each with an operator API key), then starts two servers on loopback with the
same number of worker processes: the real one (`scrapflow serve`, production settings, real auth)
and the floor (tests/bench/floor.py, the same writes, nothing else). The same load generator drives
both at `--concurrency` connections: registration (POST /api/v1/lots), then dispatch (POST
/api/v1/shipments, `--lots-per-shipment` lots registered before) and receipt (POST
/api/v1/shipments/{id}/receipt, every lot weighed as dispatched), and batch registration on the
real server. Absolute numbers on shared machines are noise; the ratio in the same run is the
figure."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tests.bench import loadgen
from tests.bench.server import BIN, ROOT, database, dsn, free_port, serve, wait_ready

HOST = "127.0.0.1"


@dataclass
class Seed:
    enterprise_id: str
    facility_id: str
    api_key: str


async def _seed(
    url: str,
    name: str = "bench recycler",
    role: str = "recycler",
    kind: str = "collection_point",
    region: str = "520102",
) -> Seed:
    """An enterprise with one facility and an operator API key, through the services."""
    from domain.actor import SYSTEM, Role
    from domain.identity import service as identity
    from domain.registry import service as registry
    from integrations.database import create_engine, session_factory
    from tests.factories import random_uscc

    engine = create_engine(url, pool_size=1)
    async with session_factory(engine)() as session:
        enterprise = await registry.create_enterprise(
            session, SYSTEM, name=name, uscc=random_uscc(), roles=[role], region_code=region
        )
        facility = await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=enterprise.id,
            name=f"{name} {kind}",
            kind=kind,
            region_code=region,
            address="bench",
        )
        _, secret = await identity.create_api_key(
            session,
            SYSTEM,
            name="bench",
            role=Role.operator,
            owner=identity.Owner(enterprise.id, None),
            expires_at=None,
        )
        await session.commit()
    await engine.dispose()
    return Seed(str(enterprise.id), str(facility.id), secret)


def lot(seed: Seed) -> dict[str, Any]:
    return {
        "facility_id": seed.facility_id,
        "metal": "aluminium",
        "category": "GB13586-WROUGHT",
        "net_kg": 812.345,
        "consumer_class": "post_consumer",
        "channel": "offline",
        "collected_at": "2026-11-20T08:00:00+08:00",
        "seller": {"kind": "individual", "name": "王小明", "id_number": "52010219900101123X"},
    }


def _row(name: str, result: loadgen.Result, floor: loadgen.Result | None = None) -> dict[str, Any]:
    row = {
        "path": name,
        "requests": len(result.latencies),
        "non_2xx": sum(n for s, n in result.statuses.items() if not 200 <= s < 300),
        "per_s": round(result.throughput, 1),
        "p50_ms": round(result.percentile(50) * 1000, 1),
        "p99_ms": round(result.percentile(99) * 1000, 1),
    }
    if floor is not None:
        row["ratio_to_floor"] = round(result.throughput / floor.throughput, 3)
    return row


@contextmanager
def _floor(url: str, workers: int) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPFLOW_")}
    process = subprocess.Popen(
        [str(BIN / "uvicorn"), "tests.bench.floor:app", "--port", str(port), "--log-level",
         "warning", "--no-access-log", "--workers", str(workers)],
        env={**env, "BENCH_DSN": dsn(url), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(port, "/lots", process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


class _Bench:
    """Both servers driven alike: warm-up requests first (connections, pools, caches), then the
    measured ones; the floor first, then the service."""

    def __init__(self, args: argparse.Namespace, ports: dict[str, int]) -> None:
        self.args, self.ports = args, ports

    async def drive(self, side: str, requests: list[bytes]) -> loadgen.Result:
        return await loadgen.run(
            HOST,
            self.ports[side],
            lambda n: requests[n],
            total=len(requests),
            concurrency=self.args.concurrency,
        )

    async def compare(
        self, name: str, floor: list[bytes], ours: list[bytes]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        warm = self.args.warmup
        await self.drive("floor", floor[:warm])
        await self.drive("ours", ours[:warm])
        floor_result = await self.drive("floor", floor[warm:])
        ours_result = await self.drive("ours", ours[warm:])
        return _row(f"floor: {name}", floor_result), _row(name, ours_result, floor_result)


async def _movable_lots(url: str, facility_id: str, count: int) -> list[str]:
    conn = await asyncpg.connect(dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT id FROM lot WHERE holder_facility_id = $1 AND status = 'active'"
            " ORDER BY id LIMIT $2",
            facility_id,
            count,
        )
        return [str(row["id"]) for row in rows]
    finally:
        await conn.close()


Dispatched = tuple[str, list[tuple[str, int]]]  # a shipment, its lots and their grams


async def _dispatched(url: str, carrier: str) -> list[Dispatched]:
    """The shipments of one side (told apart by carrier), with their lots' dispatched grams."""
    conn = await asyncpg.connect(dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT s.id, array_agg(i.lot_id ORDER BY i.lot_id) AS lots,"
            " array_agg(i.dispatched_g ORDER BY i.lot_id) AS grams"
            " FROM shipment s JOIN shipment_item i ON i.shipment_id = s.id"
            " WHERE s.carrier = $1 AND s.status = 'dispatched' GROUP BY s.id ORDER BY s.id",
            carrier,
        )
        return [
            (str(r["id"]), [(str(i), g) for i, g in zip(r["lots"], r["grams"], strict=True)])
            for r in rows
        ]
    finally:
        await conn.close()


async def _measure(
    args: argparse.Namespace, url: str, seeds: dict[str, Seed], ports: dict[str, int]
) -> dict[str, dict[str, Any]]:
    sender, receiver = seeds["sender"], seeds["receiver"]
    bench = _Bench(args, ports)
    ours_auth = {"Authorization": f"Bearer {sender.api_key}"}
    floor_auth = {"X-Enterprise": sender.enterprise_id}
    total = args.warmup + args.requests
    rows: dict[str, dict[str, Any]] = {}

    body = lot(sender)
    rows["registration_floor"], rows["registration"] = await bench.compare(
        "POST /api/v1/lots",
        [loadgen.post("/lots", body, floor_auth)] * total,
        [loadgen.post("/api/v1/lots", body, ours_auth)] * total,
    )

    batch_body = {"lots": [body] * args.batch_size}
    batch_request = loadgen.post("/api/v1/lots/batch", batch_body, ours_auth)
    await loadgen.run(HOST, ports["ours"], lambda _: batch_request, total=1, concurrency=1)
    batch = await loadgen.run(
        HOST,
        ports["ours"],
        lambda _: batch_request,
        total=args.batches,
        concurrency=args.workers,  # one batch in flight per server process
    )
    rows["batch"] = _row(
        f"POST /api/v1/lots/batch ({args.batch_size} lots, {args.workers} at a time)", batch
    )
    rows["batch"]["lots_per_s"] = round(args.batch_size * batch.throughput)

    # Dispatch: each side its own lots, `--lots-per-shipment` to a shipment.
    per = args.lots_per_shipment
    shipments = args.warmup + args.shipments
    have = await _movable_lots(url, sender.facility_id, 2 * shipments * per)
    short = 2 * shipments * per - len(have)
    if short > 0:  # registered through the real batch path
        top_up = loadgen.post("/api/v1/lots/batch", {"lots": [body] * 1000}, ours_auth)
        await loadgen.run(
            HOST, ports["ours"], lambda _: top_up, total=-(-short // 1000), concurrency=1
        )
        have = await _movable_lots(url, sender.facility_id, 2 * shipments * per)
    groups = [have[k : k + per] for k in range(0, 2 * shipments * per, per)]

    def dispatch(path: str, lots: list[str], carrier: str, auth: dict[str, str]) -> bytes:
        order = {
            "from_facility_id": sender.facility_id,
            "to_facility_id": receiver.facility_id,
            "lot_ids": lots,
            "carrier": carrier,
        }
        return loadgen.post(path, order, auth)

    name = f"POST /api/v1/shipments ({per} lots)"
    rows["dispatch_floor"], rows["dispatch"] = await bench.compare(
        name,
        [dispatch("/shipments", g, "floor", floor_auth) for g in groups[:shipments]],
        [dispatch("/api/v1/shipments", g, "bench", ours_auth) for g in groups[shipments:]],
    )

    def receipt(prefix: str, shipment: Dispatched, auth: dict[str, str]) -> bytes:
        shipment_id, lots = shipment
        items = [{"lot_id": i, "received_kg": g / 1000} for i, g in lots]
        return loadgen.post(f"{prefix}/{shipment_id}/receipt", {"items": items}, auth)

    name = f"POST /api/v1/shipments/{{id}}/receipt ({per} lots)"
    rows["receipt_floor"], rows["receipt"] = await bench.compare(
        name,
        [
            receipt("/shipments", s, {"X-Enterprise": receiver.enterprise_id})
            for s in await _dispatched(url, "floor")
        ],
        [
            receipt("/api/v1/shipments", s, {"Authorization": f"Bearer {receiver.api_key}"})
            for s in await _dispatched(url, "bench")
        ],
    )
    return rows


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000, help="registrations, each side")
    parser.add_argument("--shipments", type=int, default=2000, help="dispatches and receipts")
    parser.add_argument("--lots-per-shipment", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes, for both servers alike"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    return parser


def measure(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every write path against its floor, on a database of its own."""
    with database("writes") as url:
        seeds = {
            "sender": asyncio.run(_seed(url)),
            "receiver": asyncio.run(
                _seed(url, "bench pretreater", "pretreater", "pretreatment_center", "520302")
            ),
        }
        with serve(url, workers=args.workers) as ours, _floor(url, args.workers) as floor:
            return asyncio.run(_measure(args, url, seeds, {"ours": ours, "floor": floor}))


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    args = parser().parse_args(argv)
    rows = measure(args)
    print(
        f"\nwrite benchmark: {args.workers} worker(s) per server, {args.concurrency} connections,"
        f" {args.requests} registrations, {args.shipments} dispatches and receipts,"
        f" {args.batches} batches of {args.batch_size}; {os.cpu_count()} cores"
    )
    columns = ["path", "requests", "non_2xx", "per_s", "p50_ms", "p99_ms", "ratio_to_floor",
               "lots_per_s"]  # fmt: skip
    print(" | ".join(columns))
    for row in rows.values():
        print(" | ".join(str(row.get(c, "")) for c in columns))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
