"""Accounts: users, passwords, tokens, and the login throttle (lockout after repeated failures).

* A new password must meet the :class:`~medannot.server.security.PasswordPolicy` (never echoed in errors).
* Changing a password or disabling a user revokes every token of that user at once (the token rows are
  deleted; a request with one of them then gets 401). Deleting a user deletes its tokens, memberships and
  drafts; its versions and audit entries stay (author shown by name in the audit log).
* Failed logins are counted per user name (``user:NAME``) and per client address (``addr:IP``) within a
  window; past the limit the key is locked for a while and logins answer 429 with ``Retry-After`` before
  any password is checked. A successful login clears its user name's counter (not the address's).
* A password below the policy (the demo user's ``demo``, or one set before the policy) logs in only when
  both the server and the client are on loopback.

Functions take an open session; the caller's ``write()`` block commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medannot.errors import InputError
from medannot.server.models import LoginThrottle, Membership, Project, Token, User, utcnow
from medannot.server.security import PasswordPolicy, hash_password, new_token, token_digest, verify_password

USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
DEFAULT_POLICY = PasswordPolicy()
_DUMMY_HASH = "scrypt$16384$8$1$00$00"


def _rows(result: object) -> int:
    """Rows an UPDATE or DELETE touched (``CursorResult.rowcount``)."""
    return int(getattr(result, "rowcount", 0) or 0)


def check_username(username: str) -> str:
    """The user name, or a one-line error when it is not 1-64 of ``A-Z a-z 0-9 . _ @ -``."""
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        shown = repr(username[:64]) if isinstance(username, str) else "it"
        raise InputError(f"user name {shown} is not valid; use 1-64 letters, digits or . _ @ -")
    return username


def add_user(session: Session, username: str, password: str, is_admin: bool = False,
             policy: PasswordPolicy | None = DEFAULT_POLICY) -> User:
    """Create a user.

    Args:
        session: Open write session.
        username: 1-64 characters ``A-Z a-z 0-9 . _ @ -``.
        password: Must meet ``policy``.
        is_admin: Site admin.
        policy: Password rules; None only for the loopback demo user.

    Raises:
        InputError: Invalid or taken name, or a password outside the policy.
    """
    check_username(username)
    if policy is not None:
        policy.check(password)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise InputError(f"user {username!r} exists already")
    user = User(username=username, password_hash=hash_password(password), is_admin=is_admin, disabled=False)
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, username: str) -> User | None:
    """The user with this name, or None."""
    return session.scalar(select(User).where(User.username == username))


def get_user(session: Session, username: str) -> User:
    """The user with this name.

    Raises:
        InputError: When there is none.
    """
    user = find_user(session, username)
    if user is None:
        raise InputError(f"no user {username!r}; list them with `medannot users list`")
    return user


def check_password(session: Session, username: str, password: str) -> User | None:
    """The user when the password matches (enabled or not), else None; the same work either way."""
    user = find_user(session, username)
    if user is None:
        verify_password(password, _DUMMY_HASH)  # keep timing similar for unknown names
        return None
    return user if verify_password(password, user.password_hash) else None


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The enabled user when the password matches, else None."""
    user = check_password(session, username, password)
    return None if user is None or user.disabled else user


def revoke_tokens(session: Session, user_id: int) -> int:
    """Delete every token of a user; returns how many there were."""
    return _rows(session.execute(delete(Token).where(Token.user_id == user_id)))


def set_password(session: Session, user: User, password: str, policy: PasswordPolicy = DEFAULT_POLICY) -> int:
    """Set a new password and revoke all of the user's tokens; returns the number revoked.

    Raises:
        InputError: The password is outside the policy.
    """
    policy.check(password)
    user.password_hash = hash_password(password)
    return revoke_tokens(session, user.id)


def set_disabled(session: Session, user: User, disabled: bool) -> int:
    """Disable (revoking all tokens) or enable a user; returns the number of tokens revoked."""
    user.disabled = disabled
    return revoke_tokens(session, user.id) if disabled else 0


def delete_user(session: Session, user: User) -> None:
    """Delete a user with its tokens, memberships and drafts (versions and audit entries keep no link)."""
    revoke_tokens(session, user.id)
    session.delete(user)
    session.flush()


def other_enabled_admins(session: Session, user: User) -> int:
    """Enabled site admins besides ``user``."""
    return int(session.scalar(select(func.count(User.id)).where(User.is_admin.is_(True), User.disabled.is_(False),
                                                                 User.id != user.id)) or 0)


def remove_member(session: Session, project: Project, user: User) -> bool:
    """Take ``user`` out of ``project``; False when it was not a member."""
    result = session.execute(delete(Membership).where(Membership.project_id == project.id, Membership.user_id == user.id))
    return bool(_rows(result))


def issue_token(session: Session, user: User, secret: str, hours: float) -> str:
    """A new bearer token for ``user``; only its HMAC is stored."""
    token = new_token()
    session.add(Token(token_hash=token_digest(token, secret), user_id=user.id, expires=utcnow() + timedelta(hours=hours)))
    return token


def user_for_token(session: Session, token: str, secret: str) -> User | None:
    """The enabled user of a valid, unexpired token, else None."""
    if not token or len(token) > 200:
        return None
    row = session.scalar(select(Token).where(Token.token_hash == token_digest(token, secret)))
    if row is None or row.expires <= utcnow():
        return None
    user = session.get(User, row.user_id)
    return None if user is None or user.disabled else user


def revoke_token(session: Session, token: str, secret: str) -> None:
    """Forget one token (logout)."""
    session.execute(delete(Token).where(Token.token_hash == token_digest(token, secret)))


def user_json(user: User) -> dict:
    """The API form of a user."""
    return {"id": user.id, "username": user.username, "is_admin": user.is_admin, "disabled": user.disabled,
            "created": user.created.isoformat()}


# --------------------------------------------------------------------------- login throttle


@dataclass(frozen=True)
class ThrottleRules:
    """Failed-login limits (see :class:`~medannot.server.settings.ServerSettings`)."""

    max_user_failures: int = 5
    max_address_failures: int = 20
    window_seconds: float = 900.0
    lockout_seconds: float = 900.0


def throttle_keys(username: str, address: str | None) -> dict[str, str]:
    """The counter keys of a login attempt: ``{"user": "user:NAME", "addr": "addr:IP"}``."""
    return {"user": f"user:{username.lower()}"[:200], "addr": f"addr:{address or 'unknown'}"[:200]}


def locked_seconds(session: Session, keys: list[str]) -> float:
    """Seconds until the latest lock among ``keys`` ends (0 when none is locked)."""
    now = utcnow()
    until = session.scalar(select(func.max(LoginThrottle.locked_until)).where(LoginThrottle.key.in_(keys),
                                                                                LoginThrottle.locked_until > now))
    if until is None:
        return 0.0
    if isinstance(until, datetime) and until.tzinfo is None:  # max() bypasses the column type on some backends
        until = until.replace(tzinfo=now.tzinfo)
    return max((until - now).total_seconds(), 0.0)


def record_failure(session: Session, key: str, limit: int, rules: ThrottleRules) -> bool:
    """Count one failed login for ``key``; lock it when it reaches ``limit``. True when it is now locked."""
    now = utcnow()
    window_start = now - timedelta(seconds=rules.window_seconds)
    bumped = session.execute(update(LoginThrottle).where(LoginThrottle.key == key, LoginThrottle.window_start >= window_start)
                             .values(failures=LoginThrottle.failures + 1).execution_options(synchronize_session=False))
    if not _rows(bumped):
        restarted = session.execute(update(LoginThrottle).where(LoginThrottle.key == key)
                                    .values(failures=1, window_start=now).execution_options(synchronize_session=False))
        if not _rows(restarted):
            try:
                with session.begin_nested():
                    session.add(LoginThrottle(key=key, failures=1, window_start=now, locked_until=None))
            except IntegrityError:  # another request inserted it first: count on that row
                session.execute(update(LoginThrottle).where(LoginThrottle.key == key)
                                .values(failures=LoginThrottle.failures + 1).execution_options(synchronize_session=False))
    failures = int(session.scalar(select(LoginThrottle.failures).where(LoginThrottle.key == key)) or 0)
    if failures < limit:
        return False
    session.execute(update(LoginThrottle).where(LoginThrottle.key == key)
                    .values(failures=0, window_start=now, locked_until=now + timedelta(seconds=rules.lockout_seconds))
                    .execution_options(synchronize_session=False))
    return True


def clear_failures(session: Session, key: str) -> None:
    """Forget the failures of ``key`` (after a successful login)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key, or_(LoginThrottle.locked_until.is_(None),
                                                                           LoginThrottle.locked_until <= utcnow())))


def prune_throttle(session: Session, rules: ThrottleRules) -> None:
    """Drop counters whose window and lock are over (keeps the table small)."""
    now = utcnow()
    session.execute(delete(LoginThrottle).where(
        LoginThrottle.window_start < now - timedelta(seconds=rules.window_seconds),
        or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now)))
