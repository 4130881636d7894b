"""Industrial-cloud rules: months in China Standard Time, idempotency keys, retry decisions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.industrial_cloud.rules import (
    CHINA,
    Period,
    Verdict,
    idempotency_key,
    parse_period,
    parse_retry_after,
    previous_period,
    retry_delay,
    verdict,
)


def test_a_month_is_a_calendar_month_in_china_standard_time() -> None:
    october = parse_period("2026-10")
    assert october is not None
    assert october.start.isoformat() == "2026-10-01T00:00:00+08:00"
    assert october.end.isoformat() == "2026-11-01T00:00:00+08:00"
    assert october.start.astimezone(UTC).isoformat() == "2026-09-30T16:00:00+00:00"
    december = Period.of(2026, 12)
    assert december.end == datetime(2027, 1, 1, tzinfo=CHINA)
    for bad in ("2026-13", "2026-00", "2026-1", "26-10", "2026/10", "", "1899-12", "2026-10-01"):
        assert parse_period(bad) is None, bad


def test_the_previous_month_is_taken_in_china_standard_time() -> None:
    # 2026-11-30T17:00Z is already 1 December in Guizhou: the previous month is November.
    assert previous_period(datetime(2026, 11, 30, 17, 0, tzinfo=UTC)).month == "2026-11"
    assert previous_period(datetime(2026, 11, 30, 15, 59, tzinfo=UTC)).month == "2026-10"
    assert previous_period(datetime(2027, 1, 15, tzinfo=UTC)).month == "2026-12"


@given(st.integers(min_value=1900, max_value=8999), st.integers(min_value=1, max_value=12))
def test_months_follow_each_other(year: int, month: int) -> None:
    period = Period.of(year, month)
    assert parse_period(period.month) == period
    assert previous_period(period.end) == period
    assert period.end - period.start in {timedelta(days=d) for d in (28, 29, 30, 31)}


def test_the_idempotency_key_is_stable_per_enterprise_and_month() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert idempotency_key(a, "2026-10") == idempotency_key(a, "2026-10")
    assert len({idempotency_key(a, "2026-10"), idempotency_key(a, "2026-11"),
                idempotency_key(b, "2026-10")}) == 3  # fmt: skip
    assert uuid.UUID(idempotency_key(a, "2026-10")).version == 5


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Verdict.delivered),
        (202, Verdict.delivered),
        (204, Verdict.delivered),
        (None, Verdict.retry),
        (500, Verdict.retry),
        (503, Verdict.retry),
        (429, Verdict.retry),
        (408, Verdict.retry),
        (409, Verdict.retry),
        (400, Verdict.refused),
        (401, Verdict.refused),
        (404, Verdict.refused),
        (422, Verdict.refused),
        (301, Verdict.refused),
    ],
)
def test_what_is_retried(status: int | None, expected: Verdict) -> None:
    assert verdict(status) is expected


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Tue, 24 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Tue, 24 Nov 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_doubles_within_its_cap_and_waits_for_retry_after() -> None:
    assert [retry_delay(n, 2.0, 300.0, None) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert retry_delay(20, 2.0, 300.0, None) == 300.0
    assert retry_delay(1, 2.0, 300.0, None, jitter=0.5) == 1.0
    assert retry_delay(1, 2.0, 300.0, 30.0) == 30.0
    assert retry_delay(1, 2.0, 300.0, 3600.0) == 300.0
