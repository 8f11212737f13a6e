"""Passwords (scrypt), session tokens (random, stored only as an HMAC), and role rules.

Roles per project and what each may do (site admins, ``users add --admin``, may do everything everywhere):

========================================  =====  =========  ========
action                                    admin  annotator  reviewer
========================================  =====  =========  ========
list/read cases, images, masks, versions    x        x         x
open a case, save edits and drafts (*)      x        x         x
upload cases, queue annotation jobs (*)     x        x
accept / reject / reopen a case             x                  x
export accepted annotations                 x                  x
manage members, read the audit log          x
========================================  =====  =========  ========

(*) Not on an accepted or rejected case: it is locked (409) until a reviewer or admin reopens it.

A project the caller is not a member of answers 404 (its existence is not revealed); a member
without the needed role gets 403; a call without a valid token gets 401.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from medannot.errors import InputError

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class Role(enum.StrEnum):
    """Per-project roles."""

    ADMIN = "admin"
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"

    @classmethod
    def parse(cls, value: str | Role) -> Role:
        """Convert once; a typo lists the valid names."""
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"unknown role {value!r}; expected one of: {', '.join(r.value for r in cls)}") from None


class Action(enum.StrEnum):
    """Things a member may be allowed to do in a project."""

    READ = "read"
    EDIT = "edit"
    UPLOAD = "upload"
    REVIEW = "review"
    EXPORT = "export"
    MANAGE = "manage"


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.ANNOTATOR: frozenset({Action.READ, Action.EDIT, Action.UPLOAD}),
    Role.REVIEWER: frozenset({Action.READ, Action.EDIT, Action.REVIEW, Action.EXPORT}),
}


def allowed(role: Role | str | None, action: Action, site_admin: bool = False) -> bool:
    """True when ``role`` (None = not a member) may do ``action``."""
    if site_admin:
        return True
    return role is not None and action in PERMISSIONS[Role(role)]


@dataclass(frozen=True)
class PasswordPolicy:
    """Rules for a new password (checked when one is set, never at login).

    Attributes:
        min_length: Fewest characters.
        max_length: Most characters (a longer one costs hashing time and could never be typed at login).
    """

    min_length: int = 10
    max_length: int = 256

    def check(self, password: str) -> None:
        """Refuse a password outside the rules; the message never repeats the password.

        Raises:
            InputError: Too short, too long, or only white space.
        """
        if not isinstance(password, str) or len(password) < self.min_length or not password.strip():
            raise InputError(f"the password is too short; use at least {self.min_length} characters (a passphrase works well)")
        if len(password) > self.max_length:
            raise InputError(f"the password is too long; use at most {self.max_length} characters")

    def allows(self, password: str) -> bool:
        """True when ``password`` meets the rules."""
        try:
            self.check(password)
        except InputError:
            return False
        return True


def hash_password(password: str) -> str:
    """scrypt hash with a random 16-byte salt, as ``scrypt$n$r$p$salt_hex$hash_hex``.

    Raises:
        InputError: For an empty password.
    """
    if not password:
        raise InputError("the password is empty; give one of at least 10 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str, secret: str) -> str:
    """What the database stores for a token: HMAC-SHA256 keyed with the server secret (hex)."""
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()
