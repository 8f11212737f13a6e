"""What every route needs: the app context, the caller (from the bearer token), access checks, JSON forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, overload

from fastapi import HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from medannot.server import store
from medannot.server.db import Database
from medannot.server.files import BlobStore
from medannot.server.middleware import AUTH_STATE_KEY
from medannot.server.models import AnnotationVersion, CaseRecord, Project, User
from medannot.server.security import Action, allowed
from medannot.server.settings import ServerSettings

ID_MAX = 2**31 - 1
"""Largest database id (32-bit signed integer columns); larger ids in a path or body are refused with 422."""
ProjectId = Annotated[int, PathParam(ge=1, le=ID_MAX, description="Project id.")]
CaseId = Annotated[int, PathParam(ge=1, le=ID_MAX, description="Case id.")]
VersionId = Annotated[int, PathParam(ge=1, le=ID_MAX, description="Version id.")]
JobId = Annotated[int, PathParam(ge=1, le=ID_MAX, description="Job id.")]
UserId = Annotated[int, PathParam(ge=1, le=ID_MAX, description="User id.")]


class InvalidField(BaseModel):
    """One invalid part of a request: where (``loc``), why (``msg``), and the kind of error (``type``)."""

    loc: list[str | int]
    msg: str
    type: str


class Detail(BaseModel):
    """An error: ``{"detail": "one line"}`` (or, for invalid fields, one :class:`InvalidField` per field).

    409 answers add ``latest`` (the newest version) or ``locked`` / ``status`` (an accepted or rejected case).
    """

    detail: str | list[InvalidField]


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Detail, "description": text} for code, text in (
    (400, "Malformed request (e.g. an Idempotency-Key that is too long, a Host that is not allowed)."),
    (401, "No valid token."),
    (403, "The caller's role may not do this."),
    (404, "Not found, or not visible to the caller."),
    (409, "Conflict: a newer version exists, or the case is locked (accepted or rejected)."),
    (413, "Request body too large."),
    (422, "Invalid input: a one-line reason, or the invalid fields (the input itself is never echoed)."),
)}
"""Error answers every ``/api`` route may give (documented in the OpenAPI schema)."""


@dataclass
class AppContext:
    """Shared state of one app: settings, database, file store and token secret."""

    settings: ServerSettings
    db: Database
    blobs: BlobStore
    secret: str


def ctx(request: Request) -> AppContext:
    """The app context (``app.state.ctx``)."""
    return request.app.state.ctx


def bearer(request: Request) -> str | None:
    """The bearer token of the request, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_user(request: Request) -> User:
    """The authenticated caller (FastAPI dependency): the user :class:`~medannot.server.middleware.AuthGate` found.

    Raises:
        HTTPException: 401 without a valid, unexpired token of an enabled user.
    """
    user = request.scope.get("state", {}).get(AUTH_STATE_KEY)
    if user is not None:
        return user
    token = bearer(request)  # an app mounted without the gate (never in create_app): look it up here
    c = ctx(request)
    if token is not None:
        with c.db.read() as s:
            user = store.user_for_token(s, token, c.secret)
            if user is not None:
                s.expunge(user)
                return user
    raise HTTPException(401, "log in first: send 'Authorization: Bearer <token>' from POST /api/login",
                        headers={"WWW-Authenticate": "Bearer"})


def project_access(s: Session, user: User, project_id: int, action: Action) -> tuple[Project, str]:
    """The project and the caller's role, checked for ``action``.

    Raises:
        HTTPException: 404 when it does not exist or the caller is not a member; 403 when the role lacks ``action``.
    """
    project = s.get(Project, project_id)
    role = store.role_in(s, user, project_id) if project is not None else None
    if project is None or (role is None and not user.is_admin):
        raise HTTPException(404, f"project {project_id} not found")
    if not allowed(role, action, user.is_admin):
        raise HTTPException(403, f"your role ({role}) may not {action.value} in project {project_id}")
    return project, role or "admin"


def case_access(s: Session, user: User, case_id: int, action: Action) -> tuple[CaseRecord, Project, str]:
    """The case, its project and the caller's role, checked for ``action`` (404 / 403 as :func:`project_access`)."""
    case = s.get(CaseRecord, case_id)
    if case is None:
        raise HTTPException(404, f"case {case_id} not found")
    try:
        project, role = project_access(s, user, case.project_id, action)
    except HTTPException as exc:
        if exc.status_code == 404:
            raise HTTPException(404, f"case {case_id} not found") from None
        raise
    return case, project, role


def usernames(s: Session, ids: set[int | None]) -> dict[int, str]:
    """User id -> name for the given ids."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(s.execute(select(User.id, User.username).where(User.id.in_(wanted))).all())


@overload
def version_json(v: AnnotationVersion, names: dict[int, str]) -> dict: ...
@overload
def version_json(v: None, names: dict[int, str]) -> None: ...
def version_json(v: AnnotationVersion | None, names: dict[int, str]) -> dict | None:
    """The contract's V form of a version."""
    if v is None:
        return None
    return {
        "id": v.id, "number": v.number, "kind": v.kind,
        "author": names.get(v.author_id) if v.author_id else (f"model {v.model_name}" if v.model_name else None),
        "created": v.created.isoformat(), "model_name": v.model_name, "model_version": v.model_version,
        "base_version_id": v.base_version_id, "job_id": v.job_id, "model_version_id": v.model_version_id,
        "mask_url": f"/api/cases/{v.case_id}/versions/{v.id}/mask",
    }


def project_json(p: Project, role: str | None) -> dict:
    """The API form of a project: ``model`` is its base model (``""``: it started from nothing), ``active_version_id``
    the trained version that proposes now (None: the base model), ``settings`` its learning settings."""
    from medannot.workflows.learning.settings import parse_settings

    return {"id": p.id, "name": p.name, "model": p.model, "labels": p.labels, "role": role,
            "active_version_id": p.active_version_id, "settings": parse_settings(p.settings or {}).model_dump(mode="json")}


def case_summary(s: Session, case: CaseRecord) -> dict:
    """A case as listed: id, name, status, updated, latest version, latest job."""
    from medannot.server.jobs import job_json

    latest = store.latest_version(s, case.id)
    names = usernames(s, {latest.author_id} if latest else set())
    job = store.latest_job(s, case.id)
    j = job_json(job)
    return {
        "id": case.id, "name": case.name, "status": case.status, "updated": case.updated.isoformat(),
        "latest_version": version_json(latest, names),
        "job": None if j is None else {k: j[k] for k in ("id", "state", "progress", "message")},
        "split": case.split, "uncertainty": case.score,
    }


def case_detail(s: Session, case: CaseRecord, project: Project) -> dict:
    """The contract's case form (``GET /api/cases/{cid}``)."""
    versions = list(s.scalars(select(AnnotationVersion).where(AnnotationVersion.case_id == case.id).order_by(AnnotationVersion.number.desc())))
    names = usernames(s, {v.author_id for v in versions})
    latest = versions[0] if versions else None
    accepted = next((v for v in versions if v.kind == "accepted"), None)
    proposal = next((v for v in versions if v.kind == "proposal"), None)
    out = case_summary(s, case)
    out.update({
        "project_id": case.project_id, "labels": project.labels, "model": project.model,
        "image_url": f"/api/cases/{case.id}/image", "spatial_dims": case.spatial_dims, "shape": case.shape,
        "source_format": case.source_format,
        "latest_version": version_json(latest, names), "accepted_version": version_json(accepted, names),
        "effort": store.finite(case.effort) if case.status == "accepted" else None, "reject_reason": case.reject_reason,
        "locked": store.is_locked(case),
        "proposed_by": None if proposal is None else {
            "model_name": proposal.model_name, "model_version": proposal.model_version,
            "model_version_id": proposal.model_version_id, "version_id": proposal.id, "created": proposal.created.isoformat()},
        "interactions": store.interaction_counts(s, case.id),
    })
    return out



def download(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of a route whose 200 answer is a file download of ``media_type``."""
    return {200: {"description": what, "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}}


GZIP_DOWNLOAD = download("application/gzip", "A gzipped NIfTI file, as a download.")
ZIP_DOWNLOAD = download("application/zip", "A zip archive, as a download.")
