"""Roles and the one permission table.

Every route names the permission it needs with `require(Permission.X)` (see `api/auth/guard.py`);
which roles hold a permission is decided here and nowhere else. A role sees its own project;
`ALL_PROJECTS` lets an admin see every project's tasks.
"""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


class Permission(str, Enum):
    PUBLIC = "public"  # health, readiness, the OpenAPI document: no credentials at all
    SESSION = "session"  # who am I: any valid credential
    MODELS_READ = "models:read"
    TASKS_READ = "tasks:read"  # get, stream, list, events of the project's tasks
    TASKS_SUBMIT = "tasks:submit"
    TASKS_CANCEL = "tasks:cancel"
    TASKS_REDELIVER = "tasks:redeliver"  # send a task's webhook again
    FILES_READ = "files:read"
    FILES_WRITE = "files:write"
    WEBHOOK_SECRET = "webhooks:secret"  # read and rotate the project's signing secret
    WORKERS_READ = "workers:read"
    QUEUES_READ = "queues:read"
    DLQ_MANAGE = "dlq:manage"  # dead letters of tasks and webhooks: list, requeue, redeliver
    KEYS_MANAGE = "keys:manage"
    METRICS_READ = "metrics:read"
    ALL_PROJECTS = "projects:all"


_VIEWER = frozenset(
    {Permission.SESSION, Permission.MODELS_READ, Permission.TASKS_READ, Permission.FILES_READ}
)
_DEVELOPER = _VIEWER | {
    Permission.TASKS_SUBMIT,
    Permission.TASKS_CANCEL,
    Permission.TASKS_REDELIVER,
    Permission.FILES_WRITE,
    Permission.WEBHOOK_SECRET,
}
_ADMIN = frozenset(Permission)

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.DEVELOPER: frozenset(_DEVELOPER),
    Role.ADMIN: _ADMIN,
}


def allows(role: Role, permission: Permission) -> bool:
    return permission is Permission.PUBLIC or permission in PERMISSIONS[role]
