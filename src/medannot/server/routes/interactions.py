"""The Smart tool's API: clicks and boxes on a case -> the mask of one object (:mod:`medannot.server.interactive`).

``POST /api/cases/{cid}/interactions`` adds a point (positive or negative) or a box to a session (a new one when
``session`` is left out), recomputes the session's object with the project's engine (the setting ``auto``, the
default, is the engine ``medannot segment`` uses for a case of that dimensionality) and answers its mask: a
gzipped uint8 NIfTI on the case image's grid (1 = object), with ``X-Session``, ``X-Interaction``, ``X-Voxels`` and
``X-Seconds`` headers. ``POST .../interactions/undo`` marks the session's last interaction undone and answers the
mask without it (all zeros when none is left). Every interaction is recorded, undone or not, so a case's correction
effort counts clicks and boxes (:func:`medannot.server.store.interaction_counts`). Bad prompts get 422 with one
line and nothing is recorded; an accepted or rejected case gets 409 (reopen it first).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medannot.data import Image, ImageKind
from medannot.server import learning
from medannot.server.deps import ERRORS, GZIP_DOWNLOAD, ID_MAX, CaseId, case_access, ctx, current_user
from medannot.server.imaging import case_geometry, to_nifti_bytes
from medannot.server.interactive import InteractiveService
from medannot.server.models import CaseRecord, Interaction, User
from medannot.server.routes.cases import locked
from medannot.server.security import Action
from medannot.workflows.learning.engines import resolve_engine_name

router = APIRouter(prefix="/api", tags=["interactions"], responses=ERRORS)
MAX_MM = 1e6
"""Largest coordinate accepted (mm): beyond any scanner's field of view, and far from float overflow in index maths."""
Coord = Annotated[list[Annotated[float, Field(ge=-MAX_MM, le=MAX_MM)]], Field(min_length=2, max_length=3)]
_SERVICE_LOCK = threading.Lock()


def _finite(values: list[float]) -> list[float]:
    if not all(math.isfinite(v) for v in values):
        raise ValueError("coordinates must be finite numbers")
    return values


class InteractionBody(BaseModel):
    """One click or box, in world millimetres (RAS: the coordinates the review page shows)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    session: int | None = Field(None, ge=1, le=ID_MAX, description="Session to add to; left out: a new session (object).")
    kind: Literal["point", "box"]
    positive: bool = Field(True, description="Point: inside the object (true) or not (false). Boxes are positive.")
    point: Coord | None = Field(None, description="Point: [x, y, z] mm.")
    box: Annotated[list[Coord], Field(min_length=2, max_length=2)] | None = Field(None, description="Box: two opposite corners.")
    label: int = Field(ge=1, le=255, description="The label the object will get (kept with the interaction).")

    _p = field_validator("point")(lambda v: None if v is None else _finite(v))

    @field_validator("box")
    @classmethod
    def _box(cls, v: list[list[float]] | None) -> list[list[float]] | None:
        return None if v is None else [_finite(c) for c in v]


class UndoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session: int = Field(ge=1, le=ID_MAX)


def service(request: Request) -> InteractiveService:
    """The app's :class:`InteractiveService` (made on first use)."""
    state = request.app.state
    with _SERVICE_LOCK:
        if getattr(state, "interactive", None) is None:
            state.interactive = InteractiveService(ctx(request).blobs)
    return state.interactive


@dataclass(frozen=True)
class _Step:
    """An interaction as prompts need it (plain values: usable after its session closed)."""

    kind: str
    positive: bool
    coords: list


def _session_rows(s: Session, cid: int, session: int) -> list[Interaction]:
    return list(s.scalars(select(Interaction).where(Interaction.case_id == cid, Interaction.session == session,
                                                    Interaction.undone.is_(False)).order_by(Interaction.seq)))


def _steps(rows: list[Interaction]) -> list[_Step]:
    return [_Step(r.kind, bool(r.positive), list(r.coords)) for r in rows]


def _mask_response(case: dict, mask: object, headers: dict[str, str]) -> Response:
    import numpy as np

    arr = np.asarray(mask, np.uint8).reshape(case["shape"])
    data = to_nifti_bytes(Image(arr[None], case_geometry(case["affine"]), ImageKind.LABEL))
    return Response(data, media_type="application/gzip", headers={"X-Content-Type-Options": "nosniff", **headers})


def _case_info(c: object, user: User, cid: int) -> tuple[dict, object]:
    with c.db.read() as s:  # type: ignore[attr-defined]
        case, project, _ = case_access(s, user, cid, Action.EDIT)
        if case.status in ("accepted", "rejected"):
            return {}, locked(case, "the Smart tool can change it")
        info = {"id": case.id, "sha": case.image_sha256, "dims": case.spatial_dims, "shape": list(case.shape),
                "affine": case.affine, "labels": {int(lab["value"]) for lab in project.labels},
                "engine": resolve_engine_name(learning.learning_settings(project).engine, case.spatial_dims)}
    return info, None


@router.post("/cases/{cid}/interactions", responses=GZIP_DOWNLOAD)
def add_interaction(cid: CaseId, body: InteractionBody, request: Request, user: User = Depends(current_user)) -> Response:
    """Add a click or a box to a session and answer the session's object mask (see the module docstring)."""
    c = ctx(request)
    if body.kind == "point" and body.point is None or body.kind == "box" and body.box is None:
        raise HTTPException(422, f"a {body.kind} needs '{body.kind}' coordinates in mm")
    info, refused = _case_info(c, user, cid)
    if refused is not None:
        return refused  # type: ignore[return-value]
    if body.label not in info["labels"]:
        raise HTTPException(422, f"label {body.label} is not in the project's label map {sorted(info['labels'])}")
    coords = body.point if body.kind == "point" else body.box
    with c.db.read() as s:
        session = body.session or int(s.scalar(select(func.coalesce(func.max(Interaction.session), 0))
                                               .where(Interaction.case_id == cid)) or 0) + 1
        steps = _steps(_session_rows(s, cid, session))
    new = Interaction(case_id=cid, user_id=user.id, session=session, kind=body.kind, positive=body.positive if body.kind == "point"
                      else True, coords=coords, label=body.label, engine=info["engine"][:500])
    mask, seconds = service(request).segment(info["engine"], info["sha"], info["dims"], [*steps, _Step(new.kind, new.positive, list(coords or []))])
    new.voxels, new.seconds = int(mask.sum()), round(seconds, 4)
    for _ in range(5):
        try:
            with c.db.write() as s:
                case = s.get(CaseRecord, cid)
                if case is None or case.status in ("accepted", "rejected"):
                    raise HTTPException(409, f"case {cid} was accepted, rejected or deleted meanwhile; reload it")
                new.seq = int(s.scalar(select(func.coalesce(func.max(Interaction.seq), 0)).where(
                    Interaction.case_id == cid, Interaction.session == session)) or 0) + 1
                s.add(new)
                s.flush()
                interaction_id, seq = new.id, new.seq
            break
        except IntegrityError:  # two interactions of one session at once: take the next place
            new = Interaction(**{k: getattr(new, k) for k in ("case_id", "user_id", "session", "kind", "positive", "coords",
                                                               "label", "engine", "voxels", "seconds")})
    else:
        raise HTTPException(409, f"session {session} of case {cid} kept changing; try again")
    return _mask_response(info, mask, {"X-Session": str(session), "X-Interaction": str(interaction_id), "X-Seq": str(seq),
                                       "X-Voxels": str(new.voxels), "X-Seconds": f"{seconds:.4f}", "X-Engine": info["engine"][:100]})


@router.post("/cases/{cid}/interactions/undo", responses=GZIP_DOWNLOAD)
def undo_interaction(cid: CaseId, body: UndoBody, request: Request, user: User = Depends(current_user)) -> Response:
    """Undo the session's last interaction (it stays recorded, marked undone); answers the mask without it."""
    c = ctx(request)
    info, refused = _case_info(c, user, cid)
    if refused is not None:
        return refused  # type: ignore[return-value]
    with c.db.write() as s:
        rows = _session_rows(s, cid, body.session)
        if not rows:
            raise HTTPException(404, f"session {body.session} of case {cid} has nothing to undo")
        rows[-1].undone = True
        left = _steps(rows[:-1])
    import numpy as np

    if left:
        mask, seconds = service(request).segment(info["engine"], info["sha"], info["dims"], left)
    else:
        mask, seconds = np.zeros(info["shape"], bool), 0.0
    return _mask_response(info, mask, {"X-Session": str(body.session), "X-Remaining": str(len(left)),
                                       "X-Voxels": str(int(mask.sum())), "X-Seconds": f"{seconds:.4f}"})


@router.get("/cases/{cid}/interactions")
def list_interactions(cid: CaseId, request: Request, user: User = Depends(current_user)) -> JSONResponse:
    """Every interaction on the case (oldest first) and their counts."""
    from medannot.server import store

    with ctx(request).db.read() as s:
        case_access(s, user, cid, Action.READ)
        rows = list(s.scalars(select(Interaction).where(Interaction.case_id == cid).order_by(Interaction.id)))
        return JSONResponse({"counts": store.interaction_counts(s, cid), "interactions": [
            {"id": r.id, "session": r.session, "seq": r.seq, "kind": r.kind, "positive": r.positive, "coords": r.coords,
             "label": r.label, "engine": r.engine, "undone": r.undone, "voxels": r.voxels, "seconds": r.seconds,
             "created": r.created.isoformat()} for r in rows]})
