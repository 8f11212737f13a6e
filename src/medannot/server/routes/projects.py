"""Projects: list, create, members, cases list, audit log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from medannot.server import accounts, learning, store
from medannot.server.deps import ERRORS, ProjectId, case_summary, ctx, current_user, project_access, project_json
from medannot.server.models import AuditEntry, CaseRecord, Membership, User
from medannot.server.security import Action, Role

router = APIRouter(prefix="/api", tags=["projects"], responses=ERRORS)
Username = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$", description="User name.")]


class NewProject(BaseModel):
    """A new project: ``model`` empty or left out starts it from nothing (then ``labels`` are needed)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    model: str = Field("", max_length=500)
    labels: str | dict[str, Any] | list[dict[str, Any]] | None = None
    settings: dict[str, Any] | None = None


class MemberBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    role: Role


@router.get("/projects")
def list_projects(request: Request, user: User = Depends(current_user)) -> list[dict]:
    """The caller's projects (``id``, ``name``, ``model``, ``labels``, ``role``)."""
    with ctx(request).db.read() as s:
        return [project_json(p, role) for p, role in store.projects_of(s, user)]


@router.post("/projects", status_code=201)
def create_project(body: NewProject, request: Request, user: User = Depends(current_user)) -> dict:
    """Create a project (site admins only); the creator becomes its admin."""
    if not user.is_admin:
        raise HTTPException(403, "only site admins create projects")
    with ctx(request).db.write() as s:
        project = store.add_project(s, body.name, body.model, body.labels, body.settings)
        creator = s.get(User, user.id)
        if creator is None:
            raise HTTPException(401, "your user no longer exists; log in again")
        store.set_member(s, project, creator, Role.ADMIN)
        store.audit(s, user, "create_project", project.id)
        return project_json(project, Role.ADMIN.value)


@router.get("/projects/{pid}")
def get_project(pid: ProjectId, request: Request, user: User = Depends(current_user)) -> dict:
    """One project."""
    with ctx(request).db.read() as s:
        project, role = project_access(s, user, pid, Action.READ)
        return project_json(project, role)


@router.get("/projects/{pid}/members")
def list_members(pid: ProjectId, request: Request, user: User = Depends(current_user)) -> list[dict]:
    """Members and roles (project admins)."""
    with ctx(request).db.read() as s:
        project_access(s, user, pid, Action.MANAGE)
        rows = s.execute(select(User.id, User.username, Membership.role).join(Membership, Membership.user_id == User.id)
                         .where(Membership.project_id == pid).order_by(User.username)).all()
        return [{"user_id": i, "username": n, "role": r} for i, n, r in rows]


@router.put("/projects/{pid}/members")
def set_member(pid: ProjectId, body: MemberBody, request: Request, user: User = Depends(current_user)) -> dict:
    """Give a user a role in the project (project admins)."""
    with ctx(request).db.write() as s:
        project, _ = project_access(s, user, pid, Action.MANAGE)
        member = s.scalar(select(User).where(User.username == body.username))
        if member is None:
            raise HTTPException(404, f"user {body.username!r} not found")
        store.set_member(s, project, member, body.role)
        store.audit(s, user, "set_member", pid, detail={"username": member.username, "role": body.role.value})
        return {"user_id": member.id, "username": member.username, "role": body.role.value}


@router.delete("/projects/{pid}/members/{username}", status_code=204)
def remove_member(pid: ProjectId, username: Username, request: Request, user: User = Depends(current_user)) -> Response:
    """Take a user out of the project (project admins); 404 when it is not a member. Its versions stay."""
    with ctx(request).db.write() as s:
        project, _ = project_access(s, user, pid, Action.MANAGE)
        member = accounts.find_user(s, username)
        if member is None or not accounts.remove_member(s, project, member):
            raise HTTPException(404, f"user {username!r} is not a member of project {pid}")
        store.audit(s, user, "remove_member", pid, detail={"username": member.username})
    return Response(status_code=204)


@router.get("/projects/{pid}/cases")
def list_cases(pid: ProjectId, request: Request, status: str | None = Query(None, max_length=32),
               order: Literal["id", "strategy"] = Query("id", description="``id`` (upload order) or ``strategy``: the "
                                                        "unreviewed cases first, in the project's active-learning order"),
               user: User = Depends(current_user)) -> list[dict]:
    """Cases of the project, optionally with one ``status`` (pending, in_review, accepted, rejected).

    With ``order=strategy`` the unreviewed cases (pending, in review) come first in the order of the project's
    strategy (random, uncertainty, diversity, mix), each with its ``rank`` (1 = offered first) and ``score``; the
    reviewed ones follow by id (``rank`` null).
    """
    if status is not None and status not in store.CASE_STATUSES:
        raise HTTPException(422, f"status must be one of {', '.join(store.CASE_STATUSES)}")
    with ctx(request).db.read() as s:
        project, _ = project_access(s, user, pid, Action.READ)
        query = select(CaseRecord).where(CaseRecord.project_id == pid).order_by(CaseRecord.id)
        if status is not None:
            query = query.where(CaseRecord.status == status)
        rows = list(s.scalars(query))
        if order == "id":
            return [case_summary(s, c) for c in rows]
        ranked = {c.id: (i, score) for i, (c, score) in enumerate(learning.case_order(s, project), 1)}
        rows.sort(key=lambda c: (c.id not in ranked, ranked.get(c.id, (0, None))[0], c.id))
        strategy = learning.learning_settings(project).strategy.value
        return [{**case_summary(s, c), "rank": ranked[c.id][0] if c.id in ranked else None,
                 "score": ranked[c.id][1] if c.id in ranked else None, "strategy": strategy} for c in rows]


def _audit_rows(rows: list[AuditEntry]) -> list[dict]:
    return [{"id": a.id, "time": a.time.isoformat(), "user": a.username, "project_id": a.project_id, "case_id": a.case_id,
             "action": a.action, "detail": a.detail} for a in rows]


@router.get("/projects/{pid}/audit")
def project_audit(pid: ProjectId, request: Request, limit: int = Query(500, ge=1, le=10000),
                  user: User = Depends(current_user)) -> list[dict]:
    """The project's audit log, newest first (project admins)."""
    with ctx(request).db.read() as s:
        project_access(s, user, pid, Action.MANAGE)
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.project_id == pid).order_by(AuditEntry.id.desc()).limit(limit)))
        return _audit_rows(rows)


@router.get("/audit")
def site_audit(request: Request, limit: int = Query(500, ge=1, le=10000), user: User = Depends(current_user)) -> list[dict]:
    """The whole audit log, newest first (site admins)."""
    if not user.is_admin:
        raise HTTPException(403, "only site admins read the whole audit log")
    with ctx(request).db.read() as s:
        return _audit_rows(list(s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))))
