"""Database tables (SQLAlchemy 2 declarative). Alembic migrations in ``migrations/`` create exactly these.

Integrity that matters is enforced by the database, not by the code around it:
    * ``annotation_versions (case_id, number)`` unique: two saves on the same base cannot both win.
    * ``annotation_versions.job_id`` unique: a job produces at most one proposal, even when a worker that
      lost its lease finishes late.
    * ``idempotency_keys (user_id, scope, key)`` unique: a repeated POST creates nothing twice.
    * ``drafts (case_id, user_id)`` unique: one autosaved draft per reviewer and case.
    * ``login_throttle.key`` unique: one failure counter per user name and per client address.
    * ``model_versions (project_id, number)`` unique: a version number is taken once; ``model_versions.job_id``
      unique: a training job yields at most one version, even when a worker that lost its lease finishes late.
    * ``interactions (case_id, session, seq)`` unique: two interactions cannot take the same place in a session.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use medannot.server.models.utcnow()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires: Mapped[datetime] = mapped_column(UTCDateTime)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model: Mapped[str] = mapped_column(String(500))  # the base model the project was created with; "" = none (starts from nothing)
    labels: Mapped[list] = mapped_column(JSON)  # [{"value", "name", "color"}]
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    settings: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # LearningSettings (None: the defaults)
    active_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # model_versions.id proposing now; None: the base model


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("project_id", "user_id", name="uq_membership"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))


class CaseRecord(Base):
    """A row of the ``cases`` table (one uploaded image under review); not :class:`medannot.data.case.Case`."""

    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    image_sha256: Mapped[str] = mapped_column(String(64))
    source_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_format: Mapped[str] = mapped_column(String(32))
    spatial_dims: Mapped[int] = mapped_column(Integer)
    shape: Mapped[list] = mapped_column(JSON)  # spatial shape of the stored NIfTI (3 values; 2D images have 1 slice)
    affine: Mapped[list] = mapped_column(JSON)  # 4x4 voxel-to-RAS-mm matrix of the stored NIfTI
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reject_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    effort: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    split: Mapped[str | None] = mapped_column(String(8), nullable=True)  # train | val, fixed when first accepted
    score: Mapped[float | None] = mapped_column(Float, nullable=True)  # uncertainty of the latest proposal
    embedding: Mapped[list | None] = mapped_column(JSON, nullable=True)  # retrieval vector (diversity)


class AnnotationVersion(Base):
    __tablename__ = "annotation_versions"
    __table_args__ = (UniqueConstraint("case_id", "number", name="uq_version_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # proposal | edit | accepted
    mask_sha256: Mapped[str] = mapped_column(String(64))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    model_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, unique=True)
    base_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    provenance: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"), nullable=True)


class Draft(Base):
    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("case_id", "user_id", name="uq_draft"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    mask_sha256: Mapped[str] = mapped_column(String(64))
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True, nullable=True)  # None: train
    kind: Mapped[str] = mapped_column(String(32), default="annotate")  # annotate | train
    model: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # queued|running|done|failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # annotate: model_version_id; train: number, cases, trigger


class ModelVersion(Base):
    """A trained model of a project (:mod:`medannot.workflows.learning.registry`); its bundle is complete before the row exists."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_model_version_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # candidate | active | rejected | retired
    bundle_dir: Mapped[str] = mapped_column(String(500))  # relative to the data folder
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parent_model: Mapped[str | None] = mapped_column(String(500), nullable=True)
    train_cases: Mapped[list] = mapped_column(JSON)
    val_cases: Mapped[list] = mapped_column(JSON)
    cases_sha256: Mapped[str] = mapped_column(String(64))
    label_values: Mapped[list] = mapped_column(JSON)
    recipe: Mapped[dict] = mapped_column(JSON)
    gate: Mapped[dict] = mapped_column(JSON)
    trigger: Mapped[str] = mapped_column(String(200))
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Interaction(Base):
    """One Smart-tool interaction (a click or a box) on a case: recorded, so effort counts clicks and boxes."""

    __tablename__ = "interactions"
    __table_args__ = (UniqueConstraint("case_id", "session", "seq", name="uq_interaction_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    session: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))  # point | box
    positive: Mapped[bool] = mapped_column(Boolean, default=True)
    coords: Mapped[list] = mapped_column(JSON)  # RAS mm: [x, y, z] or [[x, y, z], [x, y, z]]
    label: Mapped[int] = mapped_column(Integer)
    engine: Mapped[str] = mapped_column(String(500))
    undone: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    voxels: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "scope", "key", name="uq_idempotency"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict | list] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    username: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    case_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class LoginThrottle(Base):
    """Failed logins of one user name (``user:NAME``) or client address (``addr:IP``) and its lockout."""

    __tablename__ = "login_throttle"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
