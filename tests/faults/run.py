"""Fault injection under load (DESIGN §7): the real server on a PostgreSQL of its own, thousands of
creating requests each with its own Idempotency-Key, and the database killed (SIGKILL of the
postmaster, then started again on the same data folder) and its connections terminated
(pg_terminate_backend) while they run.

    .venv/bin/python -m tests.faults [--requests 10000] [--concurrency 48] [--batch-every 20]

A request that gets no answer, a connection error, a 5xx or 409 idempotency_in_flight is sent again
with the same key and body until it is acknowledged (201), within a bound. One first attempt in
five is cut off by the client near the end of a typical answer time, so that some writes commit
while their answer is lost: their retry must get the original answer back, not a second lot.
Afterwards: every acknowledged lot is there exactly once, nothing else is, every lot has its event
and its key's record, the audit chain verifies once the sealer has caught up, and /readyz went to
503 during the outage and came back to 200 by itself, the server process never restarted."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.bench.run import Seed, _seed, lot
from tests.bench.server import BIN, ROOT, dsn, free_port, wait_ready
from tests.faults.postgres import Postgres

DATABASE = "faults"
FIRST_MARK_G = 1_000_000  # each lot's net mass in grams is its own mark: 1,000,000 + its number
GIVE_UP_SECONDS = 60.0
Env = dict[str, str]  # a request not acknowledged by then is reported as failed


@dataclass
class Request:
    key: str
    path: str
    body: bytes
    marks: list[int]
    # The client abandons the first attempt after this share of the typical answer time: late
    # enough that the write has often committed, whatever the machine's speed.
    cut_at: float | None


@dataclass
class Tally:
    sent: int = 0
    lots: int = 0
    attempts: int = 0
    acknowledged: int = 0
    retried: int = 0
    replayed: int = 0
    cut_off: int = 0
    typical: float = 0.05  # seconds to an answer: a moving average of first attempts
    connection_errors: Counter[str] = field(default_factory=Counter)  # by httpx error
    answers: Counter[int] = field(default_factory=Counter)  # every answer but 201
    codes: Counter[str] = field(default_factory=Counter)  # their problem codes
    faults: list[str] = field(default_factory=list)
    last_fault: str = "none"
    unavailable: Counter[str] = field(default_factory=Counter)  # 503s after each kind of fault
    failed: list[str] = field(default_factory=list)
    acked: dict[str, list[str]] = field(default_factory=dict)  # key -> lot ids
    acked_marks: dict[int, str] = field(default_factory=dict)  # mark -> lot id


@dataclass
class Readiness:
    """What /readyz answered, polled every 0.1 s."""

    seen: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, status or 0)

    def after(self, moment: float) -> list[int]:
        return [status for at, status in self.seen if at >= moment]


@dataclass
class Outcome:
    tally: Tally
    readiness: Readiness
    killed_at: float = 0.0
    restarted_at: float = 0.0
    found: int = 0
    duplicated: int = 0
    missing: int = 0
    unacknowledged: int = 0
    without_event: int = 0
    keys_recorded: int = 0
    verify: dict[str, Any] = field(default_factory=dict)
    events: int = 0
    same_server: bool = False
    ready_at_end: int = 0
    unhandled_errors: int = 0
    background_failures: int = 0  # failed steps of the sealer and the relay (they retry)
    background_ended: int = 0  # the sealer or the relay gone while the server runs
    sealing_resumed_after: float | None = None  # seconds from the restart to a new sealed event
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds each part of the run took
    log: str = ""  # the server's log

    @property
    def ready_again_after(self) -> float | None:
        """Seconds from the restart to the first 200 of /readyz."""
        for at, status in self.readiness.seen:
            if at >= self.restarted_at and status == 200:
                return round(at - self.restarted_at, 2)
        return None

    def summary(self) -> str:
        t = self.tally
        fives = sum(n for status, n in t.answers.items() if status >= 500)
        return (
            f"faults: sent={t.sent} lots={t.lots} attempts={t.attempts} "
            f"acknowledged={t.acknowledged} retried={t.retried} replayed={t.replayed} "
            f"cut_off={t.cut_off} found={self.found} duplicated={self.duplicated} "
            f"missing={self.missing} unacknowledged_present={self.unacknowledged} "
            f"failed={len(t.failed)} faults_injected={len(t.faults)} ({'; '.join(t.faults)}) "
            f"5xx_seen={fives} answers={dict(sorted(t.answers.items()))} "
            f"codes={dict(t.codes)} connection_errors={dict(t.connection_errors)} "
            f"readyz_503_during_outage={503 in self.readiness.after(self.killed_at)} "
            f"ready_again_after_s={self.ready_again_after} "
            f"sealing_resumed_after_s={self.sealing_resumed_after} "
            f"503_after={dict(t.unavailable)} same_server_pid={self.same_server} "
            f"audit_valid={self.verify.get('valid')} events={self.events} "
            f"unhandled_errors={self.unhandled_errors} "
            f"background_failures_logged={self.background_failures} "
            f"background_tasks_ended={self.background_ended} seconds={self.seconds:.1f} "
            f"phases={self.phases}"
        )


def plan(seed: Seed, requests: int, batch_every: int, batch_size: int) -> list[Request]:
    """`requests` creating requests: single lots, and every `batch_every`-th a batch of
    `batch_size`; every lot carries its own mark (its net grams) and every request its own key."""
    rng = random.Random(9)
    template = lot(seed)
    planned, mark = [], FIRST_MARK_G

    def one() -> dict[str, Any]:
        nonlocal mark
        mark += 1
        return {**template, "net_kg": mark / 1000}

    for n in range(requests):
        if batch_every and n % batch_every == batch_every - 1:
            items = [one() for _ in range(batch_size)]
            path, body = "/api/v1/lots/batch", {"lots": items}
        else:
            items = [one()]
            path, body = "/api/v1/lots", items[0]
        planned.append(
            Request(
                key=f"faults-{n}-{uuid.uuid4().hex[:8]}",
                path=path,
                body=json.dumps(body, ensure_ascii=False).encode(),
                marks=[round(item["net_kg"] * 1000) for item in items],
                cut_at=rng.uniform(0.4, 1.0) if n % 5 == 2 else None,
            )
        )
    return planned


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", "0.2")), 0.05), 1.0)
    except ValueError:
        return 0.2


def _acknowledge(tally: Tally, request: Request, response: httpx.Response) -> None:
    document = response.json()
    ids = [item["id"] for item in document["lots"]] if "lots" in document else [document["id"]]
    tally.acked[request.key] = ids
    for mark, lot_id in zip(request.marks, ids, strict=True):
        tally.acked_marks[mark] = lot_id
    tally.acknowledged += 1
    if response.headers.get("Idempotent-Replayed") == "true":
        tally.replayed += 1


async def send(client: httpx.AsyncClient, request: Request, tally: Tally) -> None:
    """Until acknowledged: the same key, the same body."""
    tally.sent += 1
    tally.lots += len(request.marks)
    deadline = time.monotonic() + GIVE_UP_SECONDS
    attempt = 0
    while True:
        attempt += 1
        tally.attempts += 1
        if attempt == 2:
            tally.retried += 1
        cut = request.cut_at * tally.typical if request.cut_at and attempt == 1 else None
        wait = 0.2
        try:
            response = await client.post(
                request.path,
                content=request.body,
                headers={"Idempotency-Key": request.key, "Content-Type": "application/json"},
                timeout=cut if cut is not None else 15.0,
            )
        except httpx.TransportError as error:
            if cut is not None:
                tally.cut_off += 1
            else:
                tally.connection_errors[type(error).__name__] += 1
        else:
            if response.status_code == 201:
                if attempt == 1:
                    elapsed = response.elapsed.total_seconds()
                    tally.typical += (elapsed - tally.typical) * 0.05
                _acknowledge(tally, request, response)
                return
            tally.answers[response.status_code] += 1
            if response.status_code == 503:
                tally.unavailable[tally.last_fault] += 1
            code = ""
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                code = str(response.json().get("code"))
                tally.codes[code] += 1
            ambiguous = response.status_code >= 500 or code == "idempotency_in_flight"
            if not ambiguous:
                tally.failed.append(f"{request.key}: {response.status_code} {response.text[:200]}")
                return
            wait = _retry_after(response)
        if time.monotonic() > deadline:
            tally.failed.append(f"{request.key}: not acknowledged in {GIVE_UP_SECONDS:.0f} s")
            return
        await asyncio.sleep(wait)


async def _until(tally: Tally, condition: Callable[[], bool]) -> None:
    """Wait for `condition`, as long as requests keep being acknowledged (however slowly: a busy
    machine is no failure, a minute without one acknowledgement is)."""
    seen, moved = tally.acknowledged, time.monotonic()
    while not condition():
        if tally.acknowledged != seen:
            seen, moved = tally.acknowledged, time.monotonic()
        elif time.monotonic() - moved > GIVE_UP_SECONDS:
            raise TimeoutError("the load stalled before the next fault")
        await asyncio.sleep(0.02)


async def inject(pg: Postgres, tally: Tally, total: int, outcome: Outcome, outage: float) -> None:
    """At a quarter of the acknowledgements, SIGKILL the postmaster; `outage` seconds later start
    it again; at 60 % and at 80 %, terminate every connection of the database."""
    await _until(tally, lambda: tally.acknowledged >= total // 4)
    pid = pg.kill()
    outcome.killed_at = time.monotonic()
    tally.faults.append(f"SIGKILL postmaster {pid}")
    tally.last_fault = "kill"
    await asyncio.sleep(outage)
    await asyncio.to_thread(pg.restart)
    outcome.restarted_at = time.monotonic()
    tally.faults.append(f"restart after {time.monotonic() - outcome.killed_at:.1f} s")
    sealing = asyncio.create_task(_sealing_resumed(pg, outcome))
    for share in (0.6, 0.8):
        await _until(tally, lambda share=share: tally.acknowledged >= total * share)  # type: ignore[misc]
        terminated = await pg.terminate_backends(DATABASE)
        tally.faults.append(f"pg_terminate_backend x{terminated}")
        tally.last_fault = f"terminate {share:.0%}"
    await sealing


async def _sealing_resumed(pg: Postgres, outcome: Outcome) -> None:
    """How long after the restart the sealer (in the server) sealed again."""
    conn = await pg.connect(DATABASE)
    try:
        head = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM event")
        deadline = time.monotonic() + 120
        while await conn.fetchval("SELECT coalesce(max(seq), 0) FROM event") == head:
            if time.monotonic() > deadline:
                return  # never: reported as None
            await asyncio.sleep(0.05)
        outcome.sealing_resumed_after = round(time.monotonic() - outcome.restarted_at, 2)
    finally:
        await conn.close()


async def watch_readiness(port: int, readiness: Readiness, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        while not stop.is_set():
            try:
                status = (await client.get("/readyz", timeout=3)).status_code
            except httpx.TransportError:
                status = 0
            readiness.seen.append((time.monotonic(), status))
            await asyncio.sleep(0.1)


async def drive(
    port: int, seed: Seed, pg: Postgres, planned: list[Request], concurrency: int, outage: float
) -> Outcome:
    tally, readiness = Tally(), Readiness()
    outcome = Outcome(tally, readiness)
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for request in planned:
        queue.put_nowait(request)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {seed.api_key}"}
    stop = asyncio.Event()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                await send(client, queue.get_nowait(), tally)

        watcher = asyncio.create_task(watch_readiness(port, readiness, stop))
        faults = asyncio.create_task(inject(pg, tally, len(planned), outcome, outage))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await faults  # raises if the load stalled before a fault
        await asyncio.sleep(0.3)
        stop.set()
        await watcher
    return outcome


async def _sealed(url: str) -> int:
    """Wait (a minute at most) for the sealer to seal every event; the number of events."""
    conn = await asyncpg.connect(dsn(url))
    try:
        deadline = time.monotonic() + 60
        while await conn.fetchval("SELECT count(*) FROM event WHERE seq IS NULL"):
            if time.monotonic() > deadline:
                raise TimeoutError("the sealer did not catch up: is it still running?")
            await asyncio.sleep(0.2)
        return int(await conn.fetchval("SELECT count(*) FROM event"))
    finally:
        await conn.close()


async def _stored(url: str, outcome: Outcome) -> None:
    """Compare what the database holds with what was acknowledged."""
    tally = outcome.tally
    conn = await asyncpg.connect(dsn(url))
    try:
        rows = await conn.fetch("SELECT net_g, array_agg(id::text) AS ids FROM lot GROUP BY net_g")
        stored = {row["net_g"]: row["ids"] for row in rows}
        outcome.duplicated = sum(len(ids) - 1 for ids in stored.values())
        outcome.found = sum(
            1 for mark, lot_id in tally.acked_marks.items() if stored.get(mark) == [lot_id]
        )
        outcome.missing = sum(1 for mark in tally.acked_marks if mark not in stored)
        outcome.unacknowledged = sum(1 for mark in stored if mark not in tally.acked_marks)
        outcome.without_event = int(
            await conn.fetchval(
                "SELECT count(*) FROM lot WHERE NOT EXISTS"
                " (SELECT 1 FROM event WHERE event.lot_ids @> ARRAY[lot.id])"
            )
        )
        keys = {row["key"] for row in await conn.fetch("SELECT key FROM idempotency_record")}
        outcome.keys_recorded = len(keys & tally.acked.keys())
    finally:
        await conn.close()


def _verify_chain(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(BIN / "scrapflow"), "audit", "verify"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"valid": False, "stderr": done.stderr[-2000:]}
    report["exit"] = done.returncode
    return report


@contextmanager
def server(url: str, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Env]]:
    """`scrapflow serve` with one process (the app runs in it: its pid is the server's), the
    sealer and the webhook relay in it; yields the process, its port and its environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPFLOW_")}
    env.update(
        DATABASE_URL=url,
        SCRAPFLOW_PORT=str(port),
        SCRAPFLOW_WORKERS="1",
        SCRAPFLOW_DATA_DIR=str(workdir / "app"),
        SCRAPFLOW_SEALER_IN_API="true",
        PYTHONPATH=str(ROOT),
    )
    with (workdir / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "scrapflow"), "serve"], env=env, cwd=ROOT, stdout=log, stderr=log
        )
        try:
            wait_ready(port, "/readyz", process)
            yield process, port, env
        finally:
            process.terminate()
            process.wait(timeout=30)


def run(
    requests: int,
    concurrency: int = 32,
    batch_every: int = 20,
    batch_size: int = 5,
    outage: float = 2.0,
) -> Outcome:
    started = time.monotonic()
    pg = Postgres()
    workdir = Path(tempfile.mkdtemp(prefix="sffs", dir="/tmp"))
    try:
        pg.start()
        url = pg.url(DATABASE)
        from integrations.embedded import ensure_database
        from integrations.migrate import upgrade

        asyncio.run(ensure_database(url))
        upgrade(url)
        seed = asyncio.run(_seed(url, name="faults recycler"))
        planned = plan(seed, requests, batch_every, batch_size)
        phases = {"setup": time.monotonic()}
        with server(url, workdir) as (process, port, env):
            pid = process.pid
            phases["server start"] = time.monotonic()
            outcome = asyncio.run(drive(port, seed, pg, planned, concurrency, outage))
            phases["load"] = time.monotonic()
            outcome.events = asyncio.run(_sealed(url))
            phases["sealing"] = time.monotonic()
            asyncio.run(_stored(url, outcome))
            outcome.verify = _verify_chain(env)
            phases["checks"] = time.monotonic()
            outcome.ready_at_end = httpx.get(f"http://127.0.0.1:{port}/readyz").status_code
            outcome.same_server = process.poll() is None and process.pid == pid
        outcome.log = (workdir / "server.log").read_text(errors="replace")
        outcome.unhandled_errors = outcome.log.count("unhandled error")
        outcome.background_failures = outcome.log.count("sealing failed") + outcome.log.count(
            "webhook relay step failed"
        )
        outcome.background_ended = outcome.log.count("ended while the service runs")
        outcome.seconds = time.monotonic() - started
        previous = started
        for name, at in phases.items():
            outcome.phases[name], previous = round(at - previous, 1), at
        return outcome
    except BaseException:
        log = workdir / "server.log"
        if log.exists():
            print("server log:", log.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--batch-every", type=int, default=20, help="0: single lots only")
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--outage", type=float, default=2.0, help="Seconds the database is down")
    parser.add_argument("--log", type=Path, help="Write the server's log here")
    args = parser.parse_args()
    outcome = run(args.requests, args.concurrency, args.batch_every, args.batch_size, args.outage)
    if args.log:
        args.log.write_text(outcome.log)
    print(outcome.summary())
    for failure in outcome.tally.failed[:20]:
        print("failed:", failure)
    print("audit verify:", json.dumps(outcome.verify))
