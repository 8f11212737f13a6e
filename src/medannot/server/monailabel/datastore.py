"""MONAI Label's ``/datastore`` paths: the project's cases as images, their versions as labels, labels uploaded as
new ``edit`` versions (checked on the case grid, re-encoded; accepted or rejected cases refuse them with 409).
Included by :mod:`.routes` under the same base URL.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import FormData, UploadFile

from medannot.errors import InputError
from medannot.server import store
from medannot.server.deps import GZIP_DOWNLOAD, AppContext, ctx, usernames, version_json
from medannot.server.imaging import check_mask
from medannot.server.models import CaseRecord, Project, User
from medannot.server.monailabel import service
from medannot.server.monailabel.access import (
    NoStoreRoute,
    ProjectRef,
    access,
    caller,
    case_in,
    client_id,
    json_params,
)
from medannot.server.monailabel.service import Tag
from medannot.server.routes.cases import blob_response, locked
from medannot.server.routes.versions import HEAVY_WORK
from medannot.server.security import Action

router = APIRouter(route_class=NoStoreRoute)
"""Included by :data:`.routes.router`, which adds the base URL, the tag and the error answers."""


@router.get("/datastore/")
def datastore(project: ProjectRef, request: Request, output: str | None = Query(None, max_length=16),
              user: User = Depends(caller)) -> Any:
    """``output=stats`` (default) counts, ``all`` every case with its image and label info, ``train`` the labelled ids."""
    with ctx(request).db.read() as s:
        p, _ = access(s, user, project, Action.READ)
        if output in (None, "", "stats"):
            return service.datastore_status(s, p)
        if output == "all":
            return service.datastore_json(s, p)
        if output == "train":
            return service.datalist(s, p)
    raise HTTPException(422, "output must be one of: stats, all, train")


@router.put("/datastore/", include_in_schema=False)
@router.put("/datastore/image", include_in_schema=False)
def add_image(project: ProjectRef, request: Request, user: User = Depends(caller)) -> Response:
    """Not offered (501; left out of the OpenAPI schema): cases come in through the review server's upload."""
    with ctx(request).db.read() as s:
        p, _ = access(s, user, project, Action.UPLOAD)
        name, pid = p.name, p.id
    raise HTTPException(501, f"add images to project {name!r} with the review server's upload (POST /api/projects/{pid}/cases "
                        "or the review page); MONAI Label clients then fetch them with Next Sample")


def _image_case(request: Request, user: User, project: str, image: str, audit: bool) -> tuple[CaseRecord, AppContext]:
    c = ctx(request)
    with (c.db.write() if audit else c.db.read()) as s:
        p, _ = access(s, user, project, Action.READ)
        case = case_in(s, p, image)
        if audit:
            store.audit(s, user, "read_image", p.id, case.id, {"via": "monailabel"})
        s.expunge(case)
    return case, c


@router.head("/datastore/image")
def check_image(project: ProjectRef, request: Request, image: str = Query(max_length=64), check_sum: str | None = Query(None, max_length=80),
                user: User = Depends(caller)) -> dict:
    """200 when the image exists (and, with ``check_sum`` ``SHA256:hex`` or ``hex``, has that content); else 404."""
    case, _ = _image_case(request, user, project, image, audit=False)
    if check_sum:
        algo, _, digest = check_sum.rpartition(":")
        if (algo or "SHA256").upper() != "SHA256" or digest.lower() != case.image_sha256:
            raise HTTPException(404, "image not found (checksum differs)")
    return {}


@router.get("/datastore/image", responses=GZIP_DOWNLOAD)
def download_image(project: ProjectRef, request: Request, image: str = Query(max_length=64), user: User = Depends(caller)) -> Response:
    """The case image: the stored gzipped NIfTI, as a download (the read is audited)."""
    case, c = _image_case(request, user, project, image, audit=True)
    return blob_response(c.blobs.path(case.image_sha256), service.image_name(case))


@router.get("/datastore/image/info")
def get_image_info(project: ProjectRef, request: Request, image: str = Query(max_length=64), user: User = Depends(caller)) -> dict:
    """The case's image info (name, checksum, status, shape...)."""
    case, _ = _image_case(request, user, project, image, audit=False)
    return service.image_info(case)


def _label(request: Request, user: User, project: str, label: str, tag: str | None, audit: bool) -> tuple[Any, AppContext, dict]:
    c = ctx(request)
    parsed = Tag.parse(tag)
    with (c.db.write() if audit else c.db.read()) as s:
        p, _ = access(s, user, project, Action.READ)
        case = case_in(s, p, label)
        version = service.label_version(s, case.id, parsed)
        if version is None:
            raise HTTPException(404, f"image {case.id} has no {parsed.value} label yet"
                                + (" (nobody saved one)" if parsed is Tag.FINAL else " (its model has not run)"))
        info = service.label_info(version, usernames(s, {version.author_id}))
        if audit:
            store.audit(s, user, "read_mask", p.id, case.id, {"version_id": version.id, "via": "monailabel"})
        s.expunge(version)
    return version, c, info


@router.head("/datastore/label")
def check_label(project: ProjectRef, request: Request, image: str = Query(max_length=64), tag: str | None = Query(None, max_length=40),
                user: User = Depends(caller)) -> dict:
    """200 when the image has a label with ``tag``; else 404."""
    _label(request, user, project, image, tag, audit=False)
    return {}


@router.get("/datastore/label", responses=GZIP_DOWNLOAD)
def download_label(project: ProjectRef, request: Request, label: str = Query(max_length=64), tag: str | None = Query(None, max_length=40),
                   user: User = Depends(caller)) -> Response:
    """The mask of the version ``tag`` names (uint8 label NIfTI on the image grid), as a download (audited)."""
    version, c, info = _label(request, user, project, label, tag, audit=True)
    return blob_response(c.blobs.path(version.mask_sha256), info["name"])


@router.get("/datastore/label/info")
def get_label_info(project: ProjectRef, request: Request, label: str = Query(max_length=64), tag: str | None = Query(None, max_length=40),
                   user: User = Depends(caller)) -> dict:
    """The label info of the version ``tag`` names (version id and number, kind, author, model)."""
    return _label(request, user, project, label, tag, audit=False)[2]


def _upload_target(c: AppContext, user: User, project: str, image: str) -> tuple[CaseRecord, Project] | JSONResponse:
    with c.db.read() as s:
        p, _ = access(s, user, project, Action.EDIT)
        case = case_in(s, p, image)
        if store.is_locked(case):
            return locked(case, "it can be labelled")
        s.expunge(case)
        s.expunge(p)
        return case, p


def _check_label(c: AppContext, case: CaseRecord, project: Project, upload: UploadFile, lut: dict[int, int] | None) -> str:
    values = set(lut) if lut else {int(lab["value"]) for lab in project.labels}
    with HEAVY_WORK:
        checked = check_mask(upload.file, list(case.shape), case.affine, values, compressed_size=upload.size)
        data = service.remap(checked.array, lut, case.affine) if lut else checked.data
        return c.blobs.put(data)


def _store_label(c: AppContext, user: User, project: str, case_id: int, sha: str, base_id: int | None,
                 provenance: dict[str, Any]) -> JSONResponse:
    for _ in range(3):
        try:
            with c.db.write() as s:
                p, _ = access(s, user, project, Action.EDIT)
                case = case_in(s, p, str(case_id))
                if store.is_locked(case):
                    return locked(case, "it can be labelled")
                latest = store.latest_version(s, case.id)
                if base_id is not None and (latest.id if latest else None) != base_id:
                    return JSONResponse({"detail": f"base_version {base_id} is not the latest version of image {case.id}; "
                                         "fetch the latest label, re-apply your edit and save again",
                                         "latest": version_json(latest, usernames(s, {latest.author_id} if latest else set()))},
                                        status_code=409)
                version = service.add_edit_version(s, case, user, sha, latest, provenance)
                body = {"image": service.image_id(case.id), "label": service.image_id(case.id), "tag": Tag.FINAL.value,
                        "version": version_json(version, {user.id: user.username})}
            return JSONResponse(body)
        except IntegrityError:  # another save took this number between our read and our insert
            if base_id is not None:
                break
    return JSONResponse({"detail": f"image {case_id} got new versions while saving; save again"}, status_code=409)


@router.put("/datastore/label")
async def save_label(project: ProjectRef, request: Request, image: str = Query(max_length=64),
                     tag: str | None = Query(None, max_length=40), user: User = Depends(caller)) -> Response:
    """Save a label (multipart: file field ``label``, optional JSON field ``params``) as a new ``edit`` version.

    The mask must lie on the image's grid with values of the project's label map; with ``params.label_info``
    (Slicer's ``[{"name", "idx"}]``) the values are the client's segment numbers and are mapped to the project's
    by name. ``params.base_version`` (a version id) makes the save conditional: 409 when it is not the latest.
    Answers 200 ``{"image", "label", "tag", "version"}``; 409 on an accepted or rejected case; 422 for a mask
    that does not fit.
    """
    if Tag.parse(tag) is not Tag.FINAL:
        raise HTTPException(422, "labels are saved with tag 'final' (a new version of the case); 'original' is the model's")
    c = ctx(request)
    target = await run_in_threadpool(_upload_target, c, user, project, image)
    if isinstance(target, JSONResponse):
        return target
    case, p = target
    form = await request.form(max_files=2, max_fields=16)
    try:
        upload = _one_file(form, "label")
        params = json_params(form.get("params"))
        lut = service.label_lut(params.get("label_info"), p)
        base = params.get("base_version")
        if base is not None and (isinstance(base, bool) or not isinstance(base, int) or not 1 <= base <= 2**31 - 1):
            raise InputError("params.base_version must be a version id")
        sha = await run_in_threadpool(_check_label, c, case, p, upload, lut)
    finally:
        await form.close()
    provenance = {"client": "monailabel", "client_id": client_id(params), "tag": Tag.FINAL.value,
                  "label_info": params.get("label_info") if lut else None}
    return await run_in_threadpool(_store_label, c, user, project, case.id, sha, base, provenance)


def _one_file(form: FormData, name: str) -> UploadFile:
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    named = form.get(name)
    if isinstance(named, UploadFile):
        return named
    if len(files) == 1:
        return files[0]
    raise HTTPException(422, f"send the label as one multipart file field named {name!r}")
