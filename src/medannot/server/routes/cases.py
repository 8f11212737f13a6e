"""Cases: upload (with ``Idempotency-Key``), read, image, open / accept / reject, re-annotate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import UploadFile

from medannot.errors import MedannotError
from medannot.server import idempotency, store
from medannot.server import jobs as queue
from medannot.server.deps import AppContext, case_access, case_detail, case_summary, ctx, current_user, project_access, usernames, version_json
from medannot.server.imaging import correction_effort, mask_array, to_nifti_bytes
from medannot.server.models import AnnotationVersion, CaseRecord, Draft, User
from medannot.server.security import Action
from medannot.server.uploads import ArchiveLimits, PreparedCase, prepare_upload

router = APIRouter(prefix="/api", tags=["cases"])

NIFTI_HEADERS = {"X-Content-Type-Options": "nosniff"}


def blob_response(path: Any, filename: str) -> FileResponse:
    """A stored NIfTI blob as a download: ``application/gzip``, attachment, nosniff (never rendered as HTML)."""
    return FileResponse(path, media_type="application/gzip", filename=filename, content_disposition_type="attachment",
                        headers=NIFTI_HEADERS)


class AcceptBody(BaseModel):
    version_id: int
    seconds_spent: float = Field(0.0, ge=0)


class RejectBody(BaseModel):
    reason: str = Field("", max_length=2000)


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
                queue.enqueue(s, case, project.model)
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
async def upload_cases(pid: int, request: Request, user: User = Depends(current_user)) -> JSONResponse:
    """Upload image files or zips of them (multipart, any field name); a job annotates each new case.

    Answers 201 ``{"cases": [case, ...], "skipped": [{"file", "reason"}]}``; 422 when no file could be read.
    A repeated request with the same ``Idempotency-Key`` header returns the first answer and creates nothing.
    """
    c = ctx(request)
    key = (request.headers.get("idempotency-key") or "").strip() or None
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
        limits = ArchiveLimits(c.settings.max_archive_files, c.settings.max_archive_bytes)

        def prepare() -> tuple[list[PreparedCase], list[dict]]:
            prepared, skipped = [], []
            for f in files:
                try:
                    prepared += prepare_upload(f.filename or "upload", f.file, limits)
                except MedannotError as exc:
                    skipped.append({"file": (f.filename or "upload")[:200], "reason": str(exc).splitlines()[0]})
            return prepared, skipped

        prepared, skipped = await run_in_threadpool(prepare)
        if not prepared:
            raise HTTPException(422, "; ".join(f"{s['reason']}" for s in skipped) or "no readable image")
        return await run_in_threadpool(_create_cases, c, user, pid, key, prepared, skipped)
    finally:
        await form.close()


# --------------------------------------------------------------------------- read


@router.get("/cases/{cid}")
def get_case(cid: int, request: Request, user: User = Depends(current_user)) -> dict:
    """One case with labels, image URL, latest and accepted versions and the correction effort."""
    with ctx(request).db.read() as s:
        case, project, _ = case_access(s, user, cid, Action.READ)
        return case_detail(s, case, project)


@router.get("/cases/{cid}/image")
def get_image(cid: int, request: Request, user: User = Depends(current_user)) -> FileResponse:
    """The case image as gzipped NIfTI (a download, never rendered)."""
    c = ctx(request)
    with c.db.write() as s:
        case, _, _ = case_access(s, user, cid, Action.READ)
        store.audit(s, user, "read_image", case.project_id, case.id)
        sha = case.image_sha256
    return blob_response(c.blobs.path(sha), f"case-{cid}.nii.gz")


# --------------------------------------------------------------------------- review


@router.post("/cases/{cid}/open")
def open_case(cid: int, request: Request, user: User = Depends(current_user)) -> dict:
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
def accept(cid: int, body: AcceptBody, request: Request, user: User = Depends(current_user)) -> Any:
    """Accept the latest version: a version of kind ``accepted`` and the correction effort against the proposal.

    409 with the latest version when ``version_id`` is not the latest.
    """
    c = ctx(request)
    with c.db.read() as s:
        case, project, _ = case_access(s, user, cid, Action.REVIEW)
        latest = store.latest_version(s, cid)
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
    if proposal_sha is not None and not already:
        accepted, spacing = mask_array(c.blobs.get(mask_sha))
        proposed, _ = mask_array(c.blobs.get(proposal_sha))
        effort = correction_effort(proposed, accepted, spacing, dims, body.seconds_spent, label_values)
    try:
        with c.db.write() as s:
            case, project, _ = case_access(s, user, cid, Action.REVIEW)
            latest = store.latest_version(s, cid)
            if latest is None or latest.id != body.version_id:
                return _conflict(s, cid, f"version {body.version_id} is not the latest of case {cid}")
            if not already:
                s.add(AnnotationVersion(case_id=cid, number=latest.number + 1, kind="accepted", mask_sha256=mask_sha,
                                        author_id=user.id, base_version_id=latest.id))
                s.flush()
                case.effort = effort
            store.touch(case, "accepted")
            case.reject_reason = None
            s.execute(delete(Draft).where(Draft.case_id == cid, Draft.user_id == user.id))
            store.audit(s, user, "accept", case.project_id, cid, {"version_id": body.version_id, "effort": effort})
            s.flush()
            return case_detail(s, case, project)
    except IntegrityError:
        with c.db.read() as s:
            return _conflict(s, cid, f"case {cid} changed while accepting; reload and try again")


@router.post("/cases/{cid}/reject")
def reject(cid: int, body: RejectBody, request: Request, user: User = Depends(current_user)) -> dict:
    """Reject a case (e.g. unusable image), with a reason."""
    with ctx(request).db.write() as s:
        case, project, _ = case_access(s, user, cid, Action.REVIEW)
        store.touch(case, "rejected")
        case.reject_reason = body.reason
        store.audit(s, user, "reject", case.project_id, cid, {"reason": body.reason[:200]})
        s.flush()
        return case_detail(s, case, project)


@router.post("/cases/{cid}/jobs", status_code=201)
def reannotate(cid: int, request: Request, user: User = Depends(current_user)) -> JSONResponse:
    """Queue another annotation job for the case with the project's model (``Idempotency-Key`` honoured)."""
    c = ctx(request)
    key = (request.headers.get("idempotency-key") or "").strip() or None
    scope = f"POST /api/cases/{cid}/jobs"
    with c.db.read() as s:
        case_access(s, user, cid, Action.UPLOAD)
    if (early := _replay(c, user, scope, key)) is not None:
        return early
    try:
        with c.db.write() as s:
            case, project, _ = case_access(s, user, cid, Action.UPLOAD)
            row = idempotency.reserve(s, user.id, scope, key) if key else None
            job = queue.enqueue(s, case, project.model)
            body = queue.job_json(job)
            if row is not None:
                row.status_code, row.response = 201, body
            store.audit(s, user, "queue_job", case.project_id, cid, {"job_id": job.id})
        return JSONResponse(body, status_code=201)
    except IntegrityError:
        if (replay := _replay(c, user, scope, key)) is None:
            raise
        return replay

