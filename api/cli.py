"""The `scrapflow` command: serve, migrate, admin."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from integrations.logging import configure_logging
from integrations.settings import Settings, get_settings

app = typer.Typer(
    help="scrapflow: recycled aluminium and copper, lot by lot.", no_args_is_help=True
)
admin = typer.Typer(help="Platform administration.", no_args_is_help=True)
app.add_typer(admin, name="admin")
log = logging.getLogger("scrapflow")


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """DATABASE_URL when set; otherwise the embedded PostgreSQL in the data folder, stopped on exit
    (also on Ctrl-C: uvicorn turns SIGINT/SIGTERM into a normal return)."""
    if settings.database_url:
        yield settings.database_url
        return
    from integrations.embedded import EmbeddedPostgres, ensure_database

    embedded = EmbeddedPostgres(settings.data_dir)
    embedded.start()
    try:
        url = embedded.url("scrapflow")
        asyncio.run(ensure_database(url))
        yield url
    finally:
        embedded.stop()


def _migrate(url: str) -> None:
    from integrations import migrate

    migrate.upgrade(url)
    log.info("migrations applied")


async def _bootstrap(url: str) -> str | None:
    from domain.actor import SYSTEM
    from domain.identity.service import bootstrap_platform_admin
    from integrations.database import create_engine, session_factory

    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            secret = await bootstrap_platform_admin(session, SYSTEM)
            await session.commit()
            return secret
    finally:
        await engine.dispose()


async def _create_key(url: str, name: str) -> str:
    from domain.actor import SYSTEM, Role
    from domain.identity.service import Owner, create_api_key
    from integrations.database import create_engine, session_factory

    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            _, secret = await create_api_key(
                session,
                SYSTEM,
                name=name,
                role=Role.platform_admin,
                owner=Owner(None, None),
                expires_at=None,
            )
            await session.commit()
            return secret
    finally:
        await engine.dispose()


def _announce_key(secret: str, why: str) -> None:
    bar = "=" * 72
    print(
        f"{bar}\n{why}\n\n    {secret}\n\nIt is shown once; only its hash is stored.\n{bar}",
        flush=True,
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default SCRAPFLOW_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="Default SCRAPFLOW_PORT or 8000")] = None,
) -> None:
    """Run the API (embedded PostgreSQL unless DATABASE_URL is set); migrations run first."""
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        _migrate(url)
        secret = asyncio.run(_bootstrap(url))
        if secret:
            _announce_key(secret, "First start: the platform admin API key is")
        uvicorn.run(
            create_app(settings, url),
            host=host or settings.host,
            port=port or settings.port,
            log_config=None,
            access_log=False,
            proxy_headers=True,
        )


@app.command()
def migrate() -> None:
    """Apply the database migrations and exit."""
    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        _migrate(url)


@admin.command("create-key")
def create_key(
    name: Annotated[str, typer.Option(help="What the key is for")] = "platform admin (CLI)",
) -> None:
    """Create another platform admin API key and print it once."""
    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        _migrate(url)
        _announce_key(asyncio.run(_create_key(url, name)), "New platform admin API key:")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
