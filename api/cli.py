"""The `scrapflow` command: serve, migrate, admin, demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM, Role
from domain.audit import service as audit
from domain.identity import service as identity
from domain.registry import service as registry
from integrations import signing
from integrations.logging import configure_logging
from integrations.settings import Settings, get_settings

app = typer.Typer(
    help="scrapflow: recycled aluminium and copper, lot by lot.", no_args_is_help=True
)
admin = typer.Typer(help="Platform administration.", no_args_is_help=True)
app.add_typer(admin, name="admin")
keys = typer.Typer(help="The platform's signing keys.", no_args_is_help=True)
app.add_typer(keys, name="keys")
audit_cli = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_cli, name="audit")
report_cli = typer.Typer(help="The industrial-cloud report.", no_args_is_help=True)
app.add_typer(report_cli, name="report")
log = logging.getLogger("scrapflow")
T = TypeVar("T")


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """DATABASE_URL when set; otherwise the embedded PostgreSQL in the data folder, stopped on exit:
    after Ctrl-C (uvicorn returns normally) and after SIGTERM (see `_exit_on_sigterm`)."""
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


async def _in_session(url: str, use_case: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one use case in its own committed transaction, as the system actor."""
    from integrations.database import create_engine, session_factory

    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            result = await use_case(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


def _announce_key(secret: str, why: str) -> None:
    bar = "=" * 72
    print(
        f"{bar}\n{why}\n\n    {secret}\n\nIt is shown once; only its hash is stored.\n{bar}",
        flush=True,
    )


def _exit_on_sigterm() -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler that kills
    the process before the embedded PostgreSQL is stopped. Exiting through SystemExit instead runs
    every `finally` and atexit hook."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default SCRAPFLOW_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="Default SCRAPFLOW_PORT or 8000")] = None,
) -> None:
    """Run the API (embedded PostgreSQL unless DATABASE_URL is set); migrations run first."""
    import uvicorn

    from api import supervisor

    settings = get_settings()
    configure_logging(settings.log_level)
    host, port = host or settings.host, port or settings.port
    with database(settings) as url:
        _migrate(url)
        secret = asyncio.run(
            _in_session(url, lambda s: identity.bootstrap_platform_admin(s, SYSTEM))
        )
        if secret:
            _announce_key(secret, "First start: the platform admin API key is")
        if settings.workers > 1:
            os.environ["DATABASE_URL"] = url  # the workers' settings read it
            if settings.database_url:
                _become_supervisor(host, port, settings)
            # The embedded PostgreSQL lives as long as this process: it supervises the workers
            # itself, with everything imported above.
            _exit_on_sigterm()
            supervisor.run_workers(host, port, settings.workers)
        else:
            from api.app import create_app
            from api.asgi import tune_garbage_collector

            _exit_on_sigterm()
            app = create_app(settings, url)
            tune_garbage_collector()
            uvicorn.run(app, **supervisor.server_options(host, port))


def _become_supervisor(host: str, port: int, settings: Settings) -> NoReturn:
    """Replace this process, which has imported the domain, SQLAlchemy and the migrations (about
    100 MB), with a fresh interpreter running only uvicorn's supervisor (about 20 MB): the
    supervisor does nothing but watch the workers, and DESIGN §7 counts every process."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(  # noqa: S606 - this interpreter and our own module, arguments as a list
        sys.executable,
        [sys.executable, "-m", "api.supervisor", "--host", host, "--port", str(port),
         "--workers", str(settings.workers), "--log-level", settings.log_level],
    )  # fmt: skip


@app.command("worker")
def run_worker() -> None:
    """Background work without the API: the audit sealer and its signed checkpoints, and the
    webhook relay. Any number of workers and API processes may run; one seals at a time, and one
    relays to each webhook at a time. Stops on Ctrl-C or SIGTERM."""
    from api import worker
    from integrations.database import create_engine, session_factory
    from integrations.vault import load_vault
    from integrations.webhooks import relaying

    settings = get_settings()
    configure_logging(settings.log_level)
    signer = signing.load_signer(settings)
    vault = load_vault(settings)

    async def work() -> None:
        engine = create_engine(url, pool_size=4)
        sessionmaker = session_factory(engine)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            log.info("worker started: sealing the audit trail, relaying webhooks")
            await asyncio.gather(
                worker.sealing(sessionmaker, signer, settings, stop),
                relaying(sessionmaker, vault, settings, stop),
                worker.report_schedule(sessionmaker, settings, stop),
            )
        finally:
            await engine.dispose()

    with database(settings) as url:
        _migrate(url)
        asyncio.run(work())


@audit_cli.command("verify")
def verify_audit(
    from_seq: Annotated[int, typer.Option(min=1, help="First sequence number")] = 1,
    to_seq: Annotated[int | None, typer.Option(min=1, help="Last (default: the head)")] = None,
) -> None:
    """Recompute the audit chain and check its signed checkpoints. Prints the result as JSON;
    exits 1 at the first break (edited, missing, reordered, bad checkpoint signature)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        _migrate(url)
        started = time.perf_counter()
        keys = signing.trusted_keys(settings)
        result = asyncio.run(
            _in_session(url, lambda s: audit.verify_chain(s, from_seq, to_seq, trusted_keys=keys))
        )
        elapsed = time.perf_counter() - started
    report = {
        "valid": result.valid,
        "from_seq": result.from_seq,
        "to_seq": result.to_seq,
        "head_seq": result.head_seq,
        "events_checked": result.events_checked,
        "checkpoints_checked": result.checkpoints_checked,
        "seconds": round(elapsed, 3),
        "broken": None
        if result.broken is None
        else {
            "seq": result.broken.seq,
            "reason": result.broken.reason,
            "detail": result.broken.detail,
        },
    }
    typer.echo(json.dumps(report, indent=2))
    if not result.valid:
        raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Apply the database migrations and exit."""
    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        _migrate(url)


@app.command()
def demo(
    lots: Annotated[int, typer.Option("--lots", min=1, help="Lots to drive through the chain")],
    seed: Annotated[int, typer.Option(help="The demo's choices follow it")] = 1,
    workers: Annotated[
        int, typer.Option(min=1, help="Driving processes (default: up to 2, one per core)")
    ] = min(2, os.cpu_count() or 1),
) -> None:
    """Build a realistic Guizhou network (fictional enterprises in all nine prefectures) and drive
    N lots through every step: registration, bulking, shipments, pretreatment, melting, products,
    certificates. Run it on an empty database."""
    from api.demo import NetworkExists, report, run_demo

    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        _migrate(url)
        try:
            result = asyncio.run(
                run_demo(
                    url,
                    settings,
                    lots_count=lots,
                    seed=seed,
                    workers=workers,
                    echo=lambda line: print(line, flush=True),
                )
            )
        except NetworkExists as error:
            typer.echo(f"scrapflow: {error}", err=True)
            raise typer.Exit(2) from error
    report(result, lambda line: print(line, flush=True))


@admin.command("create-key")
def create_key(
    name: Annotated[str, typer.Option(help="What the key is for")] = "platform admin (CLI)",
) -> None:
    """Create another platform admin API key and print it once."""
    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        _migrate(url)
        _, secret = asyncio.run(
            _in_session(
                url,
                lambda s: identity.create_api_key(
                    s,
                    SYSTEM,
                    name=name,
                    role=Role.platform_admin,
                    owner=identity.Owner(None, None),
                    expires_at=None,
                ),
            )
        )
        _announce_key(secret, "New platform admin API key:")


@keys.command("rotate")
def rotate_key() -> None:
    """Put a new platform signing key in place of the current one (in the data folder). The old
    public key stays published, so what it signed still verifies; running servers sign with the
    new key after a restart."""
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        old, new = signing.rotate(settings)
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from error

    async def publish(session: AsyncSession) -> None:
        for signer in (old, new):
            await audit.publish_key(session, signer.key_id, signer.public_key)

    with database(settings) as url:
        _migrate(url)
        asyncio.run(_in_session(url, publish))
    typer.echo(f"signing key {new.key_id} replaces {old.key_id} (still published)")


@admin.command("create-authority")
def create_authority(
    name: Annotated[str, typer.Option(help="e.g. 贵州省工业和信息化厅")],
    jurisdiction: Annotated[str, typer.Option(help="Region prefix: 52 (province), 5201 ...")],
) -> None:
    """Register a regulating authority and print its id."""
    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        _migrate(url)
        authority = asyncio.run(
            _in_session(
                url,
                lambda s: registry.create_authority(
                    s, SYSTEM, name=name, jurisdiction=jurisdiction
                ),
            )
        )
        print(authority.id, flush=True)


@admin.command("create-enterprise")
def create_enterprise(
    name: Annotated[str, typer.Option()],
    uscc: Annotated[str, typer.Option(help="Unified social credit code")],
    region_code: Annotated[str, typer.Option(help="6-digit GB/T 2260 code")],
    role: Annotated[list[str], typer.Option(help="recycler, pretreater, smelter, ...")],
) -> None:
    """Register an enterprise and print its id."""
    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        _migrate(url)
        enterprise = asyncio.run(
            _in_session(
                url,
                lambda s: registry.create_enterprise(
                    s,
                    SYSTEM,
                    name=name,
                    uscc=uscc.strip().upper(),
                    roles=role,
                    region_code=region_code,
                ),
            )
        )
        print(enterprise.id, flush=True)


@report_cli.command("push")
def push_report(
    period: Annotated[str, typer.Option(help="The month, YYYY-MM (China Standard Time)")],
    enterprise: Annotated[
        list[str] | None, typer.Option(help="Only this enterprise (its id; repeatable)")
    ] = None,
) -> None:
    """Push the month's industrial-cloud reports (every enterprise, or those given) to
    SCRAPFLOW_INDUSTRIAL_CLOUD_URL, signed, with retries; a report delivered before is not sent
    again. Prints each outcome as JSON; exits 1 when one failed."""
    import uuid

    from domain.industrial_cloud.service import month
    from integrations import industrial_cloud
    from integrations.database import create_engine, session_factory

    settings = get_settings()
    configure_logging(settings.log_level)
    chosen = month(period)
    try:
        ids = [uuid.UUID(e) for e in enterprise] if enterprise else None
    except ValueError as error:
        raise typer.BadParameter(f"not an enterprise id: {error}") from error

    async def push(url: str) -> list[industrial_cloud.PushOutcome]:
        engine = create_engine(url, pool_size=2)
        try:
            return await industrial_cloud.push_period(
                session_factory(engine), settings, chosen, ids
            )
        finally:
            await engine.dispose()

    with database(settings) as url:
        _migrate(url)
        outcomes = asyncio.run(push(url))
    typer.echo(json.dumps([o.as_json() for o in outcomes], indent=2))
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def main() -> None:
    from domain.errors import DomainError

    try:
        app()
    except DomainError as error:
        print(f"scrapflow: {error.code}: {error.detail}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
