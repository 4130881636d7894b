"""The audit trail through the real processes (issue 6): `scrapflow audit verify` against a
database, and `scrapflow serve` / `scrapflow worker` sealing by themselves. Each test has a
database of its own on the test server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from integrations.database import create_engine
from integrations.settings import Settings
from integrations.signing import load_signer
from tests.databases import drop_database, in_thread, migrated_database
from tests.e2e.test_walkthrough import ADMIN_KEY, _Drain, _free_port
from tests.integration.test_audit_chain import Db, seal_all, settled, write_events

SCRAPFLOW = Path(sys.executable).parent / "scrapflow"
TIMEOUT = 60.0
SELLER_ID = "52010219900101123X"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a loop of its own (this test may be inside one)."""
    results: list[T] = []

    async def keep() -> None:
        results.append(await coro)

    in_thread(asyncio.run, keep())
    return results[0]


@pytest.fixture
def database() -> Iterator[str]:
    url = migrated_database("sf_audit_e2e")
    yield url
    drop_database(url)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sfaud", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(False)


def _env(database: str, data_dir: Path, **settings: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCRAPFLOW_") and k not in ("DATABASE_URL", "TEST_DATABASE_URL")
    }
    env.update(DATABASE_URL=database, SCRAPFLOW_DATA_DIR=str(data_dir), **settings)
    return env


# --- scrapflow audit verify ---------------------------------------------------------------------


async def _sealed_events(url: str, count: int, data_dir: Path) -> None:
    """Sealed and checkpointed with the platform key of `data_dir`, the one the CLI trusts."""
    engine = create_engine(url, pool_size=2)
    db = Db(url, engine)
    signer = load_signer(Settings(database_url=url, data_dir=data_dir))
    try:
        await write_events(db, count)
        await settled(db)
        await seal_all(db, signer=signer, limit=4, checkpoint_every=5)
    finally:
        await engine.dispose()


async def _edit(url: str, seq: int) -> None:
    conn = await asyncpg.connect(_dsn(url))  # this test's own database
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "UPDATE event SET payload = payload || '{\"n\": -1}' WHERE seq = $1", seq
        )
    finally:
        await conn.close()


def _verify(database: str, data_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [str(SCRAPFLOW), "audit", "verify", *args],
        env=_env(database, data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"not JSON (exit {done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    return done.returncode, report


@pytest.mark.e2e
def test_audit_verify_prints_json_and_exits_1_naming_the_broken_seq(
    database: str, data_dir: Path
) -> None:
    run(_sealed_events(database, 23, data_dir))
    code, report = _verify(database, data_dir)
    assert code == 0, report
    assert report["valid"] is True and report["broken"] is None
    assert (report["from_seq"], report["to_seq"], report["head_seq"]) == (1, 23, 23)
    assert report["events_checked"] == 23
    assert report["checkpoints_checked"] >= 3
    assert report["seconds"] >= 0

    run(_edit(database, 9))
    code, report = _verify(database, data_dir)
    assert code == 1, report
    assert report["valid"] is False
    assert report["broken"]["seq"] == 9
    assert report["broken"]["reason"] == "edited"
    assert report["events_checked"] == 8

    code, before = _verify(database, data_dir, "--to-seq", "8")
    assert code == 0 and before["to_seq"] == 8 and before["events_checked"] == 8
    code, after = _verify(database, data_dir, "--from-seq", "10")
    assert code == 0 and after["events_checked"] == 14, after


# --- the processes seal by themselves -----------------------------------------------------------


class Process:
    """A `scrapflow` process with its output drained."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.process = subprocess.Popen(
            [str(SCRAPFLOW), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout = _Drain(self.process.stdout)
        self.stderr = _Drain(self.process.stderr)
        self.stdout.start()
        self.stderr.start()

    def alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(
                f"exited with {self.process.returncode}\n{self.stdout.text()}"
                f"\n{self.stderr.text()[-4000:]}"
            )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.stdout.join(timeout=5)
        self.stderr.join(timeout=5)
        return self.process.returncode


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


def _serve(database: str, data_dir: Path, **settings: str) -> tuple[Process, str, str]:
    """The server, its base URL and the admin key it printed on first start."""
    port = _free_port()
    server = Process(["serve"], _env(database, data_dir, SCRAPFLOW_PORT=str(port), **settings))
    deadline = time.monotonic() + TIMEOUT
    key = None
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=2, trust_env=False) as http:
        while time.monotonic() < deadline:
            server.alive()
            key = key or (
                found.group(0) if (found := ADMIN_KEY.search(server.stdout.text())) else None
            )
            with contextlib.suppress(httpx.TransportError):
                if key and http.get("/readyz").status_code == 200:
                    return server, base, key
            time.sleep(0.1)
    server.stop()
    pytest.fail(f"server not ready within {TIMEOUT:.0f} s\n{server.stderr.text()[-4000:]}")


def _write(http: httpx.Client, admin: dict[str, str]) -> list[str]:
    """An enterprise, its collection point and two lots: the subjects of their events."""
    enterprise = http.post(
        "/api/v1/enterprises",
        headers=admin,
        json={
            "name": "贵阳再生资源回收有限公司",
            "uscc": "91520000214434146R",
            "roles": ["recycler"],
            "region_code": "520102",
        },
    )
    assert enterprise.status_code == 201, enterprise.text
    facility = http.post(
        "/api/v1/facilities",
        headers=admin,
        json={
            "enterprise_id": enterprise.json()["id"],
            "name": "云岩区回收网点 1",
            "kind": "collection_point",
            "region_code": "520103",
            "address": "贵阳市云岩区中华北路 1 号",
        },
    )
    assert facility.status_code == 201, facility.text
    subjects = [enterprise.json()["id"], facility.json()["id"]]
    for _ in range(2):
        lot = http.post(
            "/api/v1/lots",
            headers=admin,
            json={
                "facility_id": facility.json()["id"],
                "metal": "copper",
                "category": "GB13587-I",
                "net_kg": 120.5,
                "consumer_class": "post_consumer",
                "channel": "offline",
                "collected_at": "2026-11-20T08:00:00+08:00",
                "seller": {
                    "kind": "individual",
                    "name": "王小明",
                    "id_number": "52010219900101123X",
                },
            },
        )
        assert lot.status_code == 201, lot.text
        subjects.append(lot.json()["id"])
    return subjects


def _until_listed(http: httpx.Client, admin: dict[str, str], subjects: list[str]) -> list[Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        items: list[Any] = []
        cursor: str | None = None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = http.get("/api/v1/audit/events", params=params, headers=admin).json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if set(subjects) <= {e["subject_id"] for e in items}:
            return items
        time.sleep(0.2)
    pytest.fail(f"the events of {subjects} were not sealed within {TIMEOUT:.0f} s")


def _check_trail(http: httpx.Client, admin: dict[str, str], items: list[Any]) -> None:
    assert [e["seq"] for e in items] == list(range(1, len(items) + 1))
    verified = http.get("/api/v1/audit/verify", headers=admin).json()
    assert verified["valid"] is True, verified
    assert verified["events_checked"] == verified["head_seq"] >= len(items)
    checkpoint = http.get("/api/v1/audit/checkpoints/latest", headers=admin)
    assert checkpoint.status_code == 200, checkpoint.text
    keys = {k["key_id"]: k for k in http.get("/api/v1/public/keys").json()}
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    def raw(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    body = checkpoint.json()
    key = raw(keys[body["key_id"]]["public_key"])
    Ed25519PublicKey.from_public_bytes(key).verify(raw(body["signature"]), body["payload"].encode())


@pytest.mark.e2e
def test_the_server_seals_its_events_by_itself(database: str, data_dir: Path) -> None:
    with processes() as running:
        server, base, key = _serve(database, data_dir, SCRAPFLOW_SEAL_INTERVAL_SECONDS="0.2")
        running.append(server)
        admin = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as http:
            subjects = _write(http, admin)
            items = _until_listed(http, admin, subjects)
            _check_trail(http, admin, items)
            lots = [e for e in items if e["type"] == "lot.registered"]
            assert [e["subject_id"] for e in lots] == subjects[2:]
        assert server.stop() == 0, server.stderr.text()[-4000:]


@pytest.mark.e2e
def test_workers_seal_when_the_server_does_not(database: str, data_dir: Path) -> None:
    """Two `scrapflow worker` processes and a server with its sealer off: the workers take turns
    under the database lock, and the chain comes out whole."""
    with processes() as running:
        server, base, key = _serve(database, data_dir, SCRAPFLOW_SEALER_IN_API="false")
        running.append(server)
        admin = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as http:
            subjects = _write(http, admin)
            time.sleep(1.5)  # the server alone seals nothing
            nothing = http.get("/api/v1/audit/events", headers=admin).json()
            assert nothing["items"] == []
            worker_env = _env(database, data_dir, SCRAPFLOW_SEAL_INTERVAL_SECONDS="0.05")
            running.extend(Process(["worker"], worker_env) for _ in range(2))
            items = _until_listed(http, admin, subjects)
            subjects += _write_more(http, admin)
            items = _until_listed(http, admin, subjects)
            _check_trail(http, admin, items)
            for worker in running[1:]:
                worker.alive()
        for worker in running[1:]:
            assert worker.stop() == 0, worker.stderr.text()[-4000:]
        assert "sealing failed" not in "".join(w.stderr.text() for w in running)


def _write_more(http: httpx.Client, admin: dict[str, str]) -> list[str]:
    subjects = []
    for index in range(5):
        authority = http.post(
            "/api/v1/authorities",
            headers=admin,
            json={"name": f"bureau {index}", "jurisdiction": "5201"},
        )
        assert authority.status_code == 201, authority.text
        subjects.append(authority.json()["id"])
    return subjects
