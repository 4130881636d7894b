"""Writing the event log: every state change records its event in its own transaction."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import ColumnElement, exists, false, func, insert, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlmodel import col

from domain.actor import Actor
from domain.audit.models import Checkpoint, Event, SigningKey
from domain.audit.rules import (
    GENESIS,
    SEALED_FIELDS,
    TIME_FORMAT_SQL,
    Break,
    ChainCheck,
    checkpoint_payload,
    checkpoint_problem,
    document_hash,
    event_payload,
)
from domain.base import utcnow
from domain.bulk import copy_rows, driver


@dataclass(frozen=True, slots=True)
class Change:
    type: str
    subject_type: str
    subject_id: uuid.UUID | str
    payload: dict[str, Any]
    enterprise_ids: Iterable[uuid.UUID | None] = ()
    facility_ids: Iterable[uuid.UUID] = ()
    region_codes: Iterable[str] = ()
    lot_ids: Iterable[uuid.UUID] = field(default=())


EVENT_COLUMNS = (
    "type", "subject_type", "subject_id", "actor_kind", "actor_principal_id", "actor_role",
    "actor_enterprise_id", "actor_authority_id", "request_id", "enterprise_ids", "facility_ids",
    "region_codes", "lot_ids", "payload",
)  # fmt: skip


def event_rows(actor: Actor, changes: Iterable[Change]) -> list[dict[str, Any]]:
    """The event rows of `changes`. The acting enterprise always counts as touched, so it sees
    its own events."""
    return [event_row(actor, change) for change in changes]


def event_row(actor: Actor, change: Change) -> dict[str, Any]:
    touched = {e for e in (*change.enterprise_ids, actor.enterprise_id) if e is not None}
    return {
        "type": change.type,
        "subject_type": change.subject_type,
        "subject_id": str(change.subject_id),
        "actor_kind": actor.principal_kind.value,
        "actor_principal_id": actor.principal_id,
        "actor_role": actor.role.value,
        "actor_enterprise_id": actor.enterprise_id,
        "actor_authority_id": actor.authority_id,
        "request_id": actor.request_id,
        "enterprise_ids": sorted(touched),
        "facility_ids": sorted(set(change.facility_ids)),
        "region_codes": sorted(set(change.region_codes)),
        "lot_ids": list(dict.fromkeys(change.lot_ids)),
        "payload": event_payload(change.payload),
    }


async def record_many(session: AsyncSession, actor: Actor, changes: Iterable[Change]) -> None:
    """Append the events of `changes` in one multi-row insert."""
    rows = event_rows(actor, changes)
    if rows:
        await session.execute(insert(Event), rows)


def payload_json(payload: dict[str, Any]) -> str:
    """A payload as the text a jsonb column takes on the driver's own paths (COPY, raw SQL)."""
    return orjson.dumps(payload).decode()


async def copy_events(session: AsyncSession, actor: Actor, changes: Iterable[Change]) -> None:
    """Append many events through COPY (bulk registration). Each event's row is made as COPY
    takes it: a 5,000-lot batch would otherwise hold 5,000 rows and their JSON at once."""
    await copy_rows(session, "event", EVENT_COLUMNS, (_copy_record(actor, c) for c in changes))


def _copy_record(actor: Actor, change: Change) -> tuple[Any, ...]:
    row = event_row(actor, change)
    row["payload"] = payload_json(row["payload"])
    return tuple(row[c] for c in EVENT_COLUMNS)


async def record(
    session: AsyncSession,
    actor: Actor,
    type: str,
    *,
    subject_type: str,
    subject_id: uuid.UUID | str,
    payload: dict[str, Any],
    enterprise_ids: Iterable[uuid.UUID | None] = (),
    facility_ids: Iterable[uuid.UUID] = (),
    region_codes: Iterable[str] = (),
    lot_ids: Iterable[uuid.UUID] = (),
) -> None:
    await record_many(
        session,
        actor,
        [
            Change(
                type=type,
                subject_type=subject_type,
                subject_id=subject_id,
                payload=payload,
                enterprise_ids=enterprise_ids,
                facility_ids=facility_ids,
                region_codes=region_codes,
                lot_ids=lot_ids,
            )
        ],
    )


async def publish_key(session: AsyncSession, key_id: str, public_key: bytes) -> None:
    """Publish a platform public key (once; published keys stay, for what they signed)."""
    await session.execute(
        pg_insert(SigningKey)
        .values(key_id=key_id, public_key=public_key)
        .on_conflict_do_nothing(index_elements=["key_id"])
    )


async def published_keys(session: AsyncSession) -> Sequence[SigningKey]:
    return (await session.scalars(select(SigningKey).order_by(col(SigningKey.created_at)))).all()


# --- sealing and verification -------------------------------------------------------------------

SEALER_LOCK = 0x5345414C  # one sealer at a time, in whichever process ("SEAL")


def _document_columns() -> str:
    return ", ".join(
        f"to_char(e.occurred_at AT TIME ZONE 'UTC', '{TIME_FORMAT_SQL}') AS occurred_at"
        if name == "occurred_at"
        else f"e.{name}"
        for name in SEALED_FIELDS
        if name != "seq"
    )


# An event's sealed fields but seq as one JSON text, built by PostgreSQL: UUIDs in their text
# form, `occurred_at` in UTC with microseconds, the payload as stored; what `rules.document_hash`
# takes. Several times cheaper than decoding the columns into Python objects and spelling them
# out again (which kept verification well under 50,000 events/s); row_to_json over a LATERAL
# row is cheaper again than json_build_object. Select DOCUMENT from DOCUMENT_FROM (alias `e`).
DOCUMENT_FROM = f"event e, LATERAL (SELECT {_document_columns()}) d"
DOCUMENT = "row_to_json(d)::text"
_UNSEALED = f"""
SELECT e.id, {DOCUMENT} AS document
FROM {DOCUMENT_FROM}
WHERE e.seq IS NULL AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.txid, e.id
LIMIT $1
"""  # noqa: S608 - the column names are constants


class Signer(Protocol):
    """The platform's signing key (Ed25519, implemented in `integrations`)."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Sealed:
    count: int
    head_seq: int
    checkpoint: Checkpoint | None


async def seal(
    session: AsyncSession,
    signer: Signer,
    *,
    limit: int = 5000,
    checkpoint_every: int = 10_000,
    checkpoint_after: timedelta = timedelta(minutes=5),
) -> Sealed:
    """Seal the next events in commit-safe order: only rows whose inserting transaction is older
    than every transaction still running, so no event can later appear before a sealed one.
    Each gets the next sequence number and a hash chained to the one before it; a signed
    checkpoint follows every `checkpoint_every` events or `checkpoint_after`."""
    # Through the session, not the driver: this is what begins the transaction, and the lock
    # (and the head read below) must be in it. On the bare driver connection no BEGIN has been
    # sent yet, so each statement would commit on its own and release the lock at once.
    if not await session.scalar(select(func.pg_try_advisory_xact_lock(SEALER_LOCK))):
        return Sealed(0, 0, None)  # another process is sealing
    conn = await driver(session)
    head = await conn.fetchrow(
        "SELECT seq, hash FROM event WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
    )
    seq, prev_hash = (head["seq"], head["hash"]) if head else (0, GENESIS)
    rows = await conn.fetch(_UNSEALED, limit)
    ids, seqs, prevs, hashes = [], [], [], []
    for record in rows:
        seq += 1
        digest = document_hash(prev_hash, seq, record["document"])
        ids.append(record["id"])
        seqs.append(seq)
        prevs.append(prev_hash)
        hashes.append(digest)
        prev_hash = digest
    if rows:
        await conn.execute(
            "UPDATE event e SET seq = v.seq, prev_hash = v.prev, hash = v.hash"
            " FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])"
            " AS v(id, seq, prev, hash) WHERE e.id = v.id",
            ids,
            seqs,
            prevs,
            hashes,
        )
    checkpoint = await _checkpoint_if_due(
        session, signer, seq, prev_hash, checkpoint_every, checkpoint_after
    )
    return Sealed(len(rows), seq, checkpoint)


async def _checkpoint_if_due(
    session: AsyncSession,
    signer: Signer,
    head_seq: int,
    head_hash: bytes,
    every: int,
    after: timedelta,
) -> Checkpoint | None:
    if head_seq == 0:
        return None
    last = await latest_checkpoint(session)
    now = utcnow()
    if last is not None and (
        last.seq == head_seq or (head_seq - last.seq < every and now - last.made_at < after)
    ):
        return None
    return await make_checkpoint(session, signer, head_seq, head_hash, now)


async def make_checkpoint(
    session: AsyncSession, signer: Signer, seq: int, head_hash: bytes, now: datetime
) -> Checkpoint:
    await publish_key(session, signer.key_id, signer.public_key)
    payload = checkpoint_payload(seq, head_hash, now, signer.key_id)
    checkpoint = Checkpoint(
        seq=seq,
        head_hash=head_hash,
        made_at=now,
        key_id=signer.key_id,
        payload=payload.decode(),
        signature=signer.sign(payload),
    )
    session.add(checkpoint)
    await session.flush()
    return checkpoint


async def latest_checkpoint(session: AsyncSession) -> Checkpoint | None:
    return await session.scalar(select(Checkpoint).order_by(col(Checkpoint.seq).desc()).limit(1))


@dataclass(frozen=True, slots=True)
class Verification:
    from_seq: int
    to_seq: int
    events_checked: int
    checkpoints_checked: int
    head_seq: int
    broken: Break | None

    @property
    def valid(self) -> bool:
        return self.broken is None


_SEALED = f"""
SELECT e.seq, e.prev_hash, e.hash, {DOCUMENT} AS document FROM {DOCUMENT_FROM}
WHERE e.seq >= $1 AND e.seq <= $2 ORDER BY e.seq LIMIT $3
"""  # noqa: S608 - the column names are constants
_CHUNK = 256  # events checked between turns of the event loop


async def _raw(connection: AsyncConnection) -> Any:
    return (await connection.get_raw_connection()).driver_connection


async def _sealed_pages(
    session: AsyncSession, first: int, last: int, size: int, *, read_ahead: bool
) -> AsyncGenerator[Sequence[Any], None]:
    """Sealed events `first`..`last` in pages of seq ranges. With `read_ahead`, two pages are read
    at a time on two connections of their own while the caller checks the one before, so that
    PostgreSQL builds documents on one core while Python hashes on another (about 1.4 times the
    rate on two cores). Only for a session without a transaction of its own: then all it could
    read is committed, and sealed rows never change, so any connection reads them the same."""
    bind = session.bind
    if not read_ahead or not isinstance(bind, AsyncEngine):
        conn = await driver(session)
        cursor = first
        while cursor <= last:
            rows = await conn.fetch(_SEALED, cursor, last, size)
            if not rows:
                return
            yield rows
            cursor = rows[-1]["seq"] + 1
        return
    async with bind.connect() as one, bind.connect() as two:
        readers = [await _raw(one), await _raw(two)]
        starts = iter(range(first, last + 1, size))
        pending: list[asyncio.Task[Any]] = []

        def read_next() -> None:
            start = next(starts, None)
            if start is not None:
                reader = readers[(start - first) // size % 2]
                pending.append(
                    asyncio.ensure_future(
                        reader.fetch(_SEALED, start, min(start + size - 1, last), size)
                    )
                )

        try:
            read_next()
            read_next()
            while pending:
                rows = await pending.pop(0)
                read_next()
                if rows:
                    yield rows
        finally:
            for task in pending:  # the caller stopped early: let the connections finish
                with contextlib.suppress(Exception):
                    await task


async def verify_chain(
    session: AsyncSession,
    from_seq: int = 1,
    to_seq: int | None = None,
    *,
    trusted_keys: Mapping[str, bytes] | None = None,
    page: int = 10_000,
) -> Verification:
    """Recompute the chain over [from_seq, to_seq] and check the checkpoints in it: the first
    break found, with its reason (missing, reordered, edited, bad checkpoint signature)."""
    conn = await driver(session)
    read_ahead = not conn.is_in_transaction()
    head_seq = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM event") or 0
    # A checkpoint beyond the last event still names events that must be there: events deleted
    # from the end are missing, not a shorter chain.
    checkpointed = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM audit_checkpoint") or 0
    top = max(head_seq, checkpointed)
    last = top if to_seq is None else min(to_seq, top)
    start = await conn.fetchrow("SELECT hash FROM event WHERE seq = $1", from_seq - 1)
    check = ChainCheck(from_seq, GENESIS if from_seq <= 1 or start is None else start["hash"])
    checkpoints = (
        await session.scalars(
            select(Checkpoint)
            .where(col(Checkpoint.seq).between(from_seq, last))
            .order_by(col(Checkpoint.seq))
        )
    ).all()
    watch = frozenset(c.seq for c in checkpoints)
    pages = _sealed_pages(session, from_seq, last, page, read_ahead=read_ahead)
    async with contextlib.aclosing(pages):
        async for rows in pages:
            for chunk in range(0, len(rows), _CHUNK):
                check.feed(rows[chunk : chunk + _CHUNK], watch)
                await asyncio.sleep(0)  # the next pages come in meanwhile
            if check.broken:
                break
    if not check.broken and check.expected <= last:
        check.broken = Break(check.expected, "missing", f"no event has seq {check.expected}")
    # The keys a checkpoint may be signed with come from outside the database when given (the
    # platform's own and retired keys): whoever can write the database could otherwise add a key
    # of their own, rewrite the chain and sign new checkpoints.
    keys = (
        dict(trusted_keys)
        if trusted_keys is not None
        else {k.key_id: k.public_key for k in await published_keys(session)}
    )
    checked = 0
    for checkpoint in checkpoints:
        if check.broken and checkpoint.seq >= check.broken.seq:
            break
        problem = checkpoint_problem(checkpoint, keys, check.hashes.get(checkpoint.seq))
        if problem:
            check.broken = Break(checkpoint.seq, *problem)
            break
        checked += 1
    return Verification(from_seq, last, check.checked, checked, head_seq, check.broken)


@dataclass(frozen=True, slots=True)
class EventFilter:
    type: str | None = None
    enterprise_id: uuid.UUID | None = None
    facility_id: uuid.UUID | None = None
    lot_id: uuid.UUID | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None


def event_visible_to(actor: Actor) -> ColumnElement[bool]:
    """Enterprises see the events that touch them; authorities those touching a region of their
    jurisdiction; platform admins everything."""
    if actor.is_platform_admin:
        return true()
    if actor.enterprise_id is not None:
        return col(Event.enterprise_ids).contains([actor.enterprise_id])
    if actor.jurisdiction is not None:
        region = func.unnest(col(Event.region_codes)).table_valued("code").render_derived("region")
        return exists(
            select(1).select_from(region).where(region.c.code.startswith(actor.jurisdiction))
        )
    return false()


async def list_events(
    session: AsyncSession, actor: Actor, where: EventFilter, *, after_seq: int, limit: int
) -> tuple[Sequence[Event], int | None]:
    """Sealed events the caller may see, in sequence order from `after_seq`; and the seq to
    continue after, if there may be more."""
    query = select(Event).where(
        col(Event.seq) > after_seq, col(Event.seq).is_not(None), event_visible_to(actor)
    )
    if where.type is not None:
        query = query.where(col(Event.type) == where.type)
    if where.enterprise_id is not None:
        query = query.where(col(Event.enterprise_ids).contains([where.enterprise_id]))
    if where.facility_id is not None:
        query = query.where(col(Event.facility_ids).contains([where.facility_id]))
    if where.lot_id is not None:
        query = query.where(col(Event.lot_ids).contains([where.lot_id]))
    if where.occurred_from is not None:
        query = query.where(col(Event.occurred_at) >= where.occurred_from)
    if where.occurred_to is not None:
        query = query.where(col(Event.occurred_at) < where.occurred_to)
    rows = (await session.scalars(query.order_by(col(Event.seq)).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].seq if more else None)
