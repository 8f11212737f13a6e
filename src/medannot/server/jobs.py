"""The job queue in the database: enqueue, claim with a lease, heartbeat, finish.

A worker claims one job in a single statement: ``queued`` jobs, or ``running`` jobs whose lease expired
(their worker died, e.g. ``kill -9``). On PostgreSQL the candidate row is locked with
``FOR UPDATE SKIP LOCKED`` so concurrent workers never wait for each other; on SQLite the write
transaction (``BEGIN IMMEDIATE``) serialises claims. A worker must renew its lease (heartbeat) while it
works; finishing succeeds only while it still holds the lease, and the proposal version it creates
carries the job id under a unique constraint, so a job yields exactly one result.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from medannot.server.models import CaseRecord, Job, utcnow


def enqueue(session: Session, case: CaseRecord, model: str) -> Job:
    """Queue an annotation job for ``case`` with ``model``."""
    job = Job(project_id=case.project_id, case_id=case.id, kind="annotate", model=model, state="queued", progress=0.0, message="queued")
    session.add(job)
    session.flush()
    return job


def claim(session: Session, worker: str, lease_seconds: float) -> Job | None:
    """Claim the oldest claimable job for ``worker`` (in the caller's write transaction), or None."""
    now = utcnow()
    candidates = (
        select(Job.id)
        .where(or_(Job.state == "queued", (Job.state == "running") & (Job.lease_expires < now)))
        .order_by(Job.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    job_id = session.scalar(candidates)
    if job_id is None:
        return None
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, or_(Job.state == "queued", (Job.state == "running") & (Job.lease_expires < now)))
        .values(state="running", lease_owner=worker, lease_expires=now + timedelta(seconds=lease_seconds),
                attempts=Job.attempts + 1, started=now, message="claimed", progress=0.0)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    session.expire_all()
    return session.get(Job, job_id)


def heartbeat(session: Session, job_id: int, worker: str, lease_seconds: float, progress: float | None = None,
              message: str | None = None) -> bool:
    """Renew the lease (and report progress); False when the worker no longer holds the job."""
    values: dict = {"lease_expires": utcnow() + timedelta(seconds=lease_seconds)}
    if progress is not None:
        values["progress"] = float(min(max(progress, 0.0), 1.0))
    if message is not None:
        values["message"] = message[:500]
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == worker, Job.state == "running").values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def finish(session: Session, job_id: int, worker: str, state: str, message: str) -> bool:
    """Mark the job ``done``/``failed``/``queued`` (retry) if ``worker`` still holds it; False otherwise."""
    values: dict = {"state": state, "message": message[:500], "lease_owner": None if state == "queued" else worker,
                    "lease_expires": None}
    if state == "done":
        values["progress"] = 1.0
    if state in {"done", "failed"}:
        values["finished"] = utcnow()
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == worker, Job.state == "running").values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def job_json(job: Job | None) -> dict | None:
    """The API form of a job (``id``, ``state``, ``progress``, ...), or None."""
    if job is None:
        return None
    return {
        "id": job.id, "case_id": job.case_id, "project_id": job.project_id, "state": job.state, "progress": round(job.progress, 3),
        "message": job.message, "attempts": job.attempts, "model": job.model,
        "created": job.created.isoformat(), "finished": job.finished.isoformat() if job.finished else None,
    }
