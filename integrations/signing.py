"""The platform's Ed25519 signing key (the domain's `Signer`): certificates and audit checkpoints.

The key is the 32-byte seed from settings, or the 0600 file `keys/signing.key` in the data folder,
created on first start. A key's id is derived from its public key, so the same key always has the
same id. Rotation puts a new key in place; the old public key stays published in the database for
what it signed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from integrations.secrets import file_secret
from integrations.settings import Settings
from integrations.vault import decode_key


class Ed25519Signer:
    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 signing key is a 32-byte seed, got {len(seed)} bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = key_id_of(self._public)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def key_id_of(public_key: bytes) -> str:
    return "ed25519-" + hashlib.sha256(public_key).hexdigest()[:16]


def _key_file(settings: Settings) -> Path:
    return settings.data_dir / "keys" / "signing.key"


def load_signer(settings: Settings) -> Ed25519Signer:
    if settings.signing_key is not None:
        return Ed25519Signer(decode_key(settings.signing_key.get_secret_value()))
    return Ed25519Signer(file_secret(_key_file(settings)))


def rotate(settings: Settings) -> tuple[Ed25519Signer, Ed25519Signer]:
    """A new key file in place of the old one, which is kept aside (renamed by its id). Returns
    the old and the new signer. Keys given in settings are rotated by changing the setting."""
    if settings.signing_key is not None:
        raise ValueError("the signing key comes from SCRAPFLOW_SIGNING_KEY: change that instead")
    path = _key_file(settings)
    old = load_signer(settings)
    path.rename(path.with_name(f"{old.key_id}.key.retired"))
    return old, load_signer(settings)


def trusted_keys(settings: Settings) -> dict[str, bytes]:
    """The public keys checkpoints may be verified with, known without asking the database: the
    current key, the keys rotated aside in the data folder, and retired keys named in settings."""
    current = load_signer(settings)
    keys = {current.key_id: current.public_key}
    for retired in sorted(_key_file(settings).parent.glob("*.key.retired")):
        signer = Ed25519Signer(retired.read_bytes())
        keys[signer.key_id] = signer.public_key
    for value in settings.retired_public_keys:
        public_key = decode_key(value)
        keys[key_id_of(public_key)] = public_key
    return keys
