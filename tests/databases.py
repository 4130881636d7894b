"""Test databases: on TEST_DATABASE_URL's server when set, else on one embedded PostgreSQL shared by
all xdist workers; each worker (and each migration test) gets a database of its own."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

_embedded: object | None = None
_lock = threading.Lock()


def server_url() -> str:
    """An asyncpg SQLAlchemy URL of the server (its `postgres` database)."""
    global _embedded
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        url = make_url(external)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+asyncpg")
        return url.set(database="postgres").render_as_string(hide_password=False)
    from integrations.embedded import EmbeddedPostgres

    with _lock:
        if _embedded is None:
            # Short and fixed: the Unix socket lives inside it, and reuse saves an initdb per run.
            embedded = EmbeddedPostgres(Path(tempfile.gettempdir()) / f"sf-test-{os.getuid()}")
            embedded.start()
            _embedded = embedded
    assert isinstance(_embedded, EmbeddedPostgres)
    return _embedded.url("postgres")


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _recreate(name: str) -> None:
    conn = await asyncpg.connect(_libpq(server_url()))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop(name: str) -> None:
    conn = await asyncpg.connect(_libpq(server_url()))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def in_thread(function: Callable[..., object], *args: object) -> None:
    """Run on a thread of its own, so that `asyncio.run` inside works whether or not this thread
    runs an event loop (pytest-asyncio's session loop does)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            function(*args)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _run(coro: Coroutine[object, object, None]) -> None:
    in_thread(asyncio.run, coro)


def fresh_database(prefix: str) -> str:
    """Create an empty database and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _run(_recreate(name))
    return make_url(server_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    assert name is not None
    _run(_drop(name))


def migrated_database(prefix: str) -> str:
    from integrations.migrate import upgrade

    url = fresh_database(prefix)
    in_thread(upgrade, url)
    return url
