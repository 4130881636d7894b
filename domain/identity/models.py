"""Principals: users (password login) and API keys (machines), and users' refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Column, ForeignKey, Uuid
from sqlmodel import Field, SQLModel

from domain.base import timestamp
from domain.ids import new_id

# A principal belongs to exactly one enterprise or one authority, or to neither (platform admin).
_ONE_OWNER = CheckConstraint("(enterprise_id IS NULL) OR (authority_id IS NULL)", name="one_owner")
_ADMIN_HAS_NO_OWNER = CheckConstraint(
    "(role = 'platform_admin') = (enterprise_id IS NULL AND authority_id IS NULL)",
    name="owner_matches_role",
)
# A weighbridge device key acts for exactly one facility, and only device keys have one.
_DEVICE_HAS_FACILITY = CheckConstraint(
    "(role = 'device') = (facility_id IS NOT NULL)", name="device_has_facility"
)


def _owner(table: str) -> Column[uuid.UUID]:
    return Column(Uuid(), ForeignKey(f"{table}.id"), nullable=True, index=True)


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (_ONE_OWNER, _ADMIN_HAS_NO_OWNER)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    display_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=200)
    role: str = Field(max_length=32)
    enterprise_id: uuid.UUID | None = Field(default=None, sa_column=_owner("enterprise"))
    authority_id: uuid.UUID | None = Field(default=None, sa_column=_owner("authority"))
    status: str = Field(default="active", max_length=16)
    created_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"
    __table_args__ = (_ONE_OWNER, _ADMIN_HAS_NO_OWNER, _DEVICE_HAS_FACILITY)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200)
    # The first characters, for people to recognise a key; the secret itself is never stored.
    prefix: str = Field(max_length=16)
    secret_hash: str = Field(max_length=64, unique=True)
    role: str = Field(max_length=32)
    enterprise_id: uuid.UUID | None = Field(default=None, sa_column=_owner("enterprise"))
    authority_id: uuid.UUID | None = Field(default=None, sa_column=_owner("authority"))
    facility_id: uuid.UUID | None = Field(default=None, sa_column=_owner("facility"))
    created_by: uuid.UUID | None = None
    expires_at: datetime | None = Field(default=None, sa_column=timestamp())
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp())
    created_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))


class RefreshToken(SQLModel, table=True):
    """One row per issued refresh token. Tokens of one login share a family: reusing a rotated
    token revokes the whole family (it means the token was stolen or replayed)."""

    __tablename__ = "refresh_token"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    family_id: uuid.UUID = Field(index=True)
    user_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("app_user.id"), nullable=False, index=True)
    )
    token_hash: str = Field(max_length=64, unique=True)
    expires_at: datetime = Field(sa_column=timestamp(nullable=False))
    rotated_at: datetime | None = Field(default=None, sa_column=timestamp())
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp())
    created_at: datetime | None = Field(default=None, sa_column=timestamp(now=True))
