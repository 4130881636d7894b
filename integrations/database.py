"""The async engine and session factory."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = 30,
    read_only: bool = False,
) -> AsyncEngine:
    # Read-only engines make every transaction read-only at the server: a write sent to one by
    # mistake fails (SQLSTATE 25006) even where the server itself would accept it.
    connect_args = {"server_settings": {"default_transaction_read_only": "on"}} if read_only else {}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        connect_args=connect_args,
        # No pre-ping: it costs a round trip per request. A connection found dead fails its
        # request (503, retried by the client) and invalidates the pool, which reconnects.
        pool_recycle=1800,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
