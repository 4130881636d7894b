"""Registration benchmark (issue 3): the real server against the floor, in one run.

    .venv/bin/python -m tests.bench.run [--requests 4000] [--concurrency 64] [--batches 5]

Starts an embedded PostgreSQL (or uses BENCH_DATABASE_URL), migrates it, seeds an enterprise
with a collection point and an operator API key, then starts two servers on loopback: the real
one (`scrapflow serve`, production settings, real auth) and the floor (tests/bench/floor.py,
same inserts, nothing else). It drives both with the same load generator and prints one table.
Absolute numbers on shared machines are noise; the ratio in the same run is the figure."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from tests.bench import loadgen

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Seed:
    enterprise_id: str
    facility_id: str
    api_key: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _seed(url: str) -> Seed:
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
            name="bench recycler",
            uscc=random_uscc(),
            roles=["recycler"],
            region_code="520102",
        )
        facility = await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=enterprise.id,
            name="bench point",
            kind="collection_point",
            region_code="520102",
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


def _wait_ready(
    port: int, path: str, process: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"server on {port} not ready")


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


async def _measure(
    args: argparse.Namespace, seed: Seed, ports: dict[str, int]
) -> list[dict[str, Any]]:
    body = lot(seed)
    ours_request = loadgen.post("/api/v1/lots", body, {"Authorization": f"Bearer {seed.api_key}"})
    floor_request = loadgen.post("/lots", body, {"X-Enterprise": seed.enterprise_id})
    host = "127.0.0.1"

    async def drive(port: int, request: bytes, total: int) -> loadgen.Result:
        return await loadgen.run(
            host, port, lambda _: request, total=total, concurrency=args.concurrency
        )

    # Warm both (connections, caches, JIT-free Python still warms its pools), then measure.
    await drive(ports["floor"], floor_request, args.warmup)
    await drive(ports["ours"], ours_request, args.warmup)
    floor = await drive(ports["floor"], floor_request, args.requests)
    ours = await drive(ports["ours"], ours_request, args.requests)

    batch_body = {"lots": [body] * args.batch_size}
    batch_request = loadgen.post(
        "/api/v1/lots/batch", batch_body, {"Authorization": f"Bearer {seed.api_key}"}
    )
    await loadgen.run(host, ports["ours"], lambda _: batch_request, total=1, concurrency=1)
    batch = await loadgen.run(
        host,
        ports["ours"],
        lambda _: batch_request,
        total=args.batches,
        concurrency=args.workers,  # one batch in flight per server process
    )
    batch_row = _row(
        f"POST /api/v1/lots/batch ({args.batch_size} lots, {args.workers} at a time)", batch
    )
    batch_row["lots_per_s"] = round(args.batch_size * batch.throughput)
    return [
        _row("floor: Starlette + asyncpg, same inserts", floor),
        _row("POST /api/v1/lots", ours, floor),
        batch_row,
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes, for both servers alike"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    from integrations.embedded import EmbeddedPostgres, ensure_database
    from integrations.migrate import upgrade

    workdir = Path(tempfile.mkdtemp(prefix="sfb", dir="/tmp"))
    embedded = None
    processes: list[subprocess.Popen[bytes]] = []
    try:
        url = os.environ.get("BENCH_DATABASE_URL")
        if not url:
            embedded = EmbeddedPostgres(workdir)
            embedded.start()
            url = embedded.url("bench")
        asyncio.run(ensure_database(url))
        upgrade(url)
        seed = asyncio.run(_seed(url))
        ports = {"ours": _free_port(), "floor": _free_port()}
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPFLOW_")}
        env.update(
            SCRAPFLOW_WORKERS=str(args.workers),
            DATABASE_URL=url,
            SCRAPFLOW_PORT=str(ports["ours"]),
            SCRAPFLOW_DATA_DIR=str(workdir / "app"),
        )
        processes.append(
            subprocess.Popen(
                [str(BIN / "scrapflow"), "serve"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        processes.append(
            subprocess.Popen(
                [
                    str(BIN / "uvicorn"),
                    "tests.bench.floor:app",
                    "--port",
                    str(ports["floor"]),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--workers",
                    str(args.workers),
                ],
                env={**env, "BENCH_DSN": dsn},
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_ready(ports["ours"], "/readyz", processes[0])
        _wait_ready(ports["floor"], "/lots", processes[1])
        rows = asyncio.run(_measure(args, seed, ports))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    _print(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


def _print(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nregistration benchmark: {args.workers} worker(s) per server, "
        f"{args.requests} requests at {args.concurrency} connections, "
        f"{args.batches} batches of {args.batch_size}; {os.cpu_count()} cores"
    )
    columns = [
        "path",
        "requests",
        "non_2xx",
        "per_s",
        "p50_ms",
        "p99_ms",
        "ratio_to_floor",
        "lots_per_s",
    ]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in columns))


if __name__ == "__main__":
    main()
