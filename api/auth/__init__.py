"""Authentication, roles and the permission table, API keys, audit."""

from api.auth.guard import (
    DEFAULT_PROJECT,
    SESSION_COOKIE,
    Authenticator,
    Caller,
    Refused,
    Require,
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
    "permission_of",
    "require",
]
