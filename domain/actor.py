"""Who is acting: every service call receives one, and every event records it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum


class PrincipalKind(StrEnum):
    user = "user"
    api_key = "api_key"
    system = "system"


class Role(StrEnum):
    platform_admin = "platform_admin"
    # enterprise roles
    admin = "admin"
    operator = "operator"
    viewer = "viewer"
    # authority roles; a supervisor also manages its authority's users and keys
    inspector = "inspector"
    supervisor = "supervisor"
    # a weighbridge's API key: bound to one facility of its enterprise, posts tickets only
    device = "device"


ENTERPRISE_ROLES = frozenset({Role.admin, Role.operator, Role.viewer})
AUTHORITY_ROLES = frozenset({Role.inspector, Role.supervisor})


@dataclass(frozen=True, slots=True)
class Actor:
    principal_id: uuid.UUID | None
    principal_kind: PrincipalKind
    role: Role
    enterprise_id: uuid.UUID | None = None
    authority_id: uuid.UUID | None = None
    # The authority's region prefix ("52", "5201"); empty for everyone else.
    jurisdiction: str | None = None
    request_id: str | None = None
    enterprise_active: bool = True
    # The one facility a device key acts for; None for everyone else.
    facility_id: uuid.UUID | None = None

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.platform_admin

    @property
    def is_authority(self) -> bool:
        return self.authority_id is not None

    def governs(self, region_code: str) -> bool:
        """An authority sees what touches a facility inside its jurisdiction."""
        return self.jurisdiction is not None and region_code.startswith(self.jurisdiction)


SYSTEM = Actor(principal_id=None, principal_kind=PrincipalKind.system, role=Role.platform_admin)
