"""`scrapflow serve` with several worker processes and a DATABASE_URL (issue 8, memory): after
migrating and bootstrapping, the process replaces itself with a supervisor that never imports
the application, so it costs a fraction of a worker; the workers serve the API, and SIGTERM stops
them all."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bench.server import footprint
from tests.databases import drop_database, migrated_database
from tests.e2e.test_audit import TIMEOUT, _serve

MB = 1024 * 1024


@pytest.fixture
def database() -> Iterator[str]:
    url = migrated_database("sf_serve_workers_e2e")
    yield url
    drop_database(url)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sfsrv", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").glob("*/children")
        for child in task.read_text().split()
    ]


def _workers(pid: int, count: int) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker), once there
    are `count` of them."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = [
            child
            for child in _children(pid)
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        ]
        if len(found) == count:
            return found
        time.sleep(0.2)
    pytest.fail(f"{count} workers expected under {pid}, found {_children(pid)}")


def _maps_sqlalchemy(pid: int) -> bool:
    """Whether the process has loaded SQLAlchemy (its compiled extensions are mapped files)."""
    return "/sqlalchemy/" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.e2e
def test_workers_serve_under_a_supervisor_that_has_not_loaded_the_application(
    database: str, data_dir: Path
) -> None:
    server, base, key = _serve(database, data_dir, SCRAPFLOW_WORKERS="2")
    try:
        supervisor = server.process.pid  # the same process, replaced in place
        assert b"api.supervisor" in Path(f"/proc/{supervisor}/cmdline").read_bytes()
        workers = _workers(supervisor, 2)
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as http:
            for _ in range(4):  # whichever worker answers, the application is there
                answer = http.get("/api/v1/enterprises", headers={"Authorization": f"Bearer {key}"})
                assert answer.status_code == 200, answer.text
        assert not _maps_sqlalchemy(supervisor)
        assert all(_maps_sqlalchemy(worker) for worker in workers)
        supervisor_memory, worker_memory = footprint(supervisor), footprint(workers[0])
        assert supervisor_memory is not None and worker_memory is not None
        assert supervisor_memory.pss < 40 * MB < worker_memory.pss, (
            supervisor_memory,
            worker_memory,
        )
    finally:
        assert server.stop() == 0, server.stderr.text()[-3000:]
    assert not any(Path(f"/proc/{worker}").exists() for worker in workers)
