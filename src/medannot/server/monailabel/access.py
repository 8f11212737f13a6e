"""Who may call the MONAI Label paths, and the small readers every route shares: the caller from the bearer token
(headers only, never the body), the project of the base URL with the caller's role, the case an image id names, and
JSON ``params`` from a form field; :func:`new_router` makes the router of the paths (answers never cached: they hold
patient images and masks).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from medannot.errors import InputError
from medannot.server.deps import ERRORS, current_user
from medannot.server.models import CaseRecord, Project, User
from medannot.server.monailabel import service
from medannot.server.security import Action, allowed

PREFIX = "/monailabel/{project}"
MAX_PARAMS_CHARS = 64 * 1024
"""Longest ``params`` form field (characters)."""
ProjectRef = Annotated[str, PathParam(min_length=1, max_length=200, description="The project's name or id.")]
AUTH_HINT = ("log in first: POST <server>/monailabel/<project>/auth/token with your medannot user name and password "
             "(form fields username, password), then send 'Authorization: Bearer <access_token>'")


class NoStoreRoute(APIRoute):
    """A route whose answers carry ``Cache-Control: no-store`` (they hold patient images and masks)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def no_store(request: Request) -> Response:
            response = await handler(request)
            response.headers.setdefault("cache-control", "no-store")
            return response

        return no_store


def new_router(prefix: str = PREFIX) -> APIRouter:
    """The router of the MONAI Label paths (base URL, tag, error answers and no-store answers set)."""
    return APIRouter(prefix=prefix, tags=["MONAI Label"], route_class=NoStoreRoute, responses=ERRORS)


def caller(request: Request) -> User:
    """The authenticated caller (FastAPI dependency; reads headers only, never the body).

    Raises:
        HTTPException: 401 without a valid, unexpired token of an enabled user.
    """
    header = request.headers.get("authorization", "")
    if len(header) > 220:
        raise HTTPException(401, AUTH_HINT, headers={"WWW-Authenticate": "Bearer"})
    try:
        return current_user(request)
    except HTTPException as exc:
        raise HTTPException(401, AUTH_HINT, headers={"WWW-Authenticate": "Bearer"}) from exc


def access(s: Session, user: User, ref: str, action: Action) -> tuple[Project, str]:
    """The project of the base URL and the caller's role, checked for ``action``.

    Raises:
        HTTPException: 403 for a non-member (or a project that does not exist), or a role without ``action``;
            404 for a project that does not exist when the caller is a site admin.
    """
    found = service.find_project(s, user, ref)
    if found is None:
        if user.is_admin:
            raise HTTPException(404, f"no project {ref[:60]!r}; the base URL is <server>/monailabel/<project name or id>")
        raise HTTPException(403, f"you are not a member of project {ref[:60]!r} (or it does not exist); ask its admin to add you")
    project, role = found
    if not allowed(role, action, user.is_admin):
        raise HTTPException(403, f"your role ({role}) may not {action.value} in project {project.name!r}")
    return project, role


def case_in(s: Session, project: Project, raw: str | None) -> CaseRecord:
    """The case an image id names in ``project``.

    Raises:
        HTTPException: 404 when the project has no such case.
    """
    case = service.case_of(s, project, raw)
    if case is None:
        raise HTTPException(404, f"image {str(raw)[:40]!r} not found in project {project.name!r}; image ids are the case "
                            "ids that GET /datastore/?output=all lists")
    return case


def json_params(raw: object, what: str = "params") -> dict[str, Any]:
    """A JSON object from a form field or body (empty: ``{}``).

    Raises:
        InputError: Not a JSON object, or longer than :data:`MAX_PARAMS_CHARS`.
    """
    if raw is None or raw in ("", b""):
        return {}
    if isinstance(raw, UploadFile):
        raise InputError(f"{what} must be a form field with JSON, not a file")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if len(text) > MAX_PARAMS_CHARS:
        raise InputError(f"{what} is longer than {MAX_PARAMS_CHARS} characters")
    try:
        value = json.loads(text)
    except ValueError:
        raise InputError(f"{what} is not valid JSON; send a JSON object such as {{}}") from None
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object")
    return value


def client_id(params: dict[str, Any]) -> str:
    """The ``client_id`` a MONAI Label client sends with its params (text, at most 64 characters)."""
    value = params.get("client_id")
    return value[:64] if isinstance(value, str) else ""
