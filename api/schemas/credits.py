"""Recycled credits and certificates."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import KilogramsOut, Page, PositiveKilograms, Strict
from domain.credits.models import Certificate, CreditEntry
from domain.credits.rules import Method, RecycledClass
from domain.credits.service import Balance, b64url
from domain.mass import g_to_kg


class CertificateCreate(Strict):
    lot_id: uuid.UUID = Field(description="A product lot produced or held by your enterprise")
    recipient_enterprise_id: uuid.UUID
    method: Method = Field(
        description="`proportional` claims exactly the recycled composition of the certified"
        " mass; `mass_balance` claims `claimed_recycled_kg` from your credit balance"
    )
    mass_kg: PositiveKilograms | None = Field(
        default=None, description="Certified mass; the lot's mass not yet certified if left out"
    )
    claimed_recycled_kg: PositiveKilograms | None = Field(
        default=None, description="Mass balance only: recycled kilograms claimed (≤ mass)"
    )
    recycled_class: RecycledClass | None = Field(
        default=None,
        description="Mass balance only: claim from this class; post-consumer first otherwise",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "01930000-0000-7000-8000-000000000001",
                    "recipient_enterprise_id": "01930000-0000-7000-8000-000000000002",
                    "method": "mass_balance",
                    "claimed_recycled_kg": 12000.5,
                }
            ]
        },
    )


class ClaimOut(BaseModel):
    post_consumer_kg: KilogramsOut
    pre_consumer_kg: KilogramsOut
    total_kg: KilogramsOut


class CertificateOut(BaseModel):
    id: uuid.UUID
    number: str
    status: Literal["valid", "revoked"]
    lot_id: uuid.UUID
    issuer_enterprise_id: uuid.UUID
    recipient_enterprise_id: uuid.UUID
    debited_enterprise_id: uuid.UUID = Field(description="Whose credits the claim spent")
    method: Method
    metal: str
    mass_kg: KilogramsOut
    claimed: ClaimOut
    issued_at: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    payload: dict[str, Any] = Field(description="The signed statement, parsed")
    payload_canonical: str = Field(
        description="The exact signed bytes (canonical JSON, UTF-8): verify the signature on these"
    )
    signature: str = Field(description="Ed25519 signature of payload_canonical, base64url")
    key_id: str = Field(description="The platform key that signed it: see /api/v1/public/keys")
    verification_url: str = Field(description="Public, no login: suitable for a QR code")
    version: int

    @classmethod
    def of(cls, certificate: Certificate, payload: dict[str, Any]) -> CertificateOut:
        c = certificate
        return cls(
            id=c.id,
            number=c.number,
            status=c.status,
            lot_id=c.lot_id,
            issuer_enterprise_id=c.issuer_enterprise_id,
            recipient_enterprise_id=c.recipient_enterprise_id,
            debited_enterprise_id=c.debited_enterprise_id,
            method=Method(c.method),
            metal=c.metal,
            mass_kg=g_to_kg(c.mass_g),
            claimed=ClaimOut(
                post_consumer_kg=g_to_kg(c.claimed_post_consumer_g),
                pre_consumer_kg=g_to_kg(c.claimed_pre_consumer_g),
                total_kg=g_to_kg(c.claimed_post_consumer_g + c.claimed_pre_consumer_g),
            ),
            issued_at=c.issued_at,
            revoked_at=c.revoked_at,
            revocation_reason=c.revocation_reason,
            payload=payload,
            payload_canonical=c.payload,
            signature=b64url(c.signature),
            key_id=c.key_id,
            verification_url=payload["verification_url"],
            version=c.version,
        )


class VerificationOut(BaseModel):
    """What anyone may learn from a certificate number."""

    number: str
    status: Literal["valid", "revoked"]
    revoked_at: datetime | None
    revocation_reason: str | None
    payload: dict[str, Any]
    payload_canonical: str
    signature: str
    key_id: str


class PublicKeyOut(BaseModel):
    key_id: str
    algorithm: Literal["Ed25519"]
    public_key: str = Field(description="The raw 32-byte public key, base64url")
    jwk: dict[str, str] = Field(description="The same key as a JSON Web Key (RFC 8037)")
    created_at: datetime
    current: bool = Field(description="Signs what is issued now; older keys verify older claims")


class BalanceOut(BaseModel):
    metal: str
    recycled_class: RecycledClass
    balance_kg: KilogramsOut
    expired_kg: KilogramsOut = Field(
        description="Past its accounting period, no longer spendable (already left out of"
        " balance_kg); written off in the ledger at the account's next movement"
    )

    @classmethod
    def of(cls, balance: Balance) -> BalanceOut:
        return cls(
            metal=balance.metal,
            recycled_class=RecycledClass(balance.recycled_class),
            balance_kg=g_to_kg(balance.balance_g),
            expired_kg=g_to_kg(balance.expired_g),
        )


class EntryOut(BaseModel):
    id: uuid.UUID
    metal: str
    recycled_class: RecycledClass
    kind: Literal["credit", "debit", "expiry", "reversal", "restore"]
    kg: KilogramsOut = Field(description="Signed: credits add, debits and expiries subtract")
    balance_after_kg: KilogramsOut
    lot_id: uuid.UUID | None
    transformation_id: uuid.UUID | None
    certificate_id: uuid.UUID | None
    recorded_at: datetime

    @classmethod
    def of(cls, entry: CreditEntry) -> EntryOut:
        assert entry.recorded_at is not None
        return cls(
            id=entry.id,
            metal=entry.metal,
            recycled_class=RecycledClass(entry.recycled_class),
            kind=entry.kind,
            kg=g_to_kg(entry.grams),
            balance_after_kg=g_to_kg(entry.balance_after_g),
            lot_id=entry.lot_id,
            transformation_id=entry.transformation_id,
            certificate_id=entry.certificate_id,
            recorded_at=entry.recorded_at,
        )


class CreditsOut(Page[EntryOut]):
    """Balances now, and the ledger entries (oldest first, keyset paged)."""

    enterprise_id: uuid.UUID
    balances: list[BalanceOut]
