"""Login (throttled), logout, who am I, password change, and site-admin user management.

Every change to an account is audited. A password change or disabling a user revokes all of that
user's tokens (see :mod:`medannot.server.accounts`).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from medannot.server import accounts, store
from medannot.server.deps import ERRORS, Detail, UserId, bearer, ctx, current_user, project_json
from medannot.server.middleware import client_is_loopback
from medannot.server.models import User

router = APIRouter(prefix="/api", tags=["auth"], responses=ERRORS)
LOCKED: dict[int | str, dict[str, Any]] = {429: {"model": Detail, "description": "Too many failed logins (Retry-After says when to try again)."}}
LOGIN_SLOTS = threading.BoundedSemaphore(2)
"""Password checks (scrypt, ~50 ms each) run at most two at a time, so a burst of guesses queues and meets the lockout."""
MAX_LOGIN_PASSWORD = 1024
"""Longest password a login form may carry (characters); longer ones fail like a wrong password, unhashed."""


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(max_length=MAX_LOGIN_PASSWORD)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(max_length=MAX_LOGIN_PASSWORD)
    is_admin: bool = False


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(max_length=MAX_LOGIN_PASSWORD)
    new_password: str = Field(max_length=MAX_LOGIN_PASSWORD)


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(max_length=MAX_LOGIN_PASSWORD)


def _rules(request: Request) -> accounts.ThrottleRules:
    st = ctx(request).settings
    return accounts.ThrottleRules(st.login_max_failures, st.login_max_failures_per_address, st.login_window_seconds,
                                  st.lockout_seconds)


def _locked(seconds: float) -> HTTPException:
    wait = max(1, math.ceil(seconds))
    return HTTPException(429, f"too many failed logins; try again in {wait} s", headers={"Retry-After": str(wait)})


def _fail(request: Request, keys: dict[str, str], username: str, reason: str) -> HTTPException:
    """Count a failed login for the user name and the address; 429 when that locked either, else 401."""
    c, rules = ctx(request), _rules(request)
    with c.db.write() as s:
        locked = accounts.record_failure(s, keys["user"], rules.max_user_failures, rules)
        locked = accounts.record_failure(s, keys["addr"], rules.max_address_failures, rules) or locked
        store.audit(s, None, "login_failed", detail={"username": username[:64], "reason": reason,
                                                     "address": keys["addr"][5:], "locked": locked})
        accounts.prune_throttle(s, rules)
    if locked:
        return _locked(rules.lockout_seconds)
    return HTTPException(401, "wrong user name or password")


@router.post("/login", responses=LOCKED)
def login(body: LoginBody, request: Request) -> dict:
    """Exchange a user name and password for a bearer token (``{"token", "user"}``).

    401 when wrong; 429 with ``Retry-After`` while the user name or the client address is locked after
    repeated failures. A password below the policy (e.g. the demo user's) works on loopback only.
    """
    c = ctx(request)
    keys = accounts.throttle_keys(body.username, request.client.host if request.client else None)
    with LOGIN_SLOTS:
        with c.db.read() as s:
            wait = accounts.locked_seconds(s, list(keys.values()))
        if wait > 0:
            with c.db.write() as s:
                store.audit(s, None, "login_locked", detail={"username": body.username[:64], "address": keys["addr"][5:]})
            raise _locked(wait)
        with c.db.read() as s:
            user = accounts.check_password(s, body.username, body.password)
            if user is not None:
                s.expunge(user)
        if user is None:
            raise _fail(request, keys, body.username, "wrong user name or password")
        if user.disabled:
            raise _fail(request, keys, body.username, "user disabled")
        local = c.settings.on_loopback and client_is_loopback(request.scope)
        if not local and not c.settings.password_policy().allows(body.password):
            raise _fail(request, keys, body.username, "password below the policy, refused off loopback")
        with c.db.write() as s:
            token = accounts.issue_token(s, user, c.secret, c.settings.token_hours)
            accounts.clear_failures(s, keys["user"])
            store.audit(s, user, "login", detail={"address": keys["addr"][5:]})
    return {"token": token, "user": {"id": user.id, "username": user.username, "is_admin": user.is_admin}}


@router.post("/logout", status_code=204)
def logout(request: Request, user: User = Depends(current_user)) -> None:
    """Forget the caller's token."""
    c = ctx(request)
    with c.db.write() as s:
        accounts.revoke_token(s, bearer(request) or "", c.secret)


@router.get("/me")
def me(request: Request, user: User = Depends(current_user)) -> dict:
    """The caller and their projects with role."""
    with ctx(request).db.read() as s:
        projects = [project_json(p, role) for p, role in store.projects_of(s, user)]
    return {"id": user.id, "username": user.username, "is_admin": user.is_admin, "projects": projects}


@router.post("/me/password", responses=LOCKED)
def change_own_password(body: PasswordChange, request: Request, user: User = Depends(current_user)) -> dict:
    """Change the caller's password (the current one is needed); every token of the caller is revoked and a
    new one is returned (``{"token"}``). 403 when the current password is wrong."""
    c = ctx(request)
    keys = accounts.throttle_keys(user.username, request.client.host if request.client else None)
    with LOGIN_SLOTS:
        with c.db.read() as s:
            wait = accounts.locked_seconds(s, list(keys.values()))
        if wait > 0:
            raise _locked(wait)
        with c.db.read() as s:
            ok = accounts.check_password(s, user.username, body.current_password) is not None
    if not ok:
        error = _fail(request, keys, user.username, "wrong current password (password change)")
        raise error if error.status_code == 429 else HTTPException(403, "the current password is wrong")
    with c.db.write() as s:
        row = _target(s, user.id)
        revoked = accounts.set_password(s, row, body.new_password, c.settings.password_policy())
        token = accounts.issue_token(s, row, c.secret, c.settings.token_hours)
        store.audit(s, row, "change_password", detail={"tokens_revoked": revoked})
    return {"token": token}


def _site_admin(user: User, what: str) -> None:
    if not user.is_admin:
        raise HTTPException(403, f"only site admins {what}")


def _target(s: Session, uid: int) -> User:
    row = s.get(User, uid)
    if row is None:
        raise HTTPException(404, f"user {uid} not found")
    return row


@router.get("/users")
def list_users(request: Request, user: User = Depends(current_user)) -> list[dict]:
    """Every user (site admins)."""
    _site_admin(user, "list users")
    with ctx(request).db.read() as s:
        return [accounts.user_json(u) for u in s.scalars(select(User).order_by(User.id))]


@router.post("/users", status_code=201)
def add_user(body: NewUser, request: Request, user: User = Depends(current_user)) -> dict:
    """Create a user (site admins); the password must meet the policy (422 otherwise, never echoed)."""
    _site_admin(user, "create users")
    c = ctx(request)
    with c.db.write() as s:
        new = accounts.add_user(s, body.username, body.password, body.is_admin, c.settings.password_policy())
        store.audit(s, user, "add_user", detail={"username": new.username, "is_admin": new.is_admin})
        return accounts.user_json(new)


@router.put("/users/{uid}/password")
def set_user_password(uid: UserId, body: NewPassword, request: Request, user: User = Depends(current_user)) -> dict:
    """Set a user's password (site admins); all of that user's tokens are revoked."""
    _site_admin(user, "set passwords")
    c = ctx(request)
    with c.db.write() as s:
        row = _target(s, uid)
        revoked = accounts.set_password(s, row, body.password, c.settings.password_policy())
        store.audit(s, user, "set_password", detail={"username": row.username, "tokens_revoked": revoked})
        return accounts.user_json(row)


def _set_disabled(uid: int, request: Request, user: User, disabled: bool) -> dict:
    _site_admin(user, "disable or enable users")
    if uid == user.id and disabled:
        raise HTTPException(409, "you cannot disable yourself; ask another site admin")
    with ctx(request).db.write() as s:
        row = _target(s, uid)
        revoked = accounts.set_disabled(s, row, disabled)
        store.audit(s, user, "disable_user" if disabled else "enable_user",
                    detail={"username": row.username, "tokens_revoked": revoked})
        return accounts.user_json(row)


@router.post("/users/{uid}/disable")
def disable_user(uid: UserId, request: Request, user: User = Depends(current_user)) -> dict:
    """Disable a user (site admins): it cannot log in and all of its tokens are revoked at once."""
    return _set_disabled(uid, request, user, True)


@router.post("/users/{uid}/enable")
def enable_user(uid: UserId, request: Request, user: User = Depends(current_user)) -> dict:
    """Enable a disabled user again (site admins)."""
    return _set_disabled(uid, request, user, False)


@router.delete("/users/{uid}", status_code=204)
def delete_user(uid: UserId, request: Request, user: User = Depends(current_user)) -> Response:
    """Delete a user (site admins) with its tokens, memberships and drafts; its versions and audit entries stay."""
    _site_admin(user, "delete users")
    if uid == user.id:
        raise HTTPException(409, "you cannot delete yourself; ask another site admin")
    with ctx(request).db.write() as s:
        row = _target(s, uid)
        name = row.username
        accounts.delete_user(s, row)
        store.audit(s, user, "delete_user", detail={"username": name, "user_id": uid})
    return Response(status_code=204)
