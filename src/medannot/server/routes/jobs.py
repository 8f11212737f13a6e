"""Annotation jobs: state and progress."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import select

from medannot.server.deps import ERRORS, JobId, ProjectId, ctx, current_user, project_access
from medannot.server.jobs import job_json
from medannot.server.models import Job, User
from medannot.server.security import Action

router = APIRouter(prefix="/api", tags=["jobs"], responses=ERRORS)


@router.get("/jobs/{jid}")
def get_job(jid: JobId, request: Request, user: User = Depends(current_user)) -> dict:
    """One job: ``state`` (queued, running, done, failed), ``progress`` (0-1), ``message``, ``attempts``."""
    with ctx(request).db.read() as s:
        job = s.get(Job, jid)
        if job is None:
            raise HTTPException(404, f"job {jid} not found")
        try:
            project_access(s, user, job.project_id, Action.READ)
        except HTTPException as exc:
            raise HTTPException(404 if exc.status_code == 404 else exc.status_code, f"job {jid} not found") from None
        return job_json(job)


@router.get("/projects/{pid}/jobs")
def list_jobs(pid: ProjectId, request: Request, user: User = Depends(current_user)) -> list[dict]:
    """The project's jobs, newest first."""
    with ctx(request).db.read() as s:
        project_access(s, user, pid, Action.READ)
        return [job_json(j) for j in s.scalars(select(Job).where(Job.project_id == pid).order_by(Job.id.desc()).limit(1000))]
