"""AES-256-GCM sealing of sellers' personal data (the domain's `SellerVault`).

Layout of a sealed value: key id (1 byte) | nonce (12 bytes) | ciphertext and tag. The lot id is
the associated data, so a sealed value copied onto another lot does not open."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from integrations.secrets import file_secret
from integrations.settings import Settings

NONCE = 12


class AesGcmVault:
    def __init__(self, keys: dict[int, bytes], current: int):
        for key_id, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"seller key {key_id} must be 32 bytes, got {len(key)}")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current

    @classmethod
    def from_secret(cls, secret: bytes) -> AesGcmVault:
        return cls({1: secret}, 1)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        sealed = self._keys[self._current].encrypt(nonce, plaintext, context)
        return bytes([self._current]) + nonce + sealed

    def open(self, sealed: bytes, context: bytes) -> bytes:
        key = self._keys[sealed[0]]
        return key.decrypt(sealed[1 : 1 + NONCE], sealed[1 + NONCE :], context)


def decode_key(value: str) -> bytes:
    """A 32-byte key given in settings as base64 (standard or URL-safe)."""
    padded = value + "=" * (-len(value) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))


def load_vault(settings: Settings) -> AesGcmVault:
    """The vault of the settings' key, else of the 0600 key file in the data folder."""
    return AesGcmVault.from_secret(
        decode_key(settings.seller_key.get_secret_value())
        if settings.seller_key
        else file_secret(settings.data_dir / "keys" / "seller.key")
    )
