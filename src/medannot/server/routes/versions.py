"""Annotation versions (optimistic concurrency), their masks, and per-user drafts (autosave)."""

from __future__ import annotations

import os
import tempfile
import threading
from typing import IO, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from medannot.server import store
from medannot.server.deps import ERRORS, GZIP_DOWNLOAD, ID_MAX, AppContext, CaseId, VersionId, case_access, ctx, current_user, usernames, version_json
from medannot.server.imaging import check_mask
from medannot.server.models import AnnotationVersion, Draft, User, utcnow
from medannot.server.routes.cases import _conflict, blob_response, locked
from medannot.server.security import Action

router = APIRouter(prefix="/api", tags=["versions"], responses=ERRORS)
SPOOL_BYTES = 8 * 1024**2
"""A posted mask stays in memory up to this size (bytes), then goes to a temporary file while it arrives."""
HEAVY_WORK = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))
"""At most this many masks are decoded and checked at once (one per CPU core)."""


@router.get("/cases/{cid}/versions")
def list_versions(cid: CaseId, request: Request, user: User = Depends(current_user)) -> list[dict]:
    """Every version of the case, newest first."""
    with ctx(request).db.read() as s:
        case_access(s, user, cid, Action.READ)
        rows = list(s.scalars(select(AnnotationVersion).where(AnnotationVersion.case_id == cid).order_by(AnnotationVersion.number.desc())))
        names = usernames(s, {v.author_id for v in rows})
        return [version_json(v, names) for v in rows]


@router.get("/cases/{cid}/versions/{vid}/mask", responses=GZIP_DOWNLOAD)
def get_mask(cid: CaseId, vid: VersionId, request: Request, user: User = Depends(current_user)) -> Response:
    """A version's mask: uint8 label NIfTI (gz) on the image grid, as a download."""
    c = ctx(request)
    with c.db.write() as s:
        case, _, _ = case_access(s, user, cid, Action.READ)
        version = s.get(AnnotationVersion, vid)
        if version is None or version.case_id != cid:
            raise HTTPException(404, f"version {vid} of case {cid} not found")
        store.audit(s, user, "read_mask", case.project_id, cid, {"version_id": vid})
        sha = version.mask_sha256
    return blob_response(c.blobs.path(sha), f"case-{cid}-v{version.number}.nii.gz")


async def body_file(request: Request) -> tuple[IO[bytes], int]:
    """The request body in a spooled temporary file (memory up to :data:`SPOOL_BYTES`, then disk) and its size.

    The body limit itself is enforced while it arrives by :class:`~medannot.server.middleware.BodyLimit`.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by the caller
    size = 0
    try:
        async for chunk in request.stream():
            spool.write(chunk)
            size += len(chunk)
    except BaseException:  # the body was cut (too large, client gone): nothing to hand over
        spool.close()
        raise
    spool.seek(0)
    return spool, size


def _checked(c: AppContext, user: User, cid: int, body: IO[bytes], size: int) -> tuple[str, int] | JSONResponse:
    """Validate a posted mask against the case (bounded by the case grid); store the re-encoded mask.

    Returns (sha256, project id), or a 409 answer when the case is locked.
    """
    if size == 0:
        raise HTTPException(422, "empty body; send the label NIfTI bytes (application/octet-stream)")
    with c.db.read() as s:
        case, project, _ = case_access(s, user, cid, Action.EDIT)
        if store.is_locked(case):
            return locked(case, "it can be edited")
        shape, affine, pid = case.shape, case.affine, case.project_id
        values = {int(lab["value"]) for lab in project.labels}
    with HEAVY_WORK:  # bounded: 50 concurrent saves queue here instead of thrashing the CPUs together
        mask = check_mask(body, shape, affine, values, compressed_size=size)
        return c.blobs.put(mask.data), pid


def _save_version(c: AppContext, user: User, cid: int, base: int | None, body: IO[bytes], size: int) -> Any:
    checked = _checked(c, user, cid, body, size)
    if isinstance(checked, JSONResponse):
        return checked
    sha, _ = checked
    try:
        with c.db.write() as s:
            case, _, _ = case_access(s, user, cid, Action.EDIT)
            if store.is_locked(case):
                return locked(case, "it can be edited")
            latest = store.latest_version(s, cid)
            if (latest.id if latest else None) != base:
                return _conflict(s, cid, f"base_version {base} is not the latest version of case {cid}; "
                                 "load the latest, re-apply your edit and save again")
            version = AnnotationVersion(case_id=cid, number=(latest.number if latest else 0) + 1, kind="edit", mask_sha256=sha,
                                        author_id=user.id, base_version_id=base)
            s.add(version)
            s.flush()
            store.touch(case, "in_review")
            s.execute(delete(Draft).where(Draft.case_id == cid, Draft.user_id == user.id))
            store.audit(s, user, "save_version", case.project_id, cid, {"version_id": version.id, "number": version.number})
            return JSONResponse(version_json(version, {user.id: user.username}), status_code=201)
    except IntegrityError:  # another save took this number between our check and our insert
        with c.db.read() as s:
            return _conflict(s, cid, f"case {cid} got a new version while saving; load the latest and save again")


@router.post("/cases/{cid}/versions", status_code=201)
async def save_version(cid: CaseId, request: Request, base_version: int | None = Query(None, ge=1, le=ID_MAX),
                       user: User = Depends(current_user)) -> Any:
    """Save an edited mask (label NIfTI bytes) on top of ``base_version``.

    201 with the new version; 409 ``{"detail", "latest"}`` when ``base_version`` is not the latest (nothing
    is overwritten), 409 ``{"detail", "locked": true}`` when the case is accepted or rejected (reopen it first);
    422 when the mask is not on the image grid, holds unknown labels or inflates past what the grid needs.
    The stored mask is re-encoded by the server (never the bytes as sent).
    """
    body, size = await body_file(request)
    try:
        return await run_in_threadpool(_save_version, ctx(request), user, cid, base_version, body, size)
    finally:
        body.close()


def _save_draft(c: AppContext, user: User, cid: int, body: IO[bytes], size: int) -> Response:
    checked = _checked(c, user, cid, body, size)
    if isinstance(checked, JSONResponse):
        return checked
    sha, pid = checked
    for _ in range(3):
        try:
            with c.db.write() as s:
                row = s.scalar(select(Draft).where(Draft.case_id == cid, Draft.user_id == user.id))
                if row is None:
                    s.add(Draft(case_id=cid, user_id=user.id, mask_sha256=sha))
                else:
                    row.mask_sha256, row.updated = sha, utcnow()
                store.audit(s, user, "save_draft", pid, cid)
            return Response(status_code=204)
        except IntegrityError:  # two tabs of the same user inserted at once: update the other's row
            continue
    raise HTTPException(409, "draft kept changing; try again")


@router.put("/cases/{cid}/draft", status_code=204)
async def put_draft(cid: CaseId, request: Request, user: User = Depends(current_user)) -> Response:
    """Autosave the caller's draft mask of the case (not a version; dropped when the caller saves a version)."""
    body, size = await body_file(request)
    try:
        return await run_in_threadpool(_save_draft, ctx(request), user, cid, body, size)
    finally:
        body.close()


@router.get("/cases/{cid}/draft", responses=GZIP_DOWNLOAD)
def get_draft(cid: CaseId, request: Request, user: User = Depends(current_user)) -> Response:
    """The caller's draft mask (gzipped NIfTI), or 404 when there is none."""
    c = ctx(request)
    with c.db.write() as s:
        case, _, _ = case_access(s, user, cid, Action.EDIT)
        row = s.scalar(select(Draft).where(Draft.case_id == cid, Draft.user_id == user.id))
        if row is None:
            raise HTTPException(404, f"no draft of case {cid} for {user.username}")
        store.audit(s, user, "read_draft", case.project_id, cid)
        sha = row.mask_sha256
    return blob_response(c.blobs.path(sha), f"case-{cid}-draft.nii.gz")


@router.delete("/cases/{cid}/draft", status_code=204)
def delete_draft(cid: CaseId, request: Request, user: User = Depends(current_user)) -> Response:
    """Drop the caller's draft of the case."""
    with ctx(request).db.write() as s:
        case_access(s, user, cid, Action.EDIT)
        s.execute(delete(Draft).where(Draft.case_id == cid, Draft.user_id == user.id))
    return Response(status_code=204)
