"""The README's walkthrough against the real `scrapflow serve` process, on its own embedded
PostgreSQL: first start prints the admin key once, Ctrl-C stops the server and its database, and a
restart keeps the data, prints no new key and still accepts the access tokens issued before."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

SCRAPFLOW = Path(sys.executable).parent / "scrapflow"
ADMIN_KEY = re.compile(r"sfk_[A-Za-z0-9]{38}")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# The README's example values (a valid USCC, Guiyang's Nanming and Yunyan districts).
ENTERPRISE = {
    "name": "贵阳再生资源回收有限公司",
    "uscc": "91520000214434146R",
    "roles": ["recycler"],
    "region_code": "520102",
}
USERNAME = "li.wei"
PASSWORD = "correct horse battery"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(data_dir: Path, port: int) -> dict[str, str]:
    """The caller's environment without any scrapflow setting or database URL: the embedded
    PostgreSQL and the JWT key file in the data folder are what this test is about."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SCRAPFLOW_") and name not in ("DATABASE_URL", "TEST_DATABASE_URL")
    }
    env["SCRAPFLOW_DATA_DIR"] = str(data_dir)
    env["SCRAPFLOW_PORT"] = str(port)
    env["SCRAPFLOW_HOST"] = "127.0.0.1"
    return env


class _Drain(threading.Thread):
    """Reads a pipe to its end so the server never blocks on a full pipe."""

    def __init__(self, stream: IO[bytes]):
        super().__init__(daemon=True)
        self._stream = stream
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        with self._stream:
            for line in iter(self._stream.readline, b""):
                with self._lock:
                    self._chunks.append(line)

    def text(self) -> str:
        with self._lock:
            return b"".join(self._chunks).decode("utf-8", errors="replace")


class Server:
    """One `scrapflow serve` process on loopback."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = _free_port()
        self.process = subprocess.Popen(
            [str(SCRAPFLOW), "serve"],
            env=_server_env(data_dir, self.port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._stdout = _Drain(self.process.stdout)
        self._stderr = _Drain(self.process.stderr)
        self._stdout.start()
        self._stderr.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self._stdout.text()

    def diagnostics(self) -> str:
        return f"stdout:\n{self.stdout()}\nstderr (tail):\n{self._stderr.text()[-4000:]}"

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(
                f"scrapflow serve exited with {self.process.returncode}\n{self.diagnostics()}"
            )

    def wait_for_admin_key(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            found = ADMIN_KEY.search(self.stdout())
            if found:
                return found.group(0)
            self._check_alive()
            time.sleep(0.05)
        pytest.fail(f"no admin key printed within {START_TIMEOUT:.0f} s\n{self.diagnostics()}")

    def wait_until_ready(self, deadline: float) -> None:
        with httpx.Client(base_url=self.base_url, timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        return
                time.sleep(0.1)
        pytest.fail(f"/readyz not 200 within {START_TIMEOUT:.0f} s\n{self.diagnostics()}")

    def interrupt(self, signum: int = signal.SIGINT) -> int:
        """Ctrl-C (or a process manager's SIGTERM); the exit code once the pipes are drained."""
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not stop within {STOP_TIMEOUT:.0f} s of SIGINT")
        self._join_pipes()
        return code

    def kill(self) -> None:
        """Last resort (a failed test): ask nicely, then kill."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self._join_pipes()

    def _join_pipes(self) -> None:
        self._stdout.join(timeout=5)
        self._stderr.join(timeout=5)


def _postmaster_pid(data_dir: Path) -> Path:
    return data_dir / "pg" / "postmaster.pid"


def _wait_gone(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _stop_orphaned_postgres(data_dir: Path) -> None:
    """After a failed test only: a server killed hard leaves its embedded PostgreSQL running."""
    pid_file = _postmaster_pid(data_dir)
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
        _wait_gone(pid_file)


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.url, response.text)
    return response.json()


@pytest.mark.e2e
def test_readme_walkthrough_survives_a_restart() -> None:
    assert SCRAPFLOW.exists(), f"{SCRAPFLOW} is missing: run `make install`"
    data_dir = Path(tempfile.mkdtemp(prefix="sfe2e", dir="/tmp"))
    servers: list[Server] = []
    try:
        # --- first start: migrations, the one-time admin key ---------------------------------
        first = Server(data_dir)
        servers.append(first)
        deadline = time.monotonic() + START_TIMEOUT
        admin_key = first.wait_for_admin_key(deadline)
        first.wait_until_ready(deadline)
        admin = {"Authorization": f"Bearer {admin_key}"}

        with httpx.Client(base_url=first.base_url, timeout=10.0, trust_env=False) as http:
            me = _ok(http.get("/api/v1/me", headers=admin))
            assert me["role"] == "platform_admin"
            assert me["principal_kind"] == "api_key"

            enterprise = _ok(
                http.post(
                    "/api/v1/enterprises",
                    headers={**admin, "Idempotency-Key": "readme-enterprise-1"},
                    json=ENTERPRISE,
                ),
                201,
            )
            enterprise_id = enterprise["id"]
            assert enterprise["uscc"] == ENTERPRISE["uscc"]
            assert enterprise["status"] == "active"

            facility = _ok(
                http.post(
                    "/api/v1/facilities",
                    headers=admin,
                    json={
                        "enterprise_id": enterprise_id,
                        "name": "云岩区回收网点 1",
                        "kind": "collection_point",
                        "region_code": "520103",
                        "address": "贵阳市云岩区中华北路 1 号",
                        "latitude": 26.58,
                        "longitude": 106.71,
                        "annual_capacity_t": 1200,
                        "permit_no": "GZ-RR-2026-0001",
                    },
                ),
                201,
            )
            assert facility["enterprise_id"] == enterprise_id
            assert facility["annual_capacity_t"] == 1200

            user = _ok(
                http.post(
                    "/api/v1/users",
                    headers=admin,
                    json={
                        "username": USERNAME,
                        "display_name": "李伟",
                        "password": PASSWORD,
                        "role": "admin",
                        "enterprise_id": enterprise_id,
                    },
                ),
                201,
            )
            assert user["enterprise_id"] == enterprise_id

            tokens = _ok(
                http.post("/api/v1/auth/token", data={"username": USERNAME, "password": PASSWORD})
            )
            assert tokens["token_type"] == "bearer"
            access = {"Authorization": f"Bearer {tokens['access_token']}"}

            me = _ok(http.get("/api/v1/me", headers=access))
            assert me["principal_kind"] == "user"
            assert me["principal_id"] == user["id"]
            assert me["role"] == "admin"
            assert me["enterprise"] == {"id": enterprise_id, "name": ENTERPRISE["name"]}

        key_file = data_dir / "keys" / "jwt.key"
        assert key_file.exists(), "without SCRAPFLOW_JWT_SECRET the signing key lives on disk"
        assert key_file.stat().st_mode & 0o077 == 0, "the JWT key file must be private"

        # --- Ctrl-C: the server and its embedded PostgreSQL stop -----------------------------
        assert first.interrupt() == 0, first.diagnostics()
        assert _wait_gone(_postmaster_pid(data_dir)), "embedded PostgreSQL still running"

        # --- restart on the same data: no new key, the data and the tokens are still good ----
        second = Server(data_dir)
        servers.append(second)
        second.wait_until_ready(time.monotonic() + START_TIMEOUT)
        assert "sfk_" not in second.stdout(), "a second start must not print an admin key"

        with httpx.Client(base_url=second.base_url, timeout=10.0, trust_env=False) as http:
            again = _ok(http.get(f"/api/v1/enterprises/{enterprise_id}", headers=admin))
            assert again["id"] == enterprise_id
            assert again["uscc"] == ENTERPRISE["uscc"]

            me = _ok(http.get("/api/v1/me", headers=access))
            assert me["principal_id"] == user["id"]
            assert me["enterprise"]["id"] == enterprise_id

        # A process manager stops it with SIGTERM: the embedded PostgreSQL must stop too.
        assert second.interrupt(signal.SIGTERM) == 0, second.diagnostics()
        assert _wait_gone(_postmaster_pid(data_dir)), "embedded PostgreSQL still running"
        # The whole output, now that the pipes are closed: still no key.
        assert "sfk_" not in second.stdout(), second.stdout()
    finally:
        for server in servers:
            server.kill()
        _stop_orphaned_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
