"""The benchmark (DESIGN §7) as one command with one table.

    .venv/bin/python -m tests.bench [--lots 10000,1000000] [--quick] [--json .bench/results.json]

On one PostgreSQL (embedded, or the server BENCH_DATABASE_URL names: it gets databases
`bench_writes`, `bench_audit`, `bench_reads`, each created afresh and dropped after), with the real
server (`scrapflow serve`) on loopback:

1. writes (tests/bench/run.py): registration, dispatch and receipt at `--concurrency` connections
   against the floor (tests/bench/floor.py: Starlette + asyncpg doing the same writes), and batch
   registration;
2. audit (tests/bench/audit.py): chain verification rate over a bulk-written chain, and the
   sealer's lag while batch registration runs at full speed;
3. reads (tests/bench/reads.py): a province built at the first `--lots` size, read, grown in place
   to the second, read again: statements, credits, lineage, lot list, facility register and the
   province's reports;

while the server's memory is sampled throughout: PSS (shared pages divided among the processes
sharing them) summed over its processes, the target's measure, with the largest single process and,
for reference, RSS summed (shared pages counted once per process). Prints one markdown table,
each row with its target, and writes every figure to `--json`. `--quick` is the CI-sized run: it
proves the command works; its figures mean nothing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench import audit, reads, run
from tests.bench.server import MemoryWatch, Peaks, cluster, postgres_version

MB = 1024 * 1024
# Full size, then CI size.
WRITES = {
    False: ["--requests", "4000", "--warmup", "500", "--shipments", "2000", "--batches", "12"],
    True: ["--requests", "200", "--warmup", "20", "--shipments", "60", "--batches", "2",
           "--batch-size", "500"],
}  # fmt: skip
AUDIT = {
    False: ["--events", "200000", "--batches", "12"],
    True: ["--events", "3000", "--batches", "3", "--batch-size", "500", "--repeat", "2"],
}
READS = {False: ["--repeat", "200"], True: ["--repeat", "5", "--report-repeat", "2", "--check"]}
LOTS = {False: "10000,1000000", True: "2000,20000"}
MAX_SEALING_LAG_S = 5.0  # "keeps up": the oldest unsealed event is never older than this


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "--lots", help=f"the two read sizes (default {LOTS[False]}; --quick {LOTS[True]})"
    )
    parser.add_argument("--quick", action="store_true", help="CI-sized: every part, tiny")
    parser.add_argument("--workers", type=int, default=2, help="server processes when writing")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", type=Path, default=Path(".bench/results.json"))
    return parser


# --- the table ---------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _row(
    measure: str,
    figure: str,
    target: str,
    met: bool | None,
    p50: str = "",
    tail: str = "",
    ratio: str = "",
) -> dict[str, Any]:
    return {"measure": measure, "figure": figure, "p50_ms": p50, "tail_ms": tail,
            "ratio": ratio, "target": target, "met": met}  # fmt: skip


def _write_rows(writes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for key, measure in (
        ("registration", "registration `POST /lots`"),
        ("dispatch", "dispatch `POST /shipments`"),
        ("receipt", "receipt `POST /shipments/{id}/receipt`"),
    ):
        ours, floor = writes[key], writes[f"{key}_floor"]
        ratio, failed = ours["ratio_to_floor"], ours["non_2xx"] + floor["non_2xx"]
        rows.append(
            _row(
                measure,
                f"{_n(ours['per_s'])} req/s (floor {_n(floor['per_s'])})"
                + (f", {failed} not 2xx" if failed else ""),
                "ratio ≥ 0.50, p99 ≤ 100 ms",
                not failed and ratio >= 0.5 and ours["p99_ms"] <= 100,
                str(ours["p50_ms"]),
                f"p99 {ours['p99_ms']}",
                f"{ratio:.2f}",
            )
        )
    batch = writes["batch"]
    rows.insert(
        1,
        _row(
            "batch registration `POST /lots/batch`",
            f"{_n(batch['lots_per_s'])} lots/s"
            + (f", {batch['non_2xx']} not 2xx" if batch["non_2xx"] else ""),
            "≥ 20,000 lots/s",
            not batch["non_2xx"] and batch["lots_per_s"] >= 20_000,
            str(batch["p50_ms"]),
            f"p99 {batch['p99_ms']}",
        ),
    )
    return rows


def _read_target(name: str, small: dict[str, Any], large: dict[str, Any]) -> tuple[str, bool]:
    ratio = large["p95_ms"] / small["p95_ms"]
    if name.startswith("statement"):
        return "ratio ≤ 2, p95 ≤ 50 ms", ratio <= 2 and large["p95_ms"] <= 50
    if "province" in name:  # the province's whole year: it grows with the data
        return "p95 ≤ 2 s at the larger size", large["p95_ms"] <= 2000
    return "ratio ≤ 2", ratio <= 2


def _read_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    info = result["info"]
    sizes = f"{_n(info['small_lots'])} → {_n(info['large_lots'])} lots"
    rows = []
    for name, both in result["rows"].items():
        small, large = both["small"], both["large"]
        if name.startswith("control"):
            continue  # the machine's own drift, kept in the JSON
        if small.get("status") != 200 or large.get("status") != 200:
            rows.append(_row(name, f"answered {small['status']} / {large['status']}", "200", False))
            continue
        target, met = _read_target(name, small, large)
        rows.append(
            _row(
                name,
                sizes,
                target,
                met,
                f"{small['p50_ms']} → {large['p50_ms']}",
                f"p95 {small['p95_ms']} → {large['p95_ms']}",
                f"{large['p95_ms'] / small['p95_ms']:.2f}",
            )
        )
    return rows


def _audit_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    ingest, verify, seal = result["ingest"], result["verify"], result["seal"]
    seal_rate = result["sealed"] / seal.seconds
    return [
        _row(
            f"sealing lag at {_n(ingest['lots_per_s'])} lots/s (batch, full speed)",
            f"max {ingest['max_lag_s']:.2f} s / {_n(ingest['max_backlog'])} events; at the end"
            f" {ingest['lag_at_end_s']:.2f} s / {_n(ingest['backlog_at_end'])}, sealed"
            f" {ingest['drain_s']:.2f} s later",
            f"keeps up: lag ≤ {MAX_SEALING_LAG_S:.0f} s",
            ingest["max_lag_s"] <= MAX_SEALING_LAG_S,
            ratio=f"{seal_rate / ingest['lots_per_s']:.2f}",
        ),
        _row(
            f"chain verification ({_n(result['sealed'])} events)",
            f"{_n(result['sealed'] / verify.seconds)} events/s",
            "≥ 50,000 events/s",
            result["sealed"] / verify.seconds >= 50_000,
        ),
    ]


def _memory_row(watch: MemoryWatch) -> dict[str, Any]:
    parts = "; ".join(
        f"{part} {_n(peak.pss / MB)} in {peak.processes}, largest {_n(peak.process_pss / MB)}"
        for part, peak in watch.peaks.items()
        if part
    )
    return _row(
        "peak server memory (PSS summed over the server's processes; the largest one)",
        f"{_n(watch.peak.pss / MB)} MB, largest process {_n(watch.peak.process_pss / MB)} MB"
        f" ({parts}; RSS summed {_n(watch.peak.rss / MB)})",
        "≤ 300 MB, all the server's processes",
        watch.peak.pss <= 300 * MB,
    )


def _memory(watch: MemoryWatch) -> dict[str, Any]:
    def mb(peak: Peaks) -> dict[str, Any]:
        return {
            "pss_mb": round(peak.pss / MB, 1),
            "rss_mb": round(peak.rss / MB, 1),
            "largest_process_pss_mb": round(peak.process_pss / MB, 1),
            "largest_process_rss_mb": round(peak.process_rss / MB, 1),
            "processes": peak.processes,
        }

    return {
        "measured": "peaks sampled every 0.2 s from /proc/<pid>/smaps_rollup: PSS and RSS summed"
        " over the server's processes (supervisor and workers), and the largest single process",
        **mb(watch.peak),
        "parts": {part: mb(peak) for part, peak in watch.peaks.items() if part},
    }


COLUMNS = ("measure", "figure", "p50 ms", "p95/p99 ms", "ratio", "target", "met")


def markdown(rows: list[dict[str, Any]]) -> str:
    mark = {True: "met", False: "**missed**", None: ""}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [row["measure"], row["figure"], row["p50_ms"], row["tail_ms"], row["ratio"],
                 row["target"], mark[row["met"]]]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- the run -----------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory / 1024**3, 1),
        "postgresql": postgres_version(),
        "python": platform.python_version(),
    }


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    small, large = (int(n) for n in (args.lots or LOTS[args.quick]).split(","))
    common = ["--workers", str(args.workers)]
    writes_args = run.parser().parse_args(
        [*WRITES[args.quick], *common, "--concurrency", str(args.concurrency)]
    )
    audit_args = audit.parser().parse_args([*AUDIT[args.quick], *common])
    reads_args = reads.parser().parse_args(
        [*READS[args.quick], "--small", str(small), "--large", str(large)]
    )
    results: dict[str, Any] = {}
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    with cluster(), MemoryWatch() as watch:
        machine = _machine()
        for part, measure, part_args in (
            ("writes", run.measure, writes_args),
            ("audit", audit.measure, audit_args),
            ("reads", reads.measure, reads_args),
        ):
            watch.part, began = part, time.perf_counter()
            results[part] = measure(part_args)
            seconds[part] = round(time.perf_counter() - began, 1)
        watch.part = ""
    duration = time.perf_counter() - started
    writes, audited, read = results["writes"], results["audit"], results["reads"]
    rows = [*_write_rows(writes), *_read_rows(read), *_audit_rows(audited), _memory_row(watch)]

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\nscrapflow benchmark{' (--quick: CI-sized, the figures mean nothing)' * args.quick},"
        f" {when}, {duration / 60:.1f} min; {machine['cores']} cores ({machine['cpu']}),"
        f" {machine['memory_gib']} GiB, PostgreSQL {machine['postgresql']}; load average"
        f" {os.getloadavg()[0]:.1f} at the end\n"
        f"writes: {args.workers} server processes, {args.concurrency} connections; reads: one"
        f" request at a time, {reads_args.repeat} rounds ({reads_args.report_repeat} for the"
        " province's reports)\n"
    )
    print(markdown(rows))
    result = {
        "when": when,
        "command": " ".join(["python -m tests.bench", *(sys.argv[1:] if argv is None else argv)]),
        "duration_s": round(duration, 1),
        "part_seconds": seconds,
        "machine": machine,
        "table": rows,
        "writes": writes,
        "audit": {k: v for k, v in audited.items() if k != "verify_profile"},
        "reads": read,
        "memory": _memory(watch),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=_plain))
    print(f"\nevery figure: {args.json}")
    return result


if __name__ == "__main__":
    main()
