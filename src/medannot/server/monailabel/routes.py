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
from typing import Any

import anyio
from fastapi import Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from medannot.errors import MedannotError
from medannot.server import learning, store
from medannot.server.deps import AppContext, Detail, ctx
from medannot.server.middleware import LOGIN_BODY_LIMIT, public_message
from medannot.server.models import User
from medannot.server.monailabel import datastore, service
from medannot.server.monailabel.access import (
    ProjectRef,
    access,
    caller,
    case_in,
    client_id,
    json_params,
    new_router,
)
from medannot.server.monailabel.service import SampleStrategy
from medannot.server.routes.auth import LOCKED, LoginBody, login
from medannot.server.security import Action

log = logging.getLogger("medannot.server")

INFER_SLOTS = 1
"""Model runs of ``/infer`` at once per server (each may use every core); more callers wait without holding a thread."""
INFER_WAITING = 4
"""Callers that may wait for an ``/infer`` slot; one more gets 429 with Retry-After."""
router = new_router()
router.include_router(datastore.router)
BUSY: dict[int | str, dict[str, Any]] = {429: {"model": Detail, "description": "Too many callers wait for the model (Retry-After)."}}
INFER_ANSWER: dict[int | str, dict[str, Any]] = {**BUSY, 200: {
    "description": "The label NIfTI and its params: multipart (default, ``all``), the file (``image``) or the params (``json``).",
    "content": {"multipart/form-data": {"schema": {"type": "string", "format": "binary"}},
                "application/gzip": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}}}}}


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
