"""Acceptance (issue 5): anyone verifies a certificate from its number with the published public
key and the `cryptography` package alone, no login and none of the project's code; a payload
changed by one character fails. The payload is canonical JSON."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncSession

from tests.credits.conftest import issue, melt, new_enterprise
from tests.custody.conftest import PROBLEM_JSON, Plant, assert_problem

# --- a verifier with nothing of the project's ----------------------------------------------------


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key(keys: list[dict[str, Any]], key_id: str) -> Ed25519PublicKey:
    (key,) = [k for k in keys if k["key_id"] == key_id]
    assert key["algorithm"] == "Ed25519"
    return Ed25519PublicKey.from_public_bytes(b64url_decode(key["public_key"]))


def verify(keys: list[dict[str, Any]], key_id: str, payload: str, signature: str) -> None:
    """Raises InvalidSignature unless the key signed exactly these bytes."""
    public_key(keys, key_id).verify(b64url_decode(signature), payload.encode())


def canonical(payload: str) -> str:
    return json.dumps(
        json.loads(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def one_character_changed(payload: str) -> list[str]:
    """The payload with one character changed: a digit of the claim, a letter of a name, a
    space added."""
    claim = payload.index('"total":"') + len('"total":"')
    digit = "1" if payload[claim] != "1" else "2"
    name = payload.index('"name":"') + len('"name":"')
    return [
        payload[:claim] + digit + payload[claim + 1 :],
        payload[:name] + "X" + payload[name + 1 :],
        payload[:1] + " " + payload[1:],
    ]


# --- the tests ------------------------------------------------------------------------------------


async def _certificate(plant: Plant, session: AsyncSession) -> dict[str, Any]:
    (lot,) = (await melt(plant, [96])).products
    recipient = await new_enterprise(session, "贵州铝材加工有限公司")
    response = await issue(plant, lot, recipient)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_certificate_verifies_with_the_published_key_alone(
    plant: Plant, session: AsyncSession
) -> None:
    issued = await _certificate(plant, session)
    # What a customer does: read the number (or the QR code's URL), then fetch, no login.
    path = urlsplit(issued["verification_url"]).path
    assert path == f"/api/v1/public/certificates/{issued['number']}"
    found = await plant.client.get(path)
    assert found.status_code == 200, found.text
    assert "authorization" not in {k.lower() for k in found.request.headers}
    verification = found.json()
    keys_response = await plant.client.get("/api/v1/public/keys")
    assert keys_response.status_code == 200, keys_response.text
    keys = keys_response.json()

    assert verification["status"] == "valid"
    assert verification["revoked_at"] is None and verification["revocation_reason"] is None
    payload, signature = verification["payload_canonical"], verification["signature"]
    verify(keys, verification["key_id"], payload, signature)  # does not raise
    assert json.loads(payload) == verification["payload"] == issued["payload"]
    assert (payload, signature) == (issued["payload_canonical"], issued["signature"])
    assert json.loads(payload)["key_id"] == verification["key_id"]

    for changed in one_character_changed(payload):
        assert len(changed) in (len(payload), len(payload) + 1) and changed != payload
        with pytest.raises(InvalidSignature):
            verify(keys, verification["key_id"], changed, signature)
    tampered = bytearray(b64url_decode(signature))
    tampered[0] ^= 1
    with pytest.raises(InvalidSignature):
        public_key(keys, verification["key_id"]).verify(bytes(tampered), payload.encode())


async def test_the_payload_is_canonical_json_and_says_what_is_claimed(
    plant: Plant, session: AsyncSession
) -> None:
    issued = await _certificate(plant, session)
    payload = issued["payload_canonical"]
    assert canonical(payload) == payload
    assert "贵州铝材加工有限公司" in payload  # UTF-8, not \u escapes
    assert "\\u" not in payload
    body = json.loads(payload)
    assert sorted(body) == [
        "claimed_recycled_kg",
        "issued_at",
        "issuer",
        "key_id",
        "lot",
        "mass_kg",
        "metal",
        "method",
        "number",
        "period",
        "recipient",
        "recycled_percent",
        "verification_url",
    ]
    assert body["number"] == issued["number"]
    assert body["issuer"]["id"] == str(plant.world.enterprise_b)
    assert body["recipient"]["name"] == "贵州铝材加工有限公司"
    assert body["lot"]["id"] == issued["lot_id"]
    assert (body["metal"], body["method"], body["mass_kg"]) == ("aluminium", "proportional", "96")
    assert body["claimed_recycled_kg"] == {
        "post_consumer": "57.6",
        "pre_consumer": "19.2",
        "total": "76.8",
    }
    assert body["recycled_percent"] == "80.00"
    assert body["period"]["from"] <= body["period"]["to"] == body["issued_at"][:10]
    assert body["verification_url"] == issued["verification_url"]


async def test_the_published_keys(plant: Plant, session: AsyncSession) -> None:
    issued = await _certificate(plant, session)
    response = await plant.client.get("/api/v1/public/keys")
    assert response.status_code == 200, response.text
    keys = response.json()
    (current,) = [k for k in keys if k["current"]]
    assert current["key_id"] == issued["key_id"]
    raw = b64url_decode(current["public_key"])
    assert len(raw) == 32
    # The key id is derived from the key: anyone can recompute it.
    assert current["key_id"] == "ed25519-" + hashlib.sha256(raw).hexdigest()[:16]
    assert current["jwk"] == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": current["public_key"],
        "kid": current["key_id"],
    }
    assert len({k["key_id"] for k in keys}) == len(keys)


async def test_an_unknown_number_is_a_problem(plant: Plant) -> None:
    response = await plant.client.get("/api/v1/public/certificates/SFC-2026-9999999")
    body = assert_problem(response, 404, "unknown_certificate")
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "SFC-2026-9999999" in body["detail"]
