"""Pure rules of the event log."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic_core import to_jsonable_python


def event_payload(data: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready payload: UUIDs, datetimes and enums as strings, so the stored row is canonical."""
    result = to_jsonable_python(data)
    assert isinstance(result, dict)
    return result


# --- the chain ---------------------------------------------------------------------------------

GENESIS = bytes(32)  # the "previous hash" of the first event
SEALED_FIELDS = (
    "seq", "id", "type", "subject_type", "subject_id", "actor_kind", "actor_principal_id",
    "actor_role", "actor_enterprise_id", "actor_authority_id", "request_id", "enterprise_ids",
    "facility_ids", "lot_ids", "region_codes", "occurred_at", "payload",
)  # fmt: skip


# How a time is spelled: UTC, RFC 3339, always six fraction digits ("2026-11-20T00:00:00.000000Z").
# The same in PostgreSQL's to_char, for the documents the database builds (`document_hash`).
TIME_FORMAT_SQL = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def _text(value: Any) -> Any:
    """UUIDs as strings, times as UTC RFC 3339 with microseconds: one spelling per value."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        # isoformat, not strftime: strftime's %Y drops the leading zeros of years before 1000 on
        # glibc (and not elsewhere); isoformat always writes four digits, as to_char does.
        return value.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def canonical_event(event: Mapping[str, Any]) -> bytes:
    """The bytes an event's hash covers: its sealed fields as JSON with sorted keys and no
    whitespace (RFC 8785 style; the values are strings, integers, arrays and objects)."""
    return orjson.dumps(
        {name: _text(event[name]) for name in SEALED_FIELDS}, option=orjson.OPT_SORT_KEYS
    )


def chain_hash(prev_hash: bytes, event: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(prev_hash + canonical_event(event)).digest()


def document_hash(prev_hash: bytes, seq: int, document: str | bytes) -> bytes:
    """`chain_hash` of an event given as a JSON document of its sealed fields but seq, already
    spelled as `canonical_event` spells them (UUIDs as text, `occurred_at` in TIME_FORMAT_SQL):
    parsed and written again with sorted keys and seq, these are the same bytes. The database
    builds such documents far more cheaply than Python decodes the columns (service.DOCUMENT)."""
    fields = orjson.loads(document)
    fields["seq"] = seq
    return hashlib.sha256(prev_hash + orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).digest()


def checkpoint_payload(seq: int, head_hash: bytes, made_at: datetime, key_id: str) -> bytes:
    return orjson.dumps(
        {"seq": seq, "head_hash": head_hash.hex(), "made_at": _text(made_at), "key_id": key_id},
        option=orjson.OPT_SORT_KEYS,
    )


@dataclass(frozen=True, slots=True)
class Break:
    """Where verification found the chain broken, and why."""

    seq: int
    reason: str  # missing | reordered | edited | bad_checkpoint_signature | checkpoint_mismatch
    detail: str


class ChainCheck:
    """Walks sealed events in sequence order and finds the first break. Fed in pages, so a chain
    of any length is checked in constant memory. Each event is a mapping with its `seq`,
    `prev_hash`, `hash` and `document` (see `document_hash`)."""

    def __init__(self, from_seq: int, prev_hash: bytes):
        self.expected = from_seq
        self.prev_hash = prev_hash
        self.hashes: dict[int, bytes] = {}  # of the seqs checkpoints name
        self.checked = 0
        self.broken: Break | None = None

    def feed(self, events: Iterable[Mapping[str, Any]], watch: frozenset[int]) -> None:
        if self.broken:
            return
        # The hot loop of verification: `document_hash` inlined, names bound locally.
        loads, dumps, sha256, sort_keys = orjson.loads, orjson.dumps, hashlib.sha256, _SORT_KEYS
        expected, prev_hash = self.expected, self.prev_hash
        try:
            for event in events:
                seq = event["seq"]
                if seq != expected:
                    kind = "missing" if seq > expected else "reordered"
                    self.broken = Break(expected, kind, f"expected seq {expected}, found {seq}")
                    return
                if event["prev_hash"] != prev_hash:
                    self.broken = Break(
                        seq, "reordered", "its previous hash is not the hash of the event before it"
                    )
                    return
                fields = loads(event["document"])
                fields["seq"] = seq
                digest = sha256(prev_hash + dumps(fields, option=sort_keys)).digest()
                if digest != event["hash"]:
                    self.broken = Break(seq, "edited", "its content no longer matches its hash")
                    return
                if seq in watch:
                    self.hashes[seq] = digest
                prev_hash = digest
                expected += 1
        finally:
            self.checked += expected - self.expected
            self.expected, self.prev_hash = expected, prev_hash


_SORT_KEYS = orjson.OPT_SORT_KEYS


def checkpoint_problem(
    checkpoint: Any, keys: Mapping[str, bytes], chain_hash_at_seq: bytes | None
) -> tuple[str, str] | None:
    """Why a checkpoint does not hold, if it does not: its signature, or the chain it names."""
    public_key = keys.get(checkpoint.key_id)
    expected = checkpoint_payload(
        checkpoint.seq, checkpoint.head_hash, checkpoint.made_at, checkpoint.key_id
    )
    if public_key is None or checkpoint.payload.encode() != expected:
        return "bad_checkpoint_signature", "its statement or key is not what was signed"
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            checkpoint.signature, checkpoint.payload.encode()
        )
    except InvalidSignature:
        return "bad_checkpoint_signature", f"the signature does not verify with {checkpoint.key_id}"
    if chain_hash_at_seq is None:
        return "missing", f"the checkpointed event {checkpoint.seq} is not in the chain"
    if chain_hash_at_seq != checkpoint.head_hash:
        return "checkpoint_mismatch", "the chain up to here is not the one that was checkpointed"
    return None
