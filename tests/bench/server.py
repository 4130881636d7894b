"""What the benchmark's parts share: a fresh migrated database, the real server on loopback, and a
watch on the server's memory for the whole run.

Databases come from one embedded PostgreSQL per run (`cluster()`; each part takes a database of
its own on it), or, when BENCH_DATABASE_URL is set, from that server: a database `bench_<part>`
is created afresh on it and dropped afterwards."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

_cluster: Any = None  # the run's embedded PostgreSQL while `cluster()` holds it open
_servers: list[int] = []  # the running servers' first processes, for the watch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
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


def dsn(url: str) -> str:
    """The SQLAlchemy URL as asyncpg takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def cluster() -> Iterator[Any]:
    """The embedded PostgreSQL of this run: started here unless an outer `cluster()` holds one."""
    global _cluster
    if _cluster is not None:
        yield _cluster
        return
    from integrations.embedded import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="sfb", dir="/tmp"))  # short: a socket lives in it
    embedded = EmbeddedPostgres(workdir)
    try:
        embedded.start()
        _cluster = embedded
        yield embedded
    finally:
        _cluster = None
        embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _recreate(url: str, drop_only: bool = False) -> None:
    target = make_url(url)
    conn = await asyncpg.connect(dsn(target.set(database="postgres").render_as_string(False)))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{target.database}"')
    finally:
        await conn.close()


@contextmanager
def _server_url() -> Iterator[str]:
    """A URL of the PostgreSQL server the run uses (its maintenance database)."""
    with ExitStack() as stack:
        base = os.environ.get("BENCH_DATABASE_URL")
        if not base:
            base = stack.enter_context(cluster()).url("postgres")
        yield make_url(base).set(database="postgres").render_as_string(hide_password=False)


def postgres_version() -> str:
    async def ask(url: str) -> str:
        conn = await asyncpg.connect(dsn(url))
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    with _server_url() as url:
        return asyncio.run(ask(url))


@contextmanager
def database(part: str) -> Iterator[str]:
    """A fresh, migrated database `bench_<part>`, dropped afterwards."""
    from integrations.migrate import upgrade

    with _server_url() as base:
        url = make_url(base).set(database=f"bench_{part}").render_as_string(hide_password=False)
        asyncio.run(_recreate(url))
        try:
            upgrade(url)
            yield url
        finally:
            asyncio.run(_recreate(url, drop_only=True))


@contextmanager
def serve(url: str, *, workers: int = 1, settings: dict[str, str] | None = None) -> Iterator[int]:
    """`scrapflow serve` on loopback (production settings, real authentication, nothing from
    this shell's SCRAPFLOW_* settings but `settings`); yields its port once it answers."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sfs", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPFLOW_")}
    env.update(
        DATABASE_URL=url,
        SCRAPFLOW_PORT=str(port),
        SCRAPFLOW_WORKERS=str(workers),
        SCRAPFLOW_DATA_DIR=str(workdir / "app"),
        PYTHONPATH=str(ROOT),  # this checkout's code, whichever one the venv was installed from
        **(settings or {}),
    )
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "scrapflow"), "serve"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    watched = process.pid
    _servers.append(watched)
    try:
        wait_ready(port, "/readyz", process)
        yield port
    except BaseException:
        log.flush()
        print("server log:", (workdir / "server.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        _servers.remove(watched)
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with suppress(OSError):
            found += [int(child) for child in task.read_text().split()]
    return found


@dataclass(frozen=True)
class Footprint:
    """One process's memory: `pss` counts each shared page (the interpreter's and extensions'
    code, pages shared with a parent) divided among the processes sharing it, so the sum over a
    tree is what the tree costs the machine; `rss` counts every resident page whole, so a sum of
    RSS counts shared pages once per process."""

    pss: int
    rss: int


def footprint(pid: int) -> Footprint | None:
    """From /proc/<pid>/smaps_rollup (Linux ≥ 4.14); None once the process is gone."""
    fields: dict[str, int] = {}
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("Pss", "Rss"):
                fields[name] = int(rest.split()[0]) * 1024
    if len(fields) < 2:
        return None
    return Footprint(pss=fields["Pss"], rss=fields["Rss"])


def server_memory() -> dict[int, Footprint]:
    """Each process of the running servers (each one's first process and all its children, from
    /proc: the benchmark runs on Linux) with its footprint."""
    found: dict[int, Footprint] = {}
    for root in list(_servers):
        pending = [root]
        while pending:
            pid = pending.pop()
            if (measured := footprint(pid)) is not None:
                found[pid] = measured
            pending += _children(pid)
    return found


@dataclass
class Peaks:
    """The largest figures seen in one part of the run, each at its own moment."""

    pss: int = 0  # summed over the server's processes
    rss: int = 0  # summed likewise, for reference: shared pages counted once per process
    process_pss: int = 0  # the largest single process
    process_rss: int = 0
    processes: int = 0

    def add(self, sample: dict[int, Footprint]) -> None:
        if not sample:
            return
        self.pss = max(self.pss, sum(f.pss for f in sample.values()))
        self.rss = max(self.rss, sum(f.rss for f in sample.values()))
        self.process_pss = max(self.process_pss, *(f.pss for f in sample.values()))
        self.process_rss = max(self.process_rss, *(f.rss for f in sample.values()))
        self.processes = max(self.processes, len(sample))


class MemoryWatch:
    """Samples `server_memory()` in a thread for as long as it is entered; keeps the peaks,
    overall and per part of the run (`part` names the part being run)."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self.part = ""
        self.peak = Peaks()
        self.peaks: dict[str, Peaks] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            sample = server_memory()
            self.peak.add(sample)
            self.peaks.setdefault(self.part, Peaks()).add(sample)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
