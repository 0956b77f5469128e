"""Authentication, roles and the permission table, API keys, audit."""

from api.auth.guard import (
    DEFAULT_PROJECT,
    SESSION_COOKIE,
    Authenticator,
    Caller,
    Refused,
    Require,
    authorize,
    permission_of,
    require,
)
from api.auth.roles import Permission, Role

__all__ = [
    "DEFAULT_PROJECT",
    "SESSION_COOKIE",
    "Authenticator",
    "Caller",
    "Permission",
    "Refused",
    "Require",
    "Role",
    "authorize",
    "permission_of",
    "require",
]
