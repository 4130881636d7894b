"""Alembic environment (async). The URL comes from the config (set by `integrations.migrate`) or
from DATABASE_URL, so `alembic upgrade head` and `alembic check` work from the shell too."""

from __future__ import annotations

import asyncio
import logging.config
import os

from alembic import context
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from domain.audit.models import Xid8
from domain.schema import metadata
from integrations import idempotency  # noqa: F401  (its table lives in the same metadata)
from integrations.settings import asyncpg_url

config = context.config
# Reflect the event log's xid8 column as the model's type, so `alembic check` sees no drift.
ischema_names.setdefault("xid8", Xid8)
if config.config_file_name and not logging.getLogger().handlers:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "set DATABASE_URL (or run `scrapflow migrate`, which knows the embedded one)"
        )
    return asyncpg_url(url)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
