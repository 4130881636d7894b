"""Shared table plumbing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import SQLModel

metadata = SQLModel.metadata  # with the naming convention set in domain/__init__.py


def utcnow() -> datetime:
    return datetime.now(UTC)
