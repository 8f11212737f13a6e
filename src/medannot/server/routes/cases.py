"""Cases: upload (with ``Idempotency-Key``), read, image, open / accept / reject / reopen, re-annotate.

An accepted or rejected case is locked: edits, drafts and new jobs get 409 until a reviewer or admin
reopens it (a ``reopened`` version, audited).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import UploadFile

from medannot.errors import MedannotError
from medannot.server import idempotency, learning, store
from medannot.server import jobs as queue
from medannot.server.deps import (
    ERRORS,
    GZIP_DOWNLOAD,
    ID_MAX,
    AppContext,
    CaseId,
    ProjectId,
    case_access,
    case_detail,
    case_summary,
    ctx,
    current_user,
    project_access,
    usernames,
    version_json,
)
from medannot.server.imaging import correction_effort, mask_array, to_nifti_bytes
from medannot.server.middleware import public_message
from medannot.server.models import AnnotationVersion, CaseRecord, Draft, User
from medannot.server.security import Action
from medannot.server.uploads import ArchiveLimits, PreparedCase, prepare_upload

log = logging.getLogger("medannot.server")
router = APIRouter(prefix="/api", tags=["cases"], responses=ERRORS)
MAX_SECONDS_SPENT = 30 * 24 * 3600.0
"""Largest ``seconds_spent`` accepted (30 days, in s); more is a client error."""

NIFTI_HEADERS = {"X-Content-Type-Options": "nosniff"}


def blob_response(path: Any, filename: str) -> FileResponse:
    """A stored NIfTI blob as a download: ``application/gzip``, attachment, nosniff (never rendered as HTML)."""
    return FileResponse(path, media_type="application/gzip", filename=filename, content_disposition_type="attachment",
                        headers=NIFTI_HEADERS)


class AcceptBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    version_id: int = Field(ge=1, le=ID_MAX)
    seconds_spent: float = Field(0.0, ge=0, le=MAX_SECONDS_SPENT)


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000)


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header (1-200 printable ASCII characters), or None.

    Raises:
        HTTPException: 400 for a longer key or one with other characters.
    """
    raw = request.headers.get("idempotency-key")
    if raw is None or not raw.strip():
        return None
    key = raw.strip()
    if len(key) > idempotency.MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise HTTPException(400, f"Idempotency-Key must be 1-{idempotency.MAX_KEY_LENGTH} printable ASCII characters")
    return key


def locked(case: CaseRecord, doing: str) -> JSONResponse:
    """409 for an edit, draft or job on an accepted or rejected case."""
    return JSONResponse({"detail": f"case {case.id} is {case.status}: it is locked; a reviewer or admin must reopen it "
                         f"before {doing}", "locked": True, "status": case.status}, status_code=409)


# --------------------------------------------------------------------------- upload


def _replay(c: AppContext, user: User, scope: str, key: str | None) -> JSONResponse | None:
    if not key:
        return None
    with c.db.read() as s:
        row = idempotency.stored(s, user.id, scope, key)
        return None if row is None else JSONResponse(row.response, status_code=row.status_code)


def _create_cases(c: AppContext, user: User, pid: int, key: str | None, prepared: list[PreparedCase],
                  skipped: list[dict]) -> JSONResponse:
    scope = f"POST /api/projects/{pid}/cases"
    stored = []
    for p in prepared:  # files first (content-addressed, atomic): a crash here leaves no row pointing nowhere
        volume = p.image.as_volume()
        image_sha = c.blobs.put(to_nifti_bytes(p.image))
        source_sha = c.blobs.put(p.source_zip, ".bin") if p.source_zip else None
        stored.append((p, image_sha, source_sha, list(volume.spatial_shape), volume.affine.tolist()))
    try:
        with c.db.write() as s:
            project, _ = project_access(s, user, pid, Action.UPLOAD)
            row = idempotency.reserve(s, user.id, scope, key) if key else None
            cases = []
            for p, image_sha, source_sha, shape, affine in stored:
                case = CaseRecord(project_id=pid, name=p.name, status="pending", image_sha256=image_sha, source_sha256=source_sha,
                            source_format=p.source_format, spatial_dims=p.image.ndim, shape=shape, affine=affine, created_by=user.id)
                s.add(case)
                s.flush()
                learning.enqueue_annotation(s, case, project, c.settings.data_dir)
                store.audit(s, user, "upload", pid, case.id, {"name": p.name, "format": p.source_format})
                cases.append(case)
            body = {"cases": [case_summary(s, case) for case in cases], "skipped": skipped}
            if row is not None:
                row.status_code, row.response = 201, body
        return JSONResponse(body, status_code=201)
    except IntegrityError:
        replay = _replay(c, user, scope, key)
        if replay is None:
            raise
        return replay


@router.post("/projects/{pid}/cases", status_code=201)
async def upload_cases(pid: ProjectId, request: Request, user: User = Depends(current_user)) -> JSONResponse:
    """Upload image files or zips of them (multipart, any field name); a job annotates each new case.

    Answers 201 ``{"cases": [case, ...], "skipped": [{"file", "reason"}]}``; 422 when no file could be read.
    A repeated request with the same ``Idempotency-Key`` header returns the first answer and creates nothing.
    """
    c = ctx(request)
    key = idempotency_key(request)
    scope = f"POST /api/projects/{pid}/cases"

    def check() -> JSONResponse | None:
        with c.db.read() as s:
            project_access(s, user, pid, Action.UPLOAD)
        return _replay(c, user, scope, key)

    if (early := await run_in_threadpool(check)) is not None:
        return early
    form = await request.form(max_files=c.settings.max_archive_files, max_fields=100)
    try:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise HTTPException(422, "no file in the upload; send multipart/form-data with one or more files")
        st = c.settings
        limits = ArchiveLimits(st.max_archive_files, st.max_archive_bytes, st.max_image_bytes, st.max_upload_ratio)

        def prepare() -> tuple[list[PreparedCase], list[dict]]:
            prepared, skipped = [], []
            for f in files:
                name = (f.filename or "upload")[:200]
                try:
                    prepared += prepare_upload(f.filename or "upload", f.file, limits)
                except MedannotError as exc:
                    skipped.append({"file": name, "reason": public_message(exc)})
                except Exception as exc:  # noqa: BLE001 - a reader tripped on a damaged file: refuse it, keep serving
                    log.warning("upload %r: %s: %s", name, type(exc).__name__, public_message(exc))
                    skipped.append({"file": name, "reason": f"{name}: could not be read as an image ({type(exc).__name__}); "
                                    "check the file"})
            return prepared, skipped

        prepared, skipped = await run_in_threadpool(prepare)
        if not prepared:
            raise HTTPException(422, "; ".join(f"{s['reason']}" for s in skipped)[:1000] or "no readable image")
        return await run_in_threadpool(_create_cases, c, user, pid, key, prepared, skipped)
    finally:
        await form.close()


# --------------------------------------------------------------------------- read


@router.get("/cases/{cid}")
def get_case(cid: CaseId, request: Request, user: User = Depends(current_user)) -> dict:
    """One case with labels, image URL, latest and accepted versions and the correction effort."""
    with ctx(request).db.read() as s:
        case, project, _ = case_access(s, user, cid, Action.READ)
        return case_detail(s, case, project)


@router.get("/cases/{cid}/image", responses=GZIP_DOWNLOAD)
def get_image(cid: CaseId, request: Request, user: User = Depends(current_user)) -> FileResponse:
    """The case image as gzipped NIfTI (a download, never rendered)."""
    c = ctx(request)
    with c.db.write() as s:
        case, _, _ = case_access(s, user, cid, Action.READ)
        store.audit(s, user, "read_image", case.project_id, case.id)
        sha = case.image_sha256
    return blob_response(c.blobs.path(sha), f"case-{cid}.nii.gz")


# --------------------------------------------------------------------------- review


@router.post("/cases/{cid}/open")
def open_case(cid: CaseId, request: Request, user: User = Depends(current_user)) -> dict:
    """Mark a pending case as in review."""
    with ctx(request).db.write() as s:
        case, project, _ = case_access(s, user, cid, Action.EDIT)
        if case.status == "pending":
            store.touch(case, "in_review")
        store.audit(s, user, "open", case.project_id, case.id)
        s.flush()
        return case_detail(s, case, project)


def _conflict(s: Any, case_id: int, detail: str) -> JSONResponse:
    latest = store.latest_version(s, case_id)
    return JSONResponse({"detail": detail, "latest": version_json(latest, usernames(s, {latest.author_id} if latest else set()))},
                        status_code=409)


@router.post("/cases/{cid}/accept")
def accept(cid: CaseId, body: AcceptBody, request: Request, user: User = Depends(current_user)) -> Any:
    """Accept the latest version: a version of kind ``accepted`` and the correction effort against the proposal.

    409 with the latest version when ``version_id`` is not the latest.
    """
    c = ctx(request)
    with c.db.read() as s:
        case, project, _ = case_access(s, user, cid, Action.REVIEW)
        latest = store.latest_version(s, cid)
        if store.is_locked(case) and not (case.status == "accepted" and latest is not None and latest.kind == "accepted"):
            return locked(case, "it can be accepted")
        if latest is None:
            raise HTTPException(422, f"case {cid} has no annotation yet; wait for its job or save an edit")
        if latest.id != body.version_id:
            return _conflict(s, cid, f"version {body.version_id} is not the latest of case {cid}")
        proposal = s.scalar(select(AnnotationVersion).where(AnnotationVersion.case_id == cid, AnnotationVersion.kind == "proposal")
                            .order_by(AnnotationVersion.number.desc()).limit(1))
        label_values = [int(lab["value"]) for lab in project.labels]
        dims, already = case.spatial_dims, latest.kind == "accepted" and case.status == "accepted"
        mask_sha, proposal_sha = latest.mask_sha256, proposal.mask_sha256 if proposal else None
    effort = None
    if not already:  # without a proposal (a project with no model yet) the effort is against an empty mask
        accepted, spacing = mask_array(c.blobs.get(mask_sha))
        proposed = mask_array(c.blobs.get(proposal_sha))[0] if proposal_sha is not None else np.zeros_like(accepted)
        effort = correction_effort(proposed, accepted, spacing, dims, body.seconds_spent, label_values)
        effort["proposal"] = "model" if proposal_sha is not None else "none"
    try:
        with c.db.write() as s:
            case, project, _ = case_access(s, user, cid, Action.REVIEW)
            latest = store.latest_version(s, cid)
            if latest is None or latest.id != body.version_id:
                return _conflict(s, cid, f"version {body.version_id} is not the latest of case {cid}")
            if store.is_locked(case) and not already:
                return locked(case, "it can be accepted")
            if not already:
                s.add(AnnotationVersion(case_id=cid, number=latest.number + 1, kind="accepted", mask_sha256=mask_sha,
                                        author_id=user.id, base_version_id=latest.id))
                s.flush()
                if effort is not None:
                    effort.update(store.interaction_counts(s, cid))
                case.effort = effort
            store.touch(case, "accepted")
            case.reject_reason = None
            s.execute(delete(Draft).where(Draft.case_id == cid, Draft.user_id == user.id))
            store.audit(s, user, "accept", case.project_id, cid, {"version_id": body.version_id, "effort": effort})
            if not already:
                learning.on_accepted(s, case, project)
            s.flush()
            return case_detail(s, case, project)
    except IntegrityError:
        with c.db.read() as s:
            return _conflict(s, cid, f"case {cid} changed while accepting; reload and try again")


@router.post("/cases/{cid}/reject")
def reject(cid: CaseId, body: RejectBody, request: Request, user: User = Depends(current_user)) -> Any:
    """Reject a case (e.g. unusable image), with a reason; 409 on an accepted case (reopen it first)."""
    with ctx(request).db.write() as s:
        case, project, _ = case_access(s, user, cid, Action.REVIEW)
        if case.status == "accepted":
            return locked(case, "it can be rejected")
        store.touch(case, "rejected")
        case.reject_reason = body.reason
        store.audit(s, user, "reject", case.project_id, cid, {"reason": body.reason[:200]})
        s.flush()
        return case_detail(s, case, project)


class ReopenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000)


@router.post("/cases/{cid}/reopen")
def reopen(cid: CaseId, request: Request, body: ReopenBody | None = None, user: User = Depends(current_user)) -> Any:
    """Reopen an accepted or rejected case for editing (reviewers and admins); 409 when it is not locked.

    The reopening is a version of kind ``reopened`` (the latest mask, by the caller) when the case has a
    mask, so it shows in the versions list, and it is audited with the reason. The case is in review again.
    """
    reason = body.reason if body is not None else ""
    try:
        with ctx(request).db.write() as s:
            case, project, _ = case_access(s, user, cid, Action.REVIEW)
            if not store.is_locked(case):
                return JSONResponse({"detail": f"case {cid} is {case.status}, not accepted or rejected: nothing to reopen"},
                                    status_code=409)
            latest = store.latest_version(s, cid)
            version = None
            if latest is not None:
                version = AnnotationVersion(case_id=cid, number=latest.number + 1, kind="reopened", mask_sha256=latest.mask_sha256,
                                            author_id=user.id, base_version_id=latest.id, provenance={"reason": reason[:500]})
                s.add(version)
                s.flush()
            previous = case.status
            store.touch(case, "in_review")
            case.reject_reason = None
            store.audit(s, user, "reopen", case.project_id, cid, {"was": previous, "reason": reason[:200],
                                                                   "version_id": version.id if version else None})
            s.flush()
            return case_detail(s, case, project)
    except IntegrityError:  # a version was saved at the same moment
        with ctx(request).db.read() as s:
            return _conflict(s, cid, f"case {cid} changed while reopening; reload and try again")


@router.post("/cases/{cid}/jobs", status_code=201)
def reannotate(cid: CaseId, request: Request, user: User = Depends(current_user)) -> JSONResponse:
    """Queue another annotation job for the case with the model that proposes now (``Idempotency-Key`` honoured)."""
    c = ctx(request)
    key = idempotency_key(request)
    scope = f"POST /api/cases/{cid}/jobs"
    with c.db.read() as s:
        case_access(s, user, cid, Action.UPLOAD)
    if (early := _replay(c, user, scope, key)) is not None:
        return early
    try:
        with c.db.write() as s:
            case, project, _ = case_access(s, user, cid, Action.UPLOAD)
            if store.is_locked(case):
                return locked(case, "a new annotation job")
            row = idempotency.reserve(s, user.id, scope, key) if key else None
            job = learning.enqueue_annotation(s, case, project, c.settings.data_dir)
            body = queue.job_json(job)
            if row is not None:
                row.status_code, row.response = 201, body
            store.audit(s, user, "queue_job", case.project_id, cid, {"job_id": job.id})
        return JSONResponse(body, status_code=201)
    except IntegrityError:
        if (replay := _replay(c, user, scope, key)) is None:
            raise
        return replay

