"""Domain operations on the database: projects, members, cases, versions, audit (users: :mod:`.accounts`).

Functions take an open SQLAlchemy session (from :class:`medannot.server.db.Database`); the caller's
``write()`` block commits. Anything that must not happen twice is guarded by a unique constraint
(see :mod:`medannot.server.models`), so concurrent callers cannot both succeed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medannot.errors import InputError, MedannotError
from medannot.server.accounts import (  # noqa: F401 - user functions live in accounts; these names stay for callers
    add_user,
    authenticate,
    issue_token,
    revoke_token,
    user_for_token,
)
from medannot.server.models import (
    AnnotationVersion,
    AuditEntry,
    CaseRecord,
    Interaction,
    Job,
    Membership,
    Project,
    User,
    utcnow,
)
from medannot.server.security import Role

CASE_STATUSES = ("pending", "in_review", "accepted", "rejected")
LOCKED_STATUSES = frozenset({"accepted", "rejected"})
"""A case in one of these is locked: no edits, drafts or jobs until a reviewer or admin reopens it."""
VERSION_KINDS = ("proposal", "edit", "accepted", "reopened")


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
    shape_hint = "labels must be 'VALUE=NAME,...', a JSON object or a list of {value, name, color}"
    if isinstance(labels, list):
        if len(labels) > 255 or not all(isinstance(item, dict) and "value" in item for item in labels):
            raise InputError(shape_hint)
        labels = {str(item["value"]): {k: v for k, v in item.items() if k in {"name", "color"}} for item in labels}
    if not isinstance(labels, dict) or len(labels) > 256:
        raise InputError(shape_hint)
    fixed: dict = {}
    for key, spec in labels.items():
        if isinstance(spec, dict) and isinstance(spec.get("color"), str):
            c = spec["color"].lstrip("#")
            if not re.fullmatch(r"[0-9A-Fa-f]{6}", c):
                raise InputError(f"label {str(key)[:20]!r}: colour must be '#rrggbb'")
            spec = {**spec, "color": [int(c[i : i + 2], 16) for i in (0, 2, 4)]}
        fixed[key] = spec
    try:
        parsed = LabelMap.parse(fixed)
    except Exception as exc:  # noqa: BLE001 - ConfigError with its own message, or a malformed value
        message = str(exc).splitlines()[0][:200] if isinstance(exc, MedannotError) else shape_hint
        raise InputError(message) from None
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

    try:
        bundle = Bundle.load(model)
    except MedannotError:
        raise
    except Exception:  # noqa: BLE001 - e.g. a name no file system accepts: the same one line as an unknown model
        raise InputError(f"unknown model {model[:100]!r}; use a bundled model, a bundle folder or a classical method") from None
    return parse_labels({str(k): {"name": v.name, "color": list(bundle.colors[int(k)])} for k, v in bundle.spec.labels.items()})


def check_model(model: str) -> None:
    """Raise a one-line error unless ``model`` is a bundled model, a bundle folder or a classical method."""
    labels_for_model(model)


def add_project(session: Session, name: str, model: str | None, labels: object | None = None,
                settings: dict | None = None) -> Project:
    """Create a project; without ``labels`` the model's label map is used.

    A project may start from nothing (``model`` None or empty): it needs ``labels`` then, and its first accepted
    cases train its first model (:mod:`medannot.server.learning`).

    Args:
        settings: Learning settings (:class:`medannot.workflows.learning.settings.LearningSettings` fields; None: defaults).

    Raises:
        InputError: Empty or taken name, bad labels, no model and no labels. ModelError: unknown model.
        ConfigError: Bad learning settings.
    """
    from medannot.workflows.learning.settings import parse_settings

    name = (name or "").strip()
    model = (model or "").strip()
    if not name or len(name) > 200:
        raise InputError("project name must be 1-200 characters")
    if session.scalar(select(Project).where(Project.name == name)) is not None:
        raise InputError(f"project {name!r} exists already")
    if not model and not labels:
        raise InputError("a project without a model needs its labels, e.g. '1=lesion'; give a model or labels")
    label_list = parse_labels(labels) if labels else labels_for_model(model)
    if labels and model:
        check_model(model)
    chosen = parse_settings(settings) if settings else None
    project = Project(name=name, model=model, labels=label_list, settings=chosen.model_dump(mode="json") if chosen else None)
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
    top = session.scalar(select(func.coalesce(func.max(AnnotationVersion.number), 0)).where(AnnotationVersion.case_id == case_id))
    return int(top or 0) + 1


def interaction_counts(session: Session, case_id: int) -> dict[str, int]:
    """Smart-tool interactions on a case: ``clicks`` (points), ``boxes``, ``undone`` (of those, later undone), ``sessions``.

    Every interaction counts as effort, undone or not (the reviewer made it).
    """
    rows = session.execute(select(Interaction.kind, Interaction.undone, Interaction.session).where(Interaction.case_id == case_id)).all()
    return {"clicks": sum(1 for k, _, _ in rows if k == "point"), "boxes": sum(1 for k, _, _ in rows if k == "box"),
            "undone": sum(1 for _, u, _ in rows if u), "sessions": len({sess for _, _, sess in rows})}


def latest_job(session: Session, case_id: int) -> Job | None:
    """The newest annotation job of a case, or None."""
    return session.scalar(select(Job).where(Job.case_id == case_id).order_by(Job.id.desc()).limit(1))


@dataclass
class Conflict(Exception):
    """A save on a version that is no longer the latest."""

    latest: AnnotationVersion | None


# --------------------------------------------------------------------------- audit


def audit(session: Session, user: User | None, action: str, project_id: int | None = None, case_id: int | None = None,
          detail: dict | None = None, actor: str | None = None) -> None:
    """Record who did what (reads of images/masks, edits, accepts, exports, logins, account changes).

    Args:
        actor: Name recorded when there is no ``user`` (e.g. ``"cli"`` for the command line); default ``"-"``.
    """
    name = user.username if user else (actor or "-")
    session.add(AuditEntry(user_id=user.id if user else None, username=name[:64], project_id=project_id,
                           case_id=case_id, action=action[:32], detail=finite(detail), time=datetime.now(UTC)))


def finite(value: object) -> object:
    """``value`` with every non-finite float (NaN, inf) replaced by None, so that it is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def is_locked(case: CaseRecord) -> bool:
    """True for an accepted or rejected case (no edits, drafts or jobs until it is reopened)."""
    return case.status in LOCKED_STATUSES


def touch(case: CaseRecord, status: str | None = None) -> None:
    """Update a case's time stamp (and status)."""
    case.updated = utcnow()
    if status is not None:
        case.status = status
