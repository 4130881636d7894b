"""Users, API keys, tokens and the caller's own identity."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import Name, Strict, Timestamp
from domain.actor import Role


class Owner(Strict):
    enterprise_id: uuid.UUID | None = Field(
        default=None, description="Set for enterprise principals (roles admin, operator, viewer)"
    )
    authority_id: uuid.UUID | None = Field(
        default=None, description="Set for authority principals (roles inspector, supervisor)"
    )


class UserCreate(Owner):
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=64)]
    display_name: Name
    password: Annotated[str, StringConstraints(min_length=12, max_length=256)]
    role: Role

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "username": "li.wei",
                    "display_name": "李伟",
                    "password": "correct horse battery",
                    "role": "operator",
                    "enterprise_id": "01936f1e-8d4a-7c3e-9a51-2b7c1d0e4f55",
                }
            ]
        },
    )


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    display_name: str
    role: Role
    enterprise_id: uuid.UUID | None
    authority_id: uuid.UUID | None
    status: str
    created_at: datetime


class ApiKeyCreate(Owner):
    name: Name
    role: Role
    expires_at: Timestamp | None = None
    facility_id: uuid.UUID | None = Field(
        default=None,
        description="For role device only (a weighbridge): the facility of the enterprise whose "
        "tickets the key posts. A device key can do nothing else.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "ERP integration",
                    "role": "operator",
                    "enterprise_id": "01936f1e-8d4a-7c3e-9a51-2b7c1d0e4f55",
                    "expires_at": "2027-12-31T23:59:59+08:00",
                },
                {
                    "name": "gate weighbridge 1",
                    "role": "device",
                    "enterprise_id": "01936f1e-8d4a-7c3e-9a51-2b7c1d0e4f55",
                    "facility_id": "01936f1e-9b2c-7d11-8e20-5f3a9c1b2d44",
                },
            ]
        },
    )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it")
    role: Role
    enterprise_id: uuid.UUID | None
    authority_id: uuid.UUID | None
    facility_id: uuid.UUID | None = Field(default=None, description="Device keys' facility")
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    secret: str | None = Field(
        description="The key itself, shown this once: only its hash is stored. An idempotent "
        "replay of this response has null here; revoke that key and create another if the "
        "first response was lost."
    )


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str = Field(description="Single use: each refresh returns a new one")


class RefreshIn(Strict):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class OwnerSummary(BaseModel):
    id: uuid.UUID
    name: str


class MeOut(BaseModel):
    principal_id: uuid.UUID | None
    principal_kind: str
    role: Role
    enterprise: OwnerSummary | None
    authority: OwnerSummary | None
    jurisdiction: str | None
