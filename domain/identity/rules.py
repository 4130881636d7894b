"""Pure identity rules: the shape of secrets, and who may hold which role."""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

from domain.actor import AUTHORITY_ROLES, ENTERPRISE_ROLES, Role

API_KEY_PREFIX = "sfk_"
REFRESH_TOKEN_PREFIX = "sfr_"  # noqa: S105 - a prefix, not a secret
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KEY_BODY = 32
_CHECKSUM = 6
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,63}$")
MIN_PASSWORD_LENGTH = 12


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECKSUM)


def new_api_key() -> str:
    """`sfk_` + 32 random base62 characters + a 6-character CRC32 checksum, so that a mistyped or
    truncated key is refused (and secret scanners can recognise leaked keys) without a lookup."""
    body = "".join(secrets.choice(_BASE62) for _ in range(_KEY_BODY))
    return f"{API_KEY_PREFIX}{body}{_checksum(body)}"


def api_key_well_formed(token: str) -> bool:
    if not token.startswith(API_KEY_PREFIX) or len(token) != 4 + _KEY_BODY + _CHECKSUM:
        return False
    body, checksum = token[4 : 4 + _KEY_BODY], token[4 + _KEY_BODY :]
    return all(c in _BASE62 for c in body) and _checksum(body) == checksum


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """Keys and refresh tokens carry 190+ random bits: a fast hash suffices, unlike passwords."""
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(api_key: str) -> str:
    return api_key[:12]


def role_fits_owner(role: Role, *, enterprise: bool, authority: bool) -> bool:
    if enterprise:
        return role in ENTERPRISE_ROLES or role is Role.device
    if authority:
        return role in AUTHORITY_ROLES
    return role is Role.platform_admin
