"""Login, logout, who am I, and site-admin user management."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from medannot.server import store
from medannot.server.deps import bearer, ctx, current_user, project_json
from medannot.server.models import User

router = APIRouter(prefix="/api", tags=["auth"])


class LoginBody(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class NewUser(BaseModel):
    username: str
    password: str
    is_admin: bool = False


@router.post("/login")
def login(body: LoginBody, request: Request) -> dict:
    """Exchange a user name and password for a bearer token (``{"token", "user"}``); 401 when wrong."""
    c = ctx(request)
    with c.db.write() as s:
        user = store.authenticate(s, body.username, body.password)
        if user is None:
            store.audit(s, None, "login_failed", detail={"username": body.username[:64]})
        else:
            token = store.issue_token(s, user, c.secret, c.settings.token_hours)
            store.audit(s, user, "login")
    if user is None:
        raise HTTPException(401, "wrong user name or password")
    return {"token": token, "user": {"id": user.id, "username": user.username, "is_admin": user.is_admin}}


@router.post("/logout", status_code=204)
def logout(request: Request, user: User = Depends(current_user)) -> None:
    """Forget the caller's token."""
    c = ctx(request)
    with c.db.write() as s:
        store.revoke_token(s, bearer(request) or "", c.secret)


@router.get("/me")
def me(request: Request, user: User = Depends(current_user)) -> dict:
    """The caller and their projects with role."""
    with ctx(request).db.read() as s:
        projects = [project_json(p, role) for p, role in store.projects_of(s, user)]
    return {"id": user.id, "username": user.username, "is_admin": user.is_admin, "projects": projects}


@router.post("/users", status_code=201)
def add_user(body: NewUser, request: Request, user: User = Depends(current_user)) -> dict:
    """Create a user (site admins only)."""
    if not user.is_admin:
        raise HTTPException(403, "only site admins create users")
    with ctx(request).db.write() as s:
        new = store.add_user(s, body.username, body.password, body.is_admin)
        store.audit(s, user, "add_user", detail={"username": new.username})
        return {"id": new.id, "username": new.username, "is_admin": new.is_admin}
