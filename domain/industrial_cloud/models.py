"""Pushes of the monthly industrial-cloud report: one row per enterprise and month with its
outcome, one row per HTTP attempt, and one row per month the worker's schedule has taken on."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, UniqueConstraint, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from domain.base import timestamp
from domain.ids import new_id


class ReportPush(SQLModel, table=True):
    """The report of one enterprise for one month and where its delivery stands. Statuses:
    `pending` (not sent, or a sender stopped), `sending` (a sender holds it until
    `claimed_until`), `delivered` (a 2xx answer; never sent again), `failed` (retries used up or
    refused; a later push tries again with the same idempotency key)."""

    __tablename__ = "report_push"
    __table_args__ = (
        UniqueConstraint("enterprise_id", "period"),
        Index("ix_report_push_period", "period", "status"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    enterprise_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("enterprise.id"), nullable=False)
    )
    period: str = Field(max_length=7)  # YYYY-MM, a calendar month in China Standard Time
    idempotency_key: str = Field(max_length=64)
    status: str = Field(default="pending", max_length=16)
    trigger: str = Field(max_length=16)  # cli | schedule: who pushed last
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=1000)
    schema_version: str | None = Field(default=None, max_length=16)
    # The document last sent, and the SHA-256 of its exact bytes (what the signature covers).
    document: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    body_sha256: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = Field(default=None, sa_column=timestamp())
    created_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    last_attempt_at: datetime | None = Field(default=None, sa_column=timestamp())
    delivered_at: datetime | None = Field(default=None, sa_column=timestamp())


class ReportPushAttempt(SQLModel, table=True):
    """One HTTP request of a push: its answer's status code, or the error that stood in for it."""

    __tablename__ = "report_push_attempt"

    push_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("report_push.id"), primary_key=True)
    )
    number: int = Field(primary_key=True)  # 1, 2, ... across every push of the report
    attempted_at: datetime = Field(sa_column=timestamp(nullable=False))
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=1000)
    duration_ms: int = 0


class ReportSchedule(SQLModel, table=True):
    """A month the worker's schedule pushes, so that it is pushed once: a worker takes it on
    (and keeps `claimed_until` ahead while it works); it is done when `finished_at` is set. A
    worker stopped half-way leaves it to another once its claim has run out."""

    __tablename__ = "report_schedule"

    period: str = Field(primary_key=True, max_length=7)
    claimed_until: datetime | None = Field(default=None, sa_column=timestamp())
    started_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
    finished_at: datetime | None = Field(default=None, sa_column=timestamp())
    enterprises: int = 0
    delivered: int = 0
    failed: int = 0
