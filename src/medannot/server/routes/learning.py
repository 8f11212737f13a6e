"""The learning loop's API: model versions, training rounds, activation (rollback), settings, re-proposals, next case.

Training, activating and changing the settings are for project admins (and site admins); reading is for members;
re-proposing is like queueing annotation jobs (admins and annotators). See :mod:`medannot.server.learning`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from medannot.errors import MedannotError
from medannot.server import jobs as queue
from medannot.server import learning, store
from medannot.server.deps import ERRORS, ProjectId, case_summary, ctx, current_user, project_access
from medannot.server.middleware import public_message
from medannot.server.models import Job, ModelVersion, User
from medannot.server.security import Action

router = APIRouter(prefix="/api", tags=["learning"], responses=ERRORS)
VersionRef = Annotated[str, PathParam(pattern=r"^(v?[0-9]{1,9}|base)$", max_length=10,
                                      description="Version number (``3`` or ``v3``), or ``base`` for the project's base model.")]


class TrainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field("", max_length=200, description="Why (kept with the version as its trigger).")


class ActivateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500)


@router.get("/projects/{pid}/models")
def list_models(pid: ProjectId, request: Request, user: User = Depends(current_user)) -> dict:
    """The project's model versions (newest first), which one proposes now, its base model and any training job."""
    with ctx(request).db.read() as s:
        project, _ = project_access(s, user, pid, Action.READ)
        versions = list(s.scalars(select(ModelVersion).where(ModelVersion.project_id == pid).order_by(ModelVersion.number.desc())))
        jobs = list(s.scalars(select(Job).where(Job.project_id == pid, Job.kind == "train").order_by(Job.id.desc()).limit(20)))
        active = next((v for v in versions if v.id == project.active_version_id), None)
        return {
            "base_model": project.model or None,
            "active": None if active is None else {"id": active.id, "number": active.number, "name": f"v{active.number}"},
            "proposing": f"v{active.number}" if active else (project.model or None),
            "versions": [learning.version_json(v, project.active_version_id) for v in versions],
            "training_jobs": [{**queue.job_json(j), "detail": {k: (j.detail or {}).get(k) for k in ("number", "trigger", "accepted")}}
                              for j in jobs],
        }


@router.post("/projects/{pid}/train", status_code=201)
def train(pid: ProjectId, request: Request, body: TrainBody | None = None, user: User = Depends(current_user)) -> JSONResponse:
    """Queue a training round on the cases accepted now (project admins); a worker trains, gates and stores it.

    409 when a round is already queued or running; 422 when the project has too few accepted cases.
    """
    note = body.note if body is not None else ""
    with ctx(request).db.write() as s:
        project, _ = project_access(s, user, pid, Action.MANAGE)
        pending = s.scalar(select(Job).where(Job.project_id == pid, Job.kind == "train", Job.state.in_(learning.PENDING)).limit(1))
        if pending is not None:
            return JSONResponse({"detail": f"a training job is already {pending.state} (job {pending.id}); wait for it to finish",
                                 "job": queue.job_json(pending)}, status_code=409)
        job = learning.queue_training(s, project, user, f"user {user.username}" + (f": {note}" if note else ""))
        return JSONResponse(queue.job_json(job), status_code=201)


@router.post("/projects/{pid}/models/{ref}/activate")
def activate(pid: ProjectId, ref: VersionRef, request: Request, body: ActivateBody | None = None,
             user: User = Depends(current_user)) -> dict:
    """Make a version the model that proposes (roll back or forward; ``base``: the project's base model); project admins.

    The previous active version is retired; unreviewed proposals are queued again when the project says so. A version
    whose bundle cannot be loaded is refused (422) and nothing changes.
    """
    c = ctx(request)
    reason = body.reason if body is not None else ""
    with c.db.write() as s:
        project, _ = project_access(s, user, pid, Action.MANAGE)
        version = None if ref == "base" else learning.find_version(s, project, ref)
        if version is None and not project.model:
            raise HTTPException(422, f"project {project.name!r} has no base model to go back to; activate one of its versions")
        jobs = learning.activate(s, project, version, c.settings.data_dir, user, reason or f"by {user.username}")
        return {"active": None if version is None else learning.version_json(version, project.active_version_id),
                "proposing": f"v{version.number}" if version else project.model, "reproposals": len(jobs)}


@router.get("/projects/{pid}/settings")
def get_settings(pid: ProjectId, request: Request, user: User = Depends(current_user)) -> dict:
    """The project's learning settings (:class:`medannot.workflows.learning.settings.LearningSettings`)."""
    with ctx(request).db.read() as s:
        project, _ = project_access(s, user, pid, Action.READ)
        return learning.learning_settings(project).model_dump(mode="json")


@router.patch("/projects/{pid}/settings")
def patch_settings(pid: ProjectId, body: dict[str, Any], request: Request, user: User = Depends(current_user)) -> dict:
    """Change learning settings (project admins): only the keys given; nested sections (``gate``, ``recipe``) merge."""
    with ctx(request).db.write() as s:
        project, _ = project_access(s, user, pid, Action.MANAGE)
        try:
            new = learning.set_settings(project, body)
        except MedannotError as exc:
            raise HTTPException(422, public_message(exc)) from None
        store.audit(s, user, "set_learning", pid, detail={"changed": sorted(body)[:20]})
        return new.model_dump(mode="json")


@router.post("/projects/{pid}/repropose", status_code=201)
def repropose(pid: ProjectId, request: Request, user: User = Depends(current_user)) -> dict:
    """Queue new proposals with the model that proposes now for the cases nobody edited yet (admins, annotators)."""
    c = ctx(request)
    with c.db.write() as s:
        project, _ = project_access(s, user, pid, Action.UPLOAD)
        jobs = learning.repropose(s, project, c.settings.data_dir)
        store.audit(s, user, "repropose", pid, detail={"jobs": len(jobs)})
        return {"queued": len(jobs), "job_ids": [j.id for j in jobs]}


@router.get("/projects/{pid}/next")
def next_case(pid: ProjectId, request: Request, user: User = Depends(current_user)) -> dict:
    """The next unreviewed case in the project's active-learning order, with its ``rank`` and ``score``; 404 when
    every case has been reviewed."""
    with ctx(request).db.read() as s:
        project, _ = project_access(s, user, pid, Action.READ)
        order = learning.case_order(s, project)
        pending = [(c, score) for c, score in order if c.status == "pending"] or order
        if not pending:
            raise HTTPException(404, f"project {project.name!r} has no unreviewed case left")
        case, score = pending[0]
        rank = next(i for i, (c, _) in enumerate(order, 1) if c.id == case.id)
        return {**case_summary(s, case), "rank": rank, "score": score,
                "strategy": learning.learning_settings(project).strategy.value}
