"""The job queue in the database: enqueue, claim with a lease, heartbeat, finish.

A worker claims one job in a single statement: ``queued`` jobs, or ``running`` jobs whose lease expired
(their worker died, e.g. ``kill -9``). On PostgreSQL the candidate row is locked with
``FOR UPDATE SKIP LOCKED`` so concurrent workers never wait for each other; on SQLite the write
transaction (``BEGIN IMMEDIATE``) serialises claims. A worker must renew its lease (heartbeat) while it
works; finishing succeeds only while it still holds the lease, and the proposal version it creates
carries the job id under a unique constraint, so a job yields exactly one result. Retries are bounded:
a job is claimed at most ``max_attempts`` times, whether its tries ended in an exception or in a dead
worker; then it is ``failed`` with the reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import overload

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from medannot.server.models import CaseRecord, Job, utcnow


def _rows(result: object) -> int:
    """Rows an UPDATE touched (``CursorResult.rowcount``)."""
    return int(getattr(result, "rowcount", 0) or 0)


def enqueue(session: Session, case: CaseRecord, model: str) -> Job:
    """Queue an annotation job for ``case`` with ``model``."""
    job = Job(project_id=case.project_id, case_id=case.id, kind="annotate", model=model, state="queued", progress=0.0, message="queued")
    session.add(job)
    session.flush()
    return job


def claim(session: Session, worker: str, lease_seconds: float, max_attempts: int | None = None) -> Job | None:
    """Claim the oldest claimable job for ``worker`` (in the caller's write transaction), or None.

    With ``max_attempts``, a running job whose lease ran out after that many claims (its workers died,
    e.g. ``kill -9`` or out of memory, each time) is marked ``failed`` with the reason instead of being
    claimed again, so a job that kills its worker cannot take the workers down forever.
    """
    now = utcnow()
    expired = (Job.state == "running") & (Job.lease_expires < now)
    if max_attempts is not None:
        _fail_exhausted(session, now, max_attempts)
        expired = expired & (Job.attempts < max_attempts)
    candidates = select(Job.id).where(or_(Job.state == "queued", expired)).order_by(Job.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    job_id = session.scalar(candidates)
    if job_id is None:
        return None
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, or_(Job.state == "queued", expired))
        .values(state="running", lease_owner=worker, lease_expires=now + timedelta(seconds=lease_seconds),
                attempts=Job.attempts + 1, started=now, message="claimed", progress=0.0)
        .execution_options(synchronize_session=False)
    )
    if _rows(result) != 1:
        return None
    session.expire_all()
    return session.get(Job, job_id)


def _fail_exhausted(session: Session, now: datetime, max_attempts: int) -> None:
    """Mark ``failed`` the running jobs whose lease expired after ``max_attempts`` claims (their workers died)."""
    query = (select(Job.id, Job.attempts, Job.lease_owner)
             .where(Job.state == "running", Job.lease_expires < now, Job.attempts >= max_attempts).limit(100))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    for job_id, attempts, owner in session.execute(query).all():
        reason = (f"failed: its worker stopped (killed or crashed, lease expired) on each of {attempts} tries; "
                  f"last worker {owner or '-'}; check the workers' logs and memory, then queue it again")
        session.execute(update(Job).where(Job.id == job_id, Job.state == "running", Job.lease_expires < now)
                        .values(state="failed", message=reason[:500], lease_owner=None, lease_expires=None, finished=now)
                        .execution_options(synchronize_session=False))


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
    return _rows(result) == 1


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
    return _rows(result) == 1


@overload
def job_json(job: Job) -> dict: ...
@overload
def job_json(job: None) -> None: ...
def job_json(job: Job | None) -> dict | None:
    """The API form of a job (``id``, ``kind``: annotate or train, ``state``, ``progress``, ...), or None."""
    if job is None:
        return None
    return {
        "id": job.id, "kind": job.kind, "case_id": job.case_id, "project_id": job.project_id, "state": job.state,
        "progress": round(job.progress, 3), "message": job.message, "attempts": job.attempts, "model": job.model,
        "created": job.created.isoformat(), "finished": job.finished.isoformat() if job.finished else None,
    }
