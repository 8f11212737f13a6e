"""MONAI Label's REST paths under ``/monailabel/{project}``: what 3D Slicer's MONAI Label module calls.

Every route but ``GET /auth/`` and ``POST /auth/token`` needs a medannot bearer token (``Authorization: Bearer``,
as MONAI Label clients send the ``access_token`` of ``/auth/token``), checked before any body is read; routes take
no body parameters, so FastAPI parses nothing before that check and before the caller's role in the project is
known. Bodies are bounded by the app's :class:`~medannot.server.middleware.BodyLimit` (label uploads by the upload
limit, everything else by the JSON limit, a declared login form by the login limit), masks are read bounded by their
case's grid and re-encoded (:func:`medannot.server.imaging.check_mask`), and accepted or rejected cases refuse new
labels (409). A caller who is not a member of the project gets 403 whether or not it exists (its existence is not
revealed); the project's role rules are medannot's (:mod:`medannot.server.security`). What proposes, training rounds
and the order of the next case are the learning loop's (:mod:`medannot.server.learning`), as on the review page.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from medannot.errors import InputError, MedannotError
from medannot.server import learning, store
from medannot.server.deps import ERRORS, GZIP_DOWNLOAD, AppContext, Detail, ctx, current_user, usernames, version_json
from medannot.server.imaging import check_mask
from medannot.server.middleware import LOGIN_BODY_LIMIT, public_message
from medannot.server.models import CaseRecord, Project, User
from medannot.server.monailabel import service
from medannot.server.monailabel.service import SampleStrategy, Tag
from medannot.server.routes.auth import LOCKED, LoginBody, login
from medannot.server.routes.cases import blob_response, locked
from medannot.server.routes.versions import HEAVY_WORK
from medannot.server.security import Action, allowed

log = logging.getLogger("medannot.server")

INFER_SLOTS = 1
"""Model runs of ``/infer`` at once per server (each may use every core); more callers wait without holding a thread."""
INFER_WAITING = 4
"""Callers that may wait for an ``/infer`` slot; one more gets 429 with Retry-After."""
MAX_PARAMS_CHARS = 64 * 1024
"""Longest ``params`` form field (characters)."""
ProjectRef = Annotated[str, PathParam(min_length=1, max_length=200, description="The project's name or id.")]
AUTH_HINT = ("log in first: POST <server>/monailabel/<project>/auth/token with your medannot user name and password "
             "(form fields username, password), then send 'Authorization: Bearer <access_token>'")


class NoStoreRoute(APIRoute):
    """A route whose answers carry ``Cache-Control: no-store`` (they hold patient images and masks)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def no_store(request: Request) -> Response:
            response = await handler(request)
            response.headers.setdefault("cache-control", "no-store")
            return response

        return no_store


router = APIRouter(prefix="/monailabel/{project}", tags=["MONAI Label"], route_class=NoStoreRoute, responses=ERRORS)
BUSY: dict[int | str, dict[str, Any]] = {429: {"model": Detail, "description": "Too many callers wait for the model (Retry-After)."}}
INFER_ANSWER: dict[int | str, dict[str, Any]] = {**BUSY, 200: {
    "description": "The label NIfTI and its params: multipart (default, ``all``), the file (``image``) or the params (``json``).",
    "content": {"multipart/form-data": {"schema": {"type": "string", "format": "binary"}},
                "application/gzip": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}}}}}


# --------------------------------------------------------------------------- access


def caller(request: Request) -> User:
    """The authenticated caller (FastAPI dependency; reads headers only, never the body).

    Raises:
        HTTPException: 401 without a valid, unexpired token of an enabled user.
    """
    header = request.headers.get("authorization", "")
    if len(header) > 220:
        raise HTTPException(401, AUTH_HINT, headers={"WWW-Authenticate": "Bearer"})
    try:
        return current_user(request)
    except HTTPException as exc:
        raise HTTPException(401, AUTH_HINT, headers={"WWW-Authenticate": "Bearer"}) from exc


def access(s: Session, user: User, ref: str, action: Action) -> tuple[Project, str]:
    """The project of the base URL and the caller's role, checked for ``action``.

    Raises:
        HTTPException: 403 for a non-member (or a project that does not exist), or a role without ``action``;
            404 for a project that does not exist when the caller is a site admin.
    """
    found = service.find_project(s, user, ref)
    if found is None:
        if user.is_admin:
            raise HTTPException(404, f"no project {ref[:60]!r}; the base URL is <server>/monailabel/<project name or id>")
        raise HTTPException(403, f"you are not a member of project {ref[:60]!r} (or it does not exist); ask its admin to add you")
    project, role = found
    if not allowed(role, action, user.is_admin):
        raise HTTPException(403, f"your role ({role}) may not {action.value} in project {project.name!r}")
    return project, role


def case_in(s: Session, project: Project, raw: str | None) -> CaseRecord:
    """The case an image id names in ``project``.

    Raises:
        HTTPException: 404 when the project has no such case.
    """
    case = service.case_of(s, project, raw)
    if case is None:
        raise HTTPException(404, f"image {str(raw)[:40]!r} not found in project {project.name!r}; image ids are the case "
                            "ids that GET /datastore/?output=all lists")
    return case


def json_params(raw: object, what: str = "params") -> dict[str, Any]:
    """A JSON object from a form field or body (empty: ``{}``).

    Raises:
        InputError: Not a JSON object, or longer than :data:`MAX_PARAMS_CHARS`.
    """
    if raw is None or raw in ("", b""):
        return {}
    if isinstance(raw, UploadFile):
        raise InputError(f"{what} must be a form field with JSON, not a file")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if len(text) > MAX_PARAMS_CHARS:
        raise InputError(f"{what} is longer than {MAX_PARAMS_CHARS} characters")
    try:
        value = json.loads(text)
    except ValueError:
        raise InputError(f"{what} is not valid JSON; send a JSON object such as {{}}") from None
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object")
    return value


def client_id(params: dict[str, Any]) -> str:
    """The ``client_id`` a MONAI Label client sends with its params (text, at most 64 characters)."""
    value = params.get("client_id")
    return value[:64] if isinstance(value, str) else ""


# --------------------------------------------------------------------------- auth


@router.get("/auth/")
def auth_enabled(project: ProjectRef) -> dict:
    """Authentication is always on: clients log in at ``/auth/token`` (no project data, no token needed)."""
    return {"enabled": True, "client_id": "medannot", "realm": None}


@router.post("/auth/token", responses=LOCKED)
async def auth_token(project: ProjectRef, request: Request) -> dict:
    """Log in with a medannot user name and password (form fields, as MONAI Label's OAuth2 password form).

    Answers ``{"access_token", "token_type": "bearer"}``: a medannot token (``POST /api/login``'s, with its
    throttling, lockout and audit). 401 when wrong, 429 while locked, 413 for a form over the login limit.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > LOGIN_BODY_LIMIT:
        raise HTTPException(413, f"request body larger than {LOGIN_BODY_LIMIT} bytes; send a user name and a password")
    form = await request.form(max_files=0, max_fields=8)
    try:
        username, password = form.get("username"), form.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise HTTPException(422, "send username and password as form fields (application/x-www-form-urlencoded)")
        try:
            body = LoginBody(username=username, password=password)
        except ValidationError:
            raise HTTPException(422, "the user name or the password is too long") from None
        answer = await run_in_threadpool(login, body, request)
    finally:
        await form.close()
    return {"access_token": answer["token"], "token_type": "bearer"}


@router.get("/auth/token/valid")
def token_valid(project: ProjectRef, request: Request, user: User = Depends(caller)) -> dict:
    """The caller and their MONAI Label roles in this project (none when not a member); 401 for an invalid token."""
    with ctx(request).db.read() as s:
        found = service.find_project(s, user, project)
    return {"username": user.username, "email": None, "name": user.username,
            "roles": service.monailabel_roles(found[1] if found else None)}


# --------------------------------------------------------------------------- info


@router.get("/info/")
def info(project: ProjectRef, request: Request, user: User = Depends(caller)) -> dict:
    """The project as a MONAI Label app: name, labels (name -> value), its model and trainer, strategies, datastore counts."""
    c = ctx(request)
    with c.db.read() as s:
        p, role = access(s, user, project, Action.READ)
        return service.info_json(s, p, role, learning.proposing(s, p, c.settings.data_dir))


# --------------------------------------------------------------------------- datastore


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


# --------------------------------------------------------------------------- infer


def _infer_gate(request: Request) -> anyio.CapacityLimiter:
    gate = getattr(request.app.state, "monailabel_infer", None)
    if gate is None:  # made on the app's event loop, once
        gate = anyio.CapacityLimiter(INFER_SLOTS)
        request.app.state.monailabel_infer = gate
    return gate


def _infer_target(c: AppContext, user: User, project: str, model: str, image: str) -> dict[str, Any]:
    with c.db.read() as s:
        p, _ = access(s, user, project, Action.EDIT)
        key = service.project_model_key(p)
        who = learning.proposing(s, p, c.settings.data_dir)
        if who is None:
            raise HTTPException(404, f"project {p.name!r} has no model yet; label cases by hand (or with the Smart tool) "
                                "until a training round gives it one")
        if model != key:
            raise HTTPException(404, f"model {model[:60]!r} not found; project {p.name!r} offers: {key}")
        case = case_in(s, p, image)
        stored = service.stored_proposal(s, case, who)
        return {"project": p.id, "model": who.model, "value_map": who.value_map, "key": key, "case": case.id,
                "image": case.image_sha256, "labels": service.label_names(p),
                "proposing": service.model_key(who.label), "model_version_id": who.version.id if who.version else None,
                "stored": None if stored is None else
                {"version_id": stored.id, "sha": stored.mask_sha256, "model": stored.model_name,
                 "model_version": stored.model_version}}


def _infer_audit(c: AppContext, user: User, t: dict[str, Any], source: str) -> None:
    with c.db.write() as s:
        store.audit(s, user, "infer", t["project"], t["case"], {"via": "monailabel", "source": source})


def _multipart(params: dict[str, Any], filename: str, data: bytes) -> Response:
    """MONAI Label's infer answer: a ``params`` JSON part and an ``image`` file part (``multipart/form-data``)."""
    boundary = secrets.token_hex(16)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\nContent-Type: application/json\r\n\r\n"
            f"{json.dumps(params)}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/gzip\r\n\r\n").encode()
    return Response(head + data + f"\r\n--{boundary}--\r\n".encode(), media_type=f"multipart/form-data; boundary={boundary}")


@router.post("/infer/{model}", responses=INFER_ANSWER)
async def infer(project: ProjectRef, model: str, request: Request, image: str = Query("", max_length=64),
                output: str | None = Query(None, max_length=16), session_id: str | None = Query(None, max_length=100),
                user: User = Depends(caller)) -> Response:
    """Run the model that proposes for the project on a case: the label NIfTI (project label values) and ``params``.

    What proposes is the learning loop's choice (the project's active version, else its base model; ``params.proposing``
    names it, ``params.model_version_id`` the version). When a job of that model already made a proposal for the case,
    that proposal is returned (``params.source`` ``"stored proposal"``); otherwise the model runs now with the
    worker's proposer, one run at a time per server (callers wait; 429 when too many wait). Nothing is stored. ``output``: ``image`` (the file), ``json``
    (``params`` only), ``all`` or none (multipart with both, as MONAI Label answers). Scribbles, uploaded images
    and sessions are not offered.
    """
    if output not in (None, "", "all", "image", "json"):
        raise HTTPException(422, "output must be one of: image, json, all (DICOM SEG comes from 'medannot annotate --format dicom-seg')")
    if session_id:
        raise HTTPException(422, "sessions are not offered; run inference on a case: image=<case id>")
    if not image:
        raise HTTPException(422, "send image=<case id> (from Next Sample or GET /datastore/?output=all)")
    c = ctx(request)
    t = await run_in_threadpool(_infer_target, c, user, project, model, image)
    try:
        form = await request.form(max_files=0, max_fields=16)
    except StarletteHTTPException as exc:
        raise HTTPException(422, "scribbles and uploaded images are not offered: send image=<case id> and the params "
                            f"field only ({exc.detail})") from None
    try:
        params = json_params(form.get("params"))
    finally:
        await form.close()
    stored = t["stored"]
    if stored is not None:
        data = await run_in_threadpool(c.blobs.get, stored["sha"])
        result = {"model": stored["model"], "model_version": stored["model_version"], "version_id": stored["version_id"],
                  "source": "stored proposal"}
    else:
        gate = _infer_gate(request)
        if gate.statistics().tasks_waiting >= INFER_WAITING:
            raise HTTPException(429, "the server is busy running its model for other clients; try again in a minute",
                                headers={"Retry-After": "30"})
        image_bytes = await run_in_threadpool(c.blobs.get, t["image"])
        try:
            data, result = await anyio.to_thread.run_sync(service.run_model, t["model"], t["value_map"], image_bytes, t["case"],
                                                          limiter=gate)
        except MedannotError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model that trips on one case must not look like a server crash
            log.exception("monailabel infer: case %s with %s", t["case"], t["proposing"])
            raise HTTPException(500, f"the model failed on image {t['case']} ({type(exc).__name__}: "
                                f"{public_message(exc, 120)}); see the server log") from None
        result["source"] = "model run"
    await run_in_threadpool(_infer_audit, c, user, t, result["source"])
    result.update({"label_names": t["labels"], "image": service.image_id(t["case"]), "client_id": client_id(params),
                   "proposing": t["proposing"], "model_version_id": t["model_version_id"]})
    filename = f"case-{t['case']}-{t['key']}.nii.gz"
    if output == "json":
        return JSONResponse(result)
    if output == "image":
        return Response(data, media_type="application/gzip",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return _multipart(result, filename, data)


# --------------------------------------------------------------------------- active learning


def _next(c: AppContext, user: User, project: str, strategy: SampleStrategy, cid: str) -> dict[str, Any]:
    with c.db.write() as s:
        p, _ = access(s, user, project, Action.EDIT)
        found = service.open_next_case(s, p, user, strategy, cid)
        if found is None:
            return {}
        case, score = found
        order = learning.learning_settings(p).strategy.value if strategy is SampleStrategy.PROJECT else strategy.value
        info = service.image_info(case)
    return {"id": service.image_id(case.id), "weight": 1, **info,
            "strategy": {strategy.value: {"ts": info["ts"], "client_id": cid, "order": order, "score": score}}}


@router.post("/activelearning/{strategy}")
async def next_sample(project: ProjectRef, strategy: str, request: Request, user: User = Depends(caller)) -> dict:
    """The next pending case in the strategy's order, opened for the caller (``in_review``); ``{}`` when none is pending.

    Strategies: ``project`` (the project's active-learning order, as the review page's Next case), ``first`` (the
    case list order), and the learning loop's ``random``, ``uncertainty``, ``diversity`` and ``mix`` by name. The
    answer is MONAI Label's: ``id`` (the case id), ``name`` (a file name ending in ``.nii.gz``), ``checksum``
    (``SHA256:...`` of the download) and more; ``strategy.<name>`` adds the order followed and the case's score.
    """
    chosen = SampleStrategy.parse(strategy)
    body = await request.body()
    params = json_params(body, "the request body")
    return await run_in_threadpool(_next, ctx(request), user, project, chosen, client_id(params))


# --------------------------------------------------------------------------- training and sessions


def _require(request: Request, user: User, project: str, action: Action) -> None:
    with ctx(request).db.read() as s:
        access(s, user, project, action)


@router.get("/train/")
def train_status(project: ProjectRef, request: Request, all: bool = False, check_if_running: bool = False,  # noqa: A002 - MONAI Label's name
                 user: User = Depends(caller)) -> Any:
    """The project's training round as MONAI Label's task (``status`` SUBMITTED, RUNNING, DONE or ERROR).

    ``check_if_running``: the round queued or running, else 404; ``all``: every round, newest first; neither: the
    latest round, else 404 (as MONAI Label answers when none was started).
    """
    with ctx(request).db.read() as s:
        p, _ = access(s, user, project, Action.READ)
        jobs = service.training_jobs(s, p, running_only=check_if_running)
        key = service.project_model_key(p)
        if not jobs:
            raise HTTPException(404, "No Train Tasks are currently Running" if check_if_running else "No Train Tasks Found")
        if all and not check_if_running:
            return [service.train_task(j, key) for j in jobs]
        return service.train_task(jobs[0], key)


def _queue_training(request: Request, user: User, project: str, model: str | None) -> dict[str, Any]:
    with ctx(request).db.write() as s:
        p, _ = access(s, user, project, Action.MANAGE)
        key = service.project_model_key(p)
        if model is not None and model != key:
            raise HTTPException(404, f"trainer {model[:60]!r} not found; project {p.name!r} offers: {key}")
        running = service.training_jobs(s, p, running_only=True)
        if running:
            raise HTTPException(429, f"Train Task is Already Running: project {p.name!r} has a training job "
                                f"{running[0].state} (job {running[0].id}); wait for it to finish")
        job = learning.queue_training(s, p, user, f"user {user.username} (MONAI Label)")
        return {"key": key, "task": service.train_task(job, key)}


@router.post("/train/", include_in_schema=False)
def train_all(project: ProjectRef, request: Request, user: User = Depends(caller)) -> dict:
    """Queue a training round of the project's one trainer (MONAI Label's deprecated run-all form: ``{name: {result}}``)."""
    queued = _queue_training(request, user, project, None)
    return {queued["key"]: {"result": queued["task"], "detail": None}}


@router.post("/train/{model}", responses={429: {"model": Detail, "description": "A training round is already queued or running."}})
def train(project: ProjectRef, model: str, request: Request, user: User = Depends(caller)) -> dict:
    """Queue a training round on the project's accepted cases, as ``POST /api/projects/{pid}/train`` does (project admins).

    A worker trains it from the active version, gates it on the project's validation cases and activates it when
    it passes. Answers MONAI Label's task (``id`` = the job id, ``status`` ``SUBMITTED``); 429 while a round is
    queued or running; 422 when the project has too few accepted cases; 404 for another trainer name. The round's
    settings are the project's (``medannot projects settings``): params a client sends are not read.
    """
    return _queue_training(request, user, project, model)["task"]


@router.delete("/train/", include_in_schema=False)
def stop_training(project: ProjectRef, request: Request, user: User = Depends(caller)) -> dict:
    """501 (left out of the OpenAPI schema): a round is not stopped from a client; it ends within the project's time budget."""
    _require(request, user, project, Action.MANAGE)
    raise HTTPException(501, service.TRAINING_UNSTOPPABLE)


@router.put("/session/", include_in_schema=False)
@router.get("/session/{session_id}", include_in_schema=False)
@router.delete("/session/{session_id}", include_in_schema=False)
def session(project: ProjectRef, request: Request, user: User = Depends(caller)) -> dict:
    """406 as MONAI Label answers without sessions (left out of the OpenAPI schema): medannot labels the project's cases."""
    _require(request, user, project, Action.READ)
    raise HTTPException(406, "Session Feature is Not Enabled: medannot labels the project's own cases; fetch one with "
                        "Next Sample (POST /activelearning/first)")
