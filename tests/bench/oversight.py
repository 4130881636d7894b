"""Regulators' reports on a demo database (issue 6): flows, indicators and anomalies for the whole
province over the last 12 months, through the real server, one request at a time.

    scrapflow demo --lots 1000000            # once, on an empty database (DATABASE_URL)
    DATABASE_URL=... .venv/bin/python -m tests.bench.oversight [--repeat 10]

Target (issue 6): each answers in at most 2 s with 1,000,000 demo lots. The audit sealer is left
off in the server while it is timed (the demo's events are sealed by `scrapflow worker`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
import uuid

import httpx
from sqlalchemy import text

from integrations.settings import asyncpg_url
from tests.bench.server import BIN, ROOT, free_port, wait_ready

REPORTS = ("flows", "indicators", "anomalies")


async def _province_key(url: str) -> str:
    from domain.actor import SYSTEM, Role
    from domain.identity import service as identity
    from domain.registry import service as registry
    from integrations.database import create_engine, session_factory

    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            authority = await registry.create_authority(
                session, SYSTEM, name=f"bench {uuid.uuid4().hex[:6]}", jurisdiction="52"
            )
            _, secret = await identity.create_api_key(
                session,
                SYSTEM,
                name="oversight bench",
                role=Role.inspector,
                owner=identity.Owner(None, authority.id),
                expires_at=None,
            )
            lots = await session.scalar(text("SELECT count(*) FROM lot"))
            await session.commit()
            print(f"database holds {lots:,} lots")
            return secret
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    url = asyncpg_url(os.environ["DATABASE_URL"])
    secret = asyncio.run(_province_key(url))
    port = free_port()
    env = {
        **os.environ,
        "SCRAPFLOW_SEALER_IN_API": "false",
        "SCRAPFLOW_WEBHOOK_RELAY_IN_API": "false",
    }
    server = subprocess.Popen(
        [str(BIN / "scrapflow"), "serve", "--port", str(port)], cwd=ROOT, env=env
    )
    try:
        wait_ready(port, "/readyz", server)
        headers = {"Authorization": f"Bearer {secret}"}
        timings: dict[str, list[float]] = {name: [] for name in REPORTS}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for round_ in range(args.repeat + 1):  # the first round warms up
                for name in REPORTS:
                    started = time.perf_counter()
                    response = client.get(f"/api/v1/reports/{name}", headers=headers)
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    if round_:
                        timings[name].append(elapsed)
        result = {
            name: {
                "p50_s": round(statistics.median(values), 3),
                "max_s": round(max(values), 3),
            }
            for name, values in timings.items()
        }
        print("| GET /api/v1/reports/... (province, 12 months) | p50 s | max s |")
        print("|---|---|---|")
        for name, figures in result.items():
            print(f"| {name} | {figures['p50_s']} | {figures['max_s']} |")
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
