"""Domain errors carry their problem code and HTTP status; one handler in `api` renders them."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A business rule refused the request. Subclasses set `code`, `status` and `title`."""

    code: ClassVar[str] = "domain_error"
    status: ClassVar[int] = 422
    title: ClassVar[str] = "The request breaks a business rule"
    # Set when the writes made before the error must be committed anyway (e.g. revoking a token
    # family on detected refresh-token reuse): the request still fails, the defence must stick.
    keeps_writes: ClassVar[bool] = False

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra


class NotFound(DomainError):
    """Also for records the caller may not see: those must be indistinguishable from missing."""

    code = "not_found"
    status = 404
    title = "Not found"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Not allowed"


class Conflict(DomainError):
    code = "conflict"
    status = 409
    title = "Conflict with the current state"


class InvalidInput(DomainError):
    code = "invalid_input"
    status = 422
    title = "Invalid input"


class PreconditionFailed(DomainError):
    code = "precondition_failed"
    status = 412
    title = "The resource changed since it was read"


class Unauthenticated(DomainError):
    code = "unauthenticated"
    status = 401
    title = "Authentication required"
