"""Short-lived JWT access tokens (HS256 only; exp, iss and aud always checked)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import jwt

from domain.base import utcnow
from domain.errors import Unauthenticated

ALGORITHMS = ["HS256"]  # the allow-list: "none" and asymmetric confusion are refused


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    secret: bytes
    issuer: str
    audience: str
    lifetime: timedelta

    def issue(self, user_id: uuid.UUID) -> str:
        now = utcnow()
        claims = {
            "sub": str(user_id),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHMS[0])

    def user_id(self, token: str) -> uuid.UUID:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
            return uuid.UUID(claims["sub"])
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("the access token has expired; refresh it") from error
        except (jwt.InvalidTokenError, ValueError) as error:
            raise Unauthenticated(f"the access token is invalid: {error}") from error
