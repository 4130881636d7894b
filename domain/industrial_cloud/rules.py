"""Pure rules of the industrial-cloud report (issue 7 point 3): months in China Standard Time,
the report document (schema version 1.0, README "Industrial-cloud report"), the idempotency key,
and when and how long to retry a push."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any

from domain import retry
from domain.mass import g_to_kg

SCHEMA = "scrapflow.industrial-cloud.enterprise-month"
SCHEMA_VERSION = "1.0"
# Months are calendar months in Guizhou: China Standard Time has no daylight saving time.
CHINA = timezone(timedelta(hours=8), "CST")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_KEYS = uuid.UUID("5c0f6d8e-4b7a-4e0b-9d3c-2f1a8e6b7c90")  # namespace of idempotency keys


class PushStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    delivered = "delivered"
    failed = "failed"


class Trigger(StrEnum):
    cli = "cli"
    schedule = "schedule"


@dataclass(frozen=True, slots=True)
class Period:
    month: str  # YYYY-MM
    start: datetime  # the first instant of the month, +08:00
    end: datetime  # the first instant of the next month

    @classmethod
    def of(cls, year: int, month: int) -> Period:
        start = datetime(year, month, 1, tzinfo=CHINA)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=CHINA)
        return cls(f"{year:04d}-{month:02d}", start, end)


def parse_period(text: str) -> Period | None:
    """`2026-10` → October 2026 in China Standard Time; None for anything else."""
    found = _MONTH.match(text.strip())
    if found is None or not 1900 <= int(found.group(1)) <= 9000:
        return None
    return Period.of(int(found.group(1)), int(found.group(2)))


def previous_period(now: datetime) -> Period:
    """The month before the one `now` falls in (in China Standard Time)."""
    local = now.astimezone(CHINA)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return Period.of(year, month)


def idempotency_key(enterprise_id: uuid.UUID, month: str) -> str:
    """The same for every push of one enterprise's month, so the receiver can drop repeats."""
    return str(uuid.uuid5(_KEYS, f"{enterprise_id}/{month}"))


# --- retries ----------------------------------------------------------------------------------


class Verdict(StrEnum):
    delivered = "delivered"
    retry = "retry"
    refused = "refused"  # the receiver will not take it as it is: no point in retrying


RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


def verdict(status_code: int | None) -> Verdict:
    """None (no answer: timeout, connection refused or reset) and 5xx, 408, 409 (the receiver is
    busy with the same key), 425 and 429 are retried; any 2xx delivers; other answers refuse."""
    if status_code is None or status_code >= 500 or status_code in RETRYABLE_STATUSES:
        return Verdict.retry
    if 200 <= status_code < 300:
        return Verdict.delivered
    return Verdict.refused


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); the wait is
    capped again by the backoff's maximum."""
    delay = retry.parse_retry_after(value, now, timedelta(days=1))
    return None if delay is None else delay.total_seconds()


def retry_delay(
    attempt: int, base: float, cap: float, retry_after: float | None, jitter: float = 1.0
) -> float:
    """The wait after failed attempt `attempt` (1, 2, ...): base × 2^(attempt−1) scaled by a
    jitter in [0.5, 1] so that senders spread out, at most `cap`; a Retry-After the receiver
    sent is waited in full (also up to `cap`)."""
    backoff = base * 2.0 ** (attempt - 1) * min(1.0, max(0.5, jitter))
    if retry_after is not None:
        backoff = max(backoff, retry_after)
    return min(backoff, cap)


# --- the document -----------------------------------------------------------------------------


def kg(grams: int) -> float:
    """Kilograms as a JSON number: exact, since kilograms with 3 decimals round-trip a double."""
    return float(g_to_kg(grams))


def number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Energy:
    """What the enterprise's runs of one metal reported using, and the electricity's emissions."""

    runs: int = 0
    runs_reporting: int = 0
    electricity_kwh: Decimal = Decimal(0)
    natural_gas_m3: Decimal = Decimal(0)
    other_fuel_kgce: Decimal = Decimal(0)
    electricity_kgco2: Decimal | None = Decimal(0)  # None: the factor set lacks a grid factor

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "runs_reporting_energy": self.runs_reporting,
            "electricity_kwh": float(self.electricity_kwh),
            "natural_gas_m3": float(self.natural_gas_m3),
            "other_fuel_kgce": float(self.other_fuel_kgce),
        }


def total(values: list[Decimal | None]) -> Decimal | None:
    """A sum that is unknown when any part is."""
    if any(v is None for v in values):
        return None
    return sum((v for v in values if v is not None), Decimal(0))
