"""Request dependencies shared by the routes: the process's services, the caller's task, the
permission every task reader needs, and the JSON answer every route returns."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import Request
from fastapi.responses import Response

from api.auth import Caller, Permission, require
from api.services import Services
from api.submit import Submitter
from mcp.errors import TaskNotFound
from mcp.store import view_of
from schemas import TaskView

Reader = Annotated[Caller, require(Permission.TASKS_READ)]
"""A caller allowed to read tasks."""


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def submitter_of(request: Request) -> Submitter:
    submitter: Submitter = request.app.state.submitter
    return submitter


def json_response(status: int, body: object) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def find_task(services: Services, task_id: str, caller: Caller) -> TaskView:
    """The caller's task, with its webhook state; another project's task does not exist."""
    view, _ = await owned_task(services, task_id, caller)
    return view


async def owned_task(services: Services, task_id: str, caller: Caller) -> tuple[TaskView, str]:
    """(the task the caller may see, its project)."""
    data, webhooks = await services.store.get_with_webhooks(task_id)
    view = view_of(data) if data else None
    project = data.get("project", "default") if data else ""
    if view is None or not caller.sees(project):
        raise TaskNotFound(f"no task {task_id!r}", {"task_id": task_id})
    webhook = await services.webhooks.view(task_id, webhooks)
    return view.model_copy(update={"webhook": webhook}), project
