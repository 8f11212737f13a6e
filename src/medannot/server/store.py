"""Domain operations on the database: users, projects, cases, versions, drafts, audit.

Functions take an open SQLAlchemy session (from :class:`medannot.server.db.Database`); the caller's
``write()`` block commits. Anything that must not happen twice is guarded by a unique constraint
(see :mod:`medannot.server.models`), so concurrent callers cannot both succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medannot.errors import InputError
from medannot.server.models import (
    AnnotationVersion,
    AuditEntry,
    CaseRecord,
    Job,
    Membership,
    Project,
    Token,
    User,
    utcnow,
)
from medannot.server.security import Role, hash_password, new_token, token_digest, verify_password

CASE_STATUSES = ("pending", "in_review", "accepted", "rejected")
VERSION_KINDS = ("proposal", "edit", "accepted")


# --------------------------------------------------------------------------- users and tokens


def add_user(session: Session, username: str, password: str, is_admin: bool = False) -> User:
    """Create a user.

    Raises:
        InputError: Empty or invalid name, or the name is taken.
    """
    import re

    if not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", username or ""):
        raise InputError(f"user name {username!r} is not valid; use 1-64 letters, digits or . _ @ -")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise InputError(f"user {username!r} exists already")
    user = User(username=username, password_hash=hash_password(password), is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user when the password matches, else None (same work either way)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        verify_password(password, "scrypt$16384$8$1$00$00")  # keep timing similar for unknown names
        return None
    return user if verify_password(password, user.password_hash) else None


def issue_token(session: Session, user: User, secret: str, hours: float) -> str:
    """A new bearer token for ``user``; only its HMAC is stored."""
    token = new_token()
    session.add(Token(token_hash=token_digest(token, secret), user_id=user.id, expires=utcnow() + timedelta(hours=hours)))
    return token


def user_for_token(session: Session, token: str, secret: str) -> User | None:
    """The user of a valid, unexpired token, else None."""
    row = session.scalar(select(Token).where(Token.token_hash == token_digest(token, secret)))
    if row is None or row.expires <= utcnow():
        return None
    return session.get(User, row.user_id)


def revoke_token(session: Session, token: str, secret: str) -> None:
    """Forget a token (logout)."""
    row = session.scalar(select(Token).where(Token.token_hash == token_digest(token, secret)))
    if row is not None:
        session.delete(row)


# --------------------------------------------------------------------------- projects and members


def parse_labels(labels: object) -> list[dict]:
    """Normalise a label map to ``[{"value", "name", "color": "#rrggbb"}]`` (background 0 left out).

    Accepts ``"1=grey matter,2=white matter"``, ``{"1": "name"}``, ``{"1": {"name", "color"}}`` or a list of
    ``{"value", "name", "color"}``.

    Raises:
        InputError: When a value is not a positive integer up to 255 or a name is empty.
    """
    from medannot.annotations.labelmap import LabelMap

    if isinstance(labels, str):
        pairs: dict = {}
        for part in filter(None, (p.strip() for p in labels.split(","))):
            if "=" not in part:
                raise InputError(f"label {part!r}: expected VALUE=NAME, e.g. '1=grey matter'")
            k, v = part.split("=", 1)
            pairs[k.strip()] = v.strip()
        labels = pairs
    if isinstance(labels, list):
        labels = {str(item["value"]): {k: v for k, v in item.items() if k in {"name", "color"}} for item in labels}
    if not isinstance(labels, dict):
        raise InputError("labels must be 'VALUE=NAME,...', a JSON object or a list of {value, name, color}")
    fixed: dict = {}
    for key, spec in labels.items():
        if isinstance(spec, dict) and isinstance(spec.get("color"), str):
            c = spec["color"].lstrip("#")
            spec = {**spec, "color": [int(c[i : i + 2], 16) for i in (0, 2, 4)]}
        fixed[key] = spec
    try:
        parsed = LabelMap.parse(fixed)
    except Exception as exc:  # ConfigError with its own message
        raise InputError(str(exc)) from None
    out = []
    for value, info in sorted(parsed.items()):
        if value == 0:
            continue
        if not 1 <= value <= 255 or not info.name.strip():
            raise InputError(f"label {value}: values must be 1-255 with a name")
        out.append({"value": value, "name": info.name, "color": "#{:02x}{:02x}{:02x}".format(*info.color)})
    return out


def labels_for_model(model: str) -> list[dict]:
    """The label map of a bundled model or bundle folder (background left out); classical methods: ``1=foreground``."""
    from medannot import classical

    if model in classical.list_methods():
        return parse_labels("1=foreground")
    from medannot.models.bundle import Bundle

    bundle = Bundle.load(model)
    return parse_labels({str(k): {"name": v.name, "color": list(v.color)} for k, v in bundle.spec.labels.items()})


def check_model(model: str) -> None:
    """Raise a one-line error unless ``model`` is a bundled model, a bundle folder or a classical method."""
    labels_for_model(model)


def add_project(session: Session, name: str, model: str, labels: object | None = None) -> Project:
    """Create a project; without ``labels`` the model's label map is used.

    Raises:
        InputError: Empty or taken name, bad labels. ModelError: unknown model.
    """
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InputError("project name must be 1-200 characters")
    if session.scalar(select(Project).where(Project.name == name)) is not None:
        raise InputError(f"project {name!r} exists already")
    label_list = parse_labels(labels) if labels else labels_for_model(model)
    if labels:
        check_model(model)
    project = Project(name=name, model=model, labels=label_list)
    session.add(project)
    session.flush()
    return project


def set_member(session: Session, project: Project, user: User, role: Role | str) -> Membership:
    """Give ``user`` ``role`` in ``project`` (replacing an earlier role)."""
    role = Role.parse(role)
    row = session.scalar(select(Membership).where(Membership.project_id == project.id, Membership.user_id == user.id))
    if row is None:
        row = Membership(project_id=project.id, user_id=user.id, role=role.value)
        session.add(row)
    else:
        row.role = role.value
    session.flush()
    return row


def role_in(session: Session, user: User, project_id: int) -> str | None:
    """The user's role in a project, or None."""
    return session.scalar(select(Membership.role).where(Membership.project_id == project_id, Membership.user_id == user.id))


def projects_of(session: Session, user: User) -> list[tuple[Project, str]]:
    """Projects visible to ``user`` with the role (site admins see all, as admin where not a member)."""
    rows = session.execute(
        select(Project, Membership.role).join(Membership, Membership.project_id == Project.id).where(Membership.user_id == user.id)
    ).all()
    out = {p.id: (p, role) for p, role in rows}
    if user.is_admin:
        for p in session.scalars(select(Project)):
            out.setdefault(p.id, (p, Role.ADMIN.value))
    return [out[k] for k in sorted(out)]


# --------------------------------------------------------------------------- versions


def latest_version(session: Session, case_id: int) -> AnnotationVersion | None:
    """The version with the highest number, or None."""
    return session.scalar(
        select(AnnotationVersion).where(AnnotationVersion.case_id == case_id).order_by(AnnotationVersion.number.desc()).limit(1)
    )


def next_number(session: Session, case_id: int) -> int:
    """The number the next version of the case gets."""
    return int(session.scalar(select(func.coalesce(func.max(AnnotationVersion.number), 0)).where(AnnotationVersion.case_id == case_id))) + 1


def latest_job(session: Session, case_id: int) -> Job | None:
    """The newest annotation job of a case, or None."""
    return session.scalar(select(Job).where(Job.case_id == case_id).order_by(Job.id.desc()).limit(1))


@dataclass
class Conflict(Exception):
    """A save on a version that is no longer the latest."""

    latest: AnnotationVersion | None


# --------------------------------------------------------------------------- audit


def audit(session: Session, user: User | None, action: str, project_id: int | None = None, case_id: int | None = None,
          detail: dict | None = None) -> None:
    """Record who did what (reads of images/masks, edits, accepts, exports, logins)."""
    session.add(AuditEntry(user_id=user.id if user else None, username=user.username if user else "-", project_id=project_id,
                           case_id=case_id, action=action, detail=detail, time=datetime.now(timezone.utc)))


def touch(case: CaseRecord, status: str | None = None) -> None:
    """Update a case's time stamp (and status)."""
    case.updated = utcnow()
    if status is not None:
        case.status = status
