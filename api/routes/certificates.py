"""Recycled-content certificates: issue, read, revoke; public verification and keys."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import Path, Request, Response

from api.deps import AppSettings, CurrentActor, PageParams, Session, encode_cursor, etag
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Page, ReasonBody
from api.schemas.credits import CertificateCreate, CertificateOut, PublicKeyOut, VerificationOut
from api.uow import Idempotent
from domain.audit import service as audit
from domain.audit.service import Signer
from domain.credits import service as credits
from domain.credits.models import Certificate
from domain.credits.service import b64url
from domain.errors import NotFound
from domain.mass import kg_to_g

router = resource_router("credits")
public = resource_router("public")


class UnknownCertificate(NotFound):
    code = "unknown_certificate"
    title = "Unknown certificate"


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def _verification_url(settings: AppSettings) -> str:
    return settings.public_base_url.rstrip("/") + "/api/v1/public/certificates/{number}"


def _out(certificate: Certificate) -> CertificateOut:
    payload: dict[str, Any] = orjson.loads(certificate.payload)
    return CertificateOut.of(certificate, payload)


@router.post(
    "/certificates",
    status_code=201,
    response_model=CertificateOut,
    dependencies=[Idempotent],
    responses=responses(401, 403, 404, 409, 422),
    summary="Certify the recycled content of a product lot to a recipient (signed, Ed25519)",
)
async def issue(
    body: CertificateCreate,
    request: Request,
    session: Session,
    actor: CurrentActor,
    settings: AppSettings,
    response: Response,
) -> CertificateOut:
    issued = await credits.issue_certificate(
        session,
        actor,
        _signer(request),
        credits.Issue(
            lot_id=body.lot_id,
            recipient_enterprise_id=body.recipient_enterprise_id,
            method=body.method,
            mass_g=kg_to_g(body.mass_kg) if body.mass_kg is not None else None,
            claimed_g=(
                kg_to_g(body.claimed_recycled_kg) if body.claimed_recycled_kg is not None else None
            ),
            recycled_class=body.recycled_class,
        ),
        _verification_url(settings),
    )
    response.headers["Location"] = f"/api/v1/certificates/{issued.certificate.id}"
    response.headers["ETag"] = etag(issued.certificate.version)
    return CertificateOut.of(issued.certificate, issued.payload)


@router.get(
    "/certificates",
    response_model=Page[CertificateOut],
    responses=responses(401, 422),
    summary="Certificates you issued or received; for authorities, those in jurisdiction",
)
async def list_certificates(
    session: Session, actor: CurrentActor, page: PageParams
) -> Page[CertificateOut]:
    found = await credits.list_certificates(session, actor, after=page.after, limit=page.limit)
    return Page(items=[_out(c) for c in found.items], next_cursor=encode_cursor(found.next_after))


@router.get(
    "/certificates/{certificate_id}",
    response_model=CertificateOut,
    responses=responses(401, 404, 422),
    summary="One certificate, with its signed payload",
)
async def get_certificate(
    certificate_id: uuid.UUID, session: Session, actor: CurrentActor, response: Response
) -> CertificateOut:
    certificate = await credits.get_certificate(session, actor, certificate_id)
    response.headers["ETag"] = etag(certificate.version)
    return _out(certificate)


@router.post(
    "/certificates/{certificate_id}/revoke",
    response_model=CertificateOut,
    dependencies=[Idempotent],
    responses=responses(401, 403, 404, 409, 422),
    summary="Revoke with a reason (issuer or supervising authority); credits go back",
)
async def revoke(
    certificate_id: uuid.UUID, body: ReasonBody, session: Session, actor: CurrentActor
) -> CertificateOut:
    return _out(await credits.revoke_certificate(session, actor, certificate_id, body.reason))


@public.get(
    "/public/certificates/{number}",
    response_model=VerificationOut,
    responses=responses(404, 422),
    summary="Verify a certificate by its number: valid or revoked, with the signed payload."
    " No login. An unknown number is 404 with code `unknown_certificate`.",
)
async def verify(
    number: Annotated[str, Path(max_length=32, examples=["SFC-2026-0000001"])], session: Session
) -> VerificationOut:
    certificate = await credits.public_certificate(session, number)
    if certificate is None:
        raise UnknownCertificate(f"no certificate has the number {number!r}")
    return VerificationOut(
        number=certificate.number,
        status=certificate.status,
        revoked_at=certificate.revoked_at,
        revocation_reason=certificate.revocation_reason,
        payload=orjson.loads(certificate.payload),
        payload_canonical=certificate.payload,
        signature=b64url(certificate.signature),
        key_id=certificate.key_id,
    )


@public.get(
    "/public/keys",
    response_model=list[PublicKeyOut],
    summary="The platform's public keys (Ed25519), current and retired, for verification",
)
async def keys(request: Request, session: Session) -> list[PublicKeyOut]:
    current = _signer(request).key_id
    return [
        PublicKeyOut(
            key_id=k.key_id,
            algorithm="Ed25519",
            public_key=b64url(k.public_key),
            jwk={"kty": "OKP", "crv": "Ed25519", "x": b64url(k.public_key), "kid": k.key_id},
            created_at=k.created_at,
            current=k.key_id == current,
        )
        for k in await audit.published_keys(session)
    ]
