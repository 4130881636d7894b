"""Where the server's memory goes under the write load (issue 8: DESIGN §7, ≤ 300 MB under load).

    .venv/bin/python -m tests.bench.memory [--workers 2] [--requests 3000] [--batches 8]
                                           [--batch-size 5000] [--env NAME=VALUE ...]

On a fresh database, the real server (`scrapflow serve`) with `--workers` processes and, in its
environment, every `--env` (say MALLOC_ARENA_MAX=2, or a SCRAPFLOW_* setting): registration at
`--concurrency` connections, then batch registration (one batch in flight per process). Prints
each process's PSS and RSS (from /proc/<pid>/smaps_rollup) when it is ready, its peak in each
phase, and where it ends; then the same summed over the processes. Compare two runs that differ
in one `--env` to see what a setting is worth."""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.bench import loadgen
from tests.bench.run import HOST, Seed, _seed, lot
from tests.bench.server import Footprint, database, serve, server_memory

MB = 1024 * 1024


class _Phases:
    """Per-process peaks, sampled in a thread, under the name of the phase being run."""

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        self.phase = "ready"
        self.peaks: dict[str, dict[int, Footprint]] = {}
        self.totals: dict[str, Footprint] = {}
        self._stop = threading.Event()

    def sample(self) -> None:
        measured = server_memory()
        if not measured:
            return
        peaks = self.peaks.setdefault(self.phase, {})
        for pid, now in measured.items():
            was = peaks.get(pid, Footprint(0, 0))
            peaks[pid] = Footprint(max(was.pss, now.pss), max(was.rss, now.rss))
        was = self.totals.get(self.phase, Footprint(0, 0))
        self.totals[self.phase] = Footprint(
            max(was.pss, sum(f.pss for f in measured.values())),
            max(was.rss, sum(f.rss for f in measured.values())),
        )

    @contextmanager
    def watching(self) -> Iterator[_Phases]:
        def loop() -> None:
            while not self._stop.wait(self.every):
                self.sample()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


async def _load(args: argparse.Namespace, port: int, phases: _Phases, seed: Seed) -> dict[int, int]:
    auth = {"Authorization": f"Bearer {seed.api_key}"}
    body = lot(seed)
    one = loadgen.post("/api/v1/lots", body, auth)
    batch = loadgen.post("/api/v1/lots/batch", {"lots": [body] * args.batch_size}, auth)
    statuses: dict[int, int] = {}
    for phase, request, total, concurrency in (
        ("registration", one, args.requests, args.concurrency),
        ("batch", batch, args.batches, args.workers),
    ):
        phases.phase = phase
        result = await loadgen.run(
            HOST, port, _always(request), total=total, concurrency=concurrency
        )
        for status, n in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    phases.phase = "after"
    await asyncio.sleep(2)
    return statuses


def _always(request: bytes) -> Callable[[int], bytes]:
    return lambda _: request


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.memory", description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE in the server's environment"
    )
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.env)
    phases = _Phases()
    with database("memory") as url:
        seed = asyncio.run(_seed(url))
        with serve(url, workers=args.workers, settings=settings) as port, phases.watching():
            phases.sample()
            statuses = asyncio.run(_load(args, port, phases, seed))
            phases.sample()
    order = ["ready", "registration", "batch", "after"]
    print(f"\nserver memory, MB (PSS / RSS); {args.workers} workers; env {settings or 'default'};")
    print(f"answers {statuses}")
    print("process | " + " | ".join(order))
    pids = sorted({pid for peaks in phases.peaks.values() for pid in peaks})
    for pid in pids:
        cells = []
        for phase in order:
            f = phases.peaks.get(phase, {}).get(pid)
            cells.append(f"{f.pss / MB:.0f} / {f.rss / MB:.0f}" if f else "")
        print(f"{pid} | " + " | ".join(cells))
    print(
        "sum | "
        + " | ".join(
            f"{phases.totals[p].pss / MB:.0f} / {phases.totals[p].rss / MB:.0f}"
            for p in order
            if p in phases.totals
        )
    )
    return {
        "statuses": statuses,
        "totals_mb": {p: round(f.pss / MB, 1) for p, f in phases.totals.items()},
        "process_peaks_mb": {
            p: {pid: round(f.pss / MB, 1) for pid, f in peaks.items()}
            for p, peaks in phases.peaks.items()
        },
    }


if __name__ == "__main__":
    main()
