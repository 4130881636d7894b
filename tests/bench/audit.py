"""Audit trail benchmark (issue 6): chain verification and sealing rates, and sealing against
the highest ingestion rate (batch registration through the real server), in one run.

    .venv/bin/python -m tests.bench.audit [--events 200000] [--batches 12 --workers 2]

On a fresh database: writes `--events` lot.registered events the way batch
registration does (COPY, realistic payloads and arrays, 10,000 per transaction), seals the backlog
with `seal()` in the worker's batches and times it, then times `verify_chain` over the whole chain
(target ≥ 50,000 events/s). Then starts `scrapflow serve` (sealer in the API, as in production)
and posts `--batches` batches of `--batch-size` lots, `--workers` at a time: the ingestion rate,
the sealer's lag sampled meanwhile (unsealed events, age of the oldest), the backlog left unsealed
when ingestion stops and how long the server takes to seal it.
`--profile` prints where verification and sealing spend their time (cProfile)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from tests.bench import loadgen, server
from tests.bench.run import Seed, _seed, lot
from tests.bench.server import database

T = TypeVar("T")
CHUNK = 10_000  # events per COPY transaction
SEAL_BATCH = 5000  # api/worker.py's batch


def _events(seed: Seed, start: int, count: int) -> list[Any]:
    """`count` lot.registered changes as batch registration writes them."""
    from domain.audit.service import Change

    facility = uuid.UUID(seed.facility_id)
    enterprise = uuid.UUID(seed.enterprise_id)
    collected = datetime(2026, 11, 20, tzinfo=UTC)
    changes = []
    for n in range(start, start + count):
        lot_id = uuid.uuid4()
        net_g = 100_000 + (n * 7919) % 5_000_000
        changes.append(
            Change(
                type="lot.registered",
                subject_type="lot",
                subject_id=lot_id,
                enterprise_ids=[enterprise],
                facility_ids=[facility],
                region_codes=["520102"],
                lot_ids=[lot_id],
                payload={
                    "code": f"AL-2026-{n:08d}",
                    "metal": "aluminium",
                    "category": "GB13586-WROUGHT",
                    "net_g": net_g,
                    "post_consumer_g": net_g,
                    "pre_consumer_g": 0,
                    "primary_g": 0,
                    "channel": "offline",
                    "origin": "domestic",
                    "import_country": None,
                    "customs_declaration_no": None,
                    "conformity_standard": None,
                    "collected_at": collected + timedelta(seconds=n),
                    "seller_kind": "individual",
                    "facility_id": facility,
                },
            )
        )
    return changes


async def _bulk_events(url: str, seed: Seed, total: int) -> float:
    from domain.actor import Actor, PrincipalKind, Role
    from domain.audit import service as audit
    from integrations.database import create_engine, session_factory

    actor = Actor(
        principal_id=uuid.uuid4(),
        principal_kind=PrincipalKind.api_key,
        role=Role.operator,
        enterprise_id=uuid.UUID(seed.enterprise_id),
        request_id="bench-" + uuid.uuid4().hex,
    )
    engine = create_engine(url, pool_size=1)
    elapsed = 0.0
    try:
        for start in range(0, total, CHUNK):
            changes = _events(seed, start, min(CHUNK, total - start))
            began = time.perf_counter()
            async with session_factory(engine)() as session:
                await audit.copy_events(session, actor, changes)
                await session.commit()
            elapsed += time.perf_counter() - began
    finally:
        await engine.dispose()
    return elapsed


@dataclass
class Timed:
    seconds: float  # wall
    cpu: float  # this process's CPU: the Python side; the rest is PostgreSQL (or waiting)
    profile: str = ""


async def _profiled(profile: bool, work: Callable[[], Awaitable[T]]) -> tuple[T, Timed]:
    profiler = cProfile.Profile() if profile else None
    began, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    result = await work()
    if profiler:
        profiler.disable()
    timed = Timed(time.perf_counter() - began, time.process_time() - cpu)
    if profiler:
        stream = _Text()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(14)  # type: ignore[arg-type]
        timed.profile = stream.text
    return result, timed


class _Text:
    def __init__(self) -> None:
        self.text = ""

    def write(self, chunk: str) -> None:
        self.text += chunk


async def _seal_backlog(url: str, profile: bool) -> tuple[int, Timed]:
    from domain.audit import service as audit
    from integrations.database import create_engine, session_factory
    from integrations.signing import Ed25519Signer

    signer = Ed25519Signer(os.urandom(32))
    engine = create_engine(url, pool_size=1)

    async def work() -> int:
        sealed = 0
        while True:
            async with session_factory(engine)() as session:
                result = await audit.seal(session, signer, limit=SEAL_BATCH)
                await session.commit()
            sealed += result.count
            if result.count == 0:
                return sealed

    try:
        return await _profiled(profile, work)
    finally:
        await engine.dispose()


async def _verify(url: str, profile: bool) -> tuple[Any, Timed]:
    from domain.audit import service as audit
    from integrations.database import create_engine, session_factory

    engine = create_engine(url, pool_size=3)  # verification reads ahead on two more

    async def work() -> Any:
        async with session_factory(engine)() as session:
            return await audit.verify_chain(session)

    try:
        return await _profiled(profile, work)
    finally:
        await engine.dispose()


async def _vacuum(dsn: str) -> None:
    """What autovacuum does to a sealed backlog sooner or later (sealing updates every row)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE event")
    finally:
        await conn.close()


UNSEALED = """
SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(occurred_at)), 0)::float
FROM event WHERE seq IS NULL
"""


async def _unsealed(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM event WHERE seq IS NULL"))
    finally:
        await conn.close()


async def _until_sealed(dsn: str) -> None:
    unsealed = await _unsealed(dsn)
    while unsealed:
        await asyncio.sleep(0.05)
        unsealed = await _unsealed(dsn)


@dataclass
class Lag:
    """The sealer's lag behind ingestion: unsealed events, and the age of the oldest of them."""

    events: int = 0
    seconds: float = 0.0


async def _watch_lag(dsn: str, stop: asyncio.Event, worst: Lag, every: float = 0.1) -> Lag:
    """Samples the lag until `stop`; keeps the worst in `worst`, returns the last."""
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            events, seconds = await conn.fetchrow(UNSEALED)
            worst.events, worst.seconds = max(worst.events, events), max(worst.seconds, seconds)
            if stop.is_set():
                return Lag(events, seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        await conn.close()


async def _ingest(args: argparse.Namespace, seed: Seed, port: int, dsn: str) -> dict[str, Any]:
    """Batch registration through the real server at full speed while its sealer runs, the lag
    sampled all along; then how long the backlog takes to seal."""
    body = {"lots": [lot(seed)] * args.batch_size}
    request = loadgen.post("/api/v1/lots/batch", body, {"Authorization": f"Bearer {seed.api_key}"})
    await loadgen.run("127.0.0.1", port, lambda _: request, total=1, concurrency=1)  # warm
    await _until_sealed(dsn)  # start from an empty backlog
    stop, worst = asyncio.Event(), Lag()
    watch = asyncio.create_task(_watch_lag(dsn, stop, worst))
    result = await loadgen.run(
        "127.0.0.1", port, lambda _: request, total=args.batches, concurrency=args.workers
    )
    stop.set()
    at_end = await watch
    began = time.perf_counter()
    await _until_sealed(dsn)
    drain = time.perf_counter() - began
    lots = args.batches * args.batch_size
    ingest_s = lots / (args.batch_size * result.throughput)
    return {
        "lots": lots,
        "non_2xx": sum(n for s, n in result.statuses.items() if not 200 <= s < 300),
        "seconds": ingest_s,
        "lots_per_s": args.batch_size * result.throughput,
        "backlog_at_end": at_end.events,
        "lag_at_end_s": at_end.seconds,
        "max_backlog": worst.events,
        "max_lag_s": worst.seconds,
        "drain_s": drain,
        "sealed_per_s_under_load": lots / (ingest_s + drain),
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=12, help="registration batches")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--no-ingest", action="store_true", help="skip the server part")
    parser.add_argument("--repeat", type=int, default=3, help="verification runs")
    parser.add_argument("--profile", action="store_true", help="cProfile sealing and verifying")
    return parser


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Verification and sealing over a bulk-written chain, then sealing against ingestion."""
    result: dict[str, Any] = {"events": args.events, "cores": os.cpu_count()}
    with database("audit") as url:
        seed = asyncio.run(_seed(url))
        dsn = server.dsn(url)
        result["copy_s"] = asyncio.run(_bulk_events(url, seed, args.events))
        sealed, result["seal"] = asyncio.run(_seal_backlog(url, args.profile))
        result["sealed"] = sealed
        asyncio.run(_vacuum(dsn))
        runs = [asyncio.run(_verify(url, args.profile and n == 0)) for n in range(args.repeat)]
        for verification, _ in runs:
            assert verification.valid, verification.broken
            assert verification.events_checked == sealed, (verification, sealed)
        result["verify"] = min((timed for _, timed in runs), key=lambda t: t.seconds)
        result["verify_first"] = runs[0][1]
        result["verify_profile"] = runs[0][1].profile
        result["checkpoints"] = runs[0][0].checkpoints_checked
        if not args.no_ingest:
            with server.serve(url, workers=args.workers) as port:
                result["ingest"] = asyncio.run(_ingest(args, seed, port, dsn))
            final, _ = asyncio.run(_verify(url, False))
            assert final.valid, final.broken
            result["final_verified"] = final.events_checked
    result["load"] = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    result = measure(args)
    _print(result, args)
    if args.profile:
        print("\n--- sealing, by own time ---\n" + result["seal"].profile)
        print("\n--- verification, by own time ---\n" + result["verify_profile"])
    return result


def _print(result: dict[str, Any], args: argparse.Namespace) -> None:
    n = result["events"]
    seal, verify = result["seal"], result["verify"]
    rows: list[tuple[str, int, float, float | None, str]] = [
        ("bulk insert (COPY, 10,000 per transaction)", n, result["copy_s"], None, ""),
        (f"seal() over the backlog, {SEAL_BATCH} per call", result["sealed"], seal.seconds,
         seal.cpu, ">= ingestion"),
        (f"verify_chain, best of {args.repeat}", result["sealed"], verify.seconds, verify.cpu,
         ">= 50,000"),
    ]  # fmt: skip
    ingest = result.get("ingest")
    if ingest:
        rows.append(
            (
                f"batch registration ({args.batch_size} lots, {args.workers} workers)",
                ingest["lots"],
                ingest["seconds"],
                None,
                "",
            )
        )
    print(
        f"\naudit benchmark: {n} lot.registered events; {result['cores']} cores;"
        f" load average {result['load'][0]:.1f} at the end"
    )
    print("measure | events | seconds | events_per_s | python_cpu_events_per_s | target")
    for name, count, seconds, cpu, target in rows:
        cpu_rate = f"{count / cpu:,.0f}" if cpu else ""
        print(f"{name} | {count} | {seconds:.2f} | {count / seconds:,.0f} | {cpu_rate} | {target}")
    first = result["verify_first"]
    print(f"verify_chain, first run: {result['sealed'] / first.seconds:,.0f} events/s")
    if ingest:
        seal_rate = result["sealed"] / seal.seconds
        print(
            f"sealing / ingestion: {seal_rate / ingest['lots_per_s']:.2f}"
            f" (seal() {seal_rate:,.0f} events/s, batch registration"
            f" {ingest['lots_per_s']:,.0f} lots/s); when ingestion stopped"
            f" {ingest['backlog_at_end']} events were unsealed, and the server's sealer had them"
            f" sealed {ingest['drain_s']:.2f} s later; the lag peaked at {ingest['max_backlog']}"
            f" events, the oldest {ingest['max_lag_s']:.2f} s old; non-2xx: {ingest['non_2xx']}"
        )


if __name__ == "__main__":
    main()
