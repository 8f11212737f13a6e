"""The MONAI Label side of a medannot project: ids, tags, label maps, datastore listings, the next case, the model run.

Functions here take an open SQLAlchemy session (the caller's ``read()`` or ``write()`` block) and never speak HTTP;
:mod:`medannot.server.monailabel.routes` checks access and turns their results into MONAI Label's JSON and files.

Roles: MONAI Label names four roles (``monailabel-admin``, ``-reviewer``, ``-annotator``, ``-user``); a member's
medannot role in the project gives these (:data:`ML_ROLES`), a site admin has all four, a non-member none. What a
call needs is medannot's own rule (:mod:`medannot.server.security`): reading needs ``read``, running the model and
saving labels ``edit``, training ``manage`` (project admins).

The learning loop (:mod:`medannot.server.learning`) is the one place that decides what a project proposes with (its
active version, else its base model), how training rounds are queued, and the order of its unreviewed cases; the
MONAI Label paths ask it, so Slicer and the review page see the same model, the same training jobs and the same order.
"""

from __future__ import annotations

import enum
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session

from medannot import __version__
from medannot.data import Image, ImageKind
from medannot.errors import InputError
from medannot.server import learning, store
from medannot.server.imaging import case_geometry, read_nifti_bytes, to_nifti_bytes
from medannot.server.models import AnnotationVersion, CaseRecord, Draft, Job, Project, User, utcnow
from medannot.server.security import Role
from medannot.workflows.learning.settings import Strategy

ML_ADMIN, ML_REVIEWER, ML_ANNOTATOR, ML_USER = "monailabel-admin", "monailabel-reviewer", "monailabel-annotator", "monailabel-user"
ML_ROLES: dict[Role, list[str]] = {
    Role.ADMIN: [ML_ADMIN, ML_REVIEWER, ML_ANNOTATOR, ML_USER],
    Role.REVIEWER: [ML_REVIEWER, ML_USER],
    Role.ANNOTATOR: [ML_ANNOTATOR, ML_USER],
}
"""MONAI Label roles of each medannot project role (what ``/auth/token/valid`` reports)."""
HUMAN_KINDS = ("edit", "accepted", "reopened")
"""Version kinds made by a person: the ``final`` label of a case is its latest version of one of these kinds."""
TASK_STATUS = {"queued": "SUBMITTED", "running": "RUNNING", "done": "DONE", "failed": "ERROR"}
"""MONAI Label's task status of each training job state."""
TRAINING_UNSTOPPABLE = ("a training round cannot be stopped from a MONAI Label client: it ends by itself within the "
                        "project's time budget (recipe.time_budget_s, 'medannot projects settings'); a version that "
                        "does not pass the gate never proposes")
"""The 501 answer of ``DELETE /train/``."""


class Tag(enum.StrEnum):
    """MONAI Label label tags and the version of a case each one names."""

    ORIGINAL = "original"
    FINAL = "final"

    @classmethod
    def parse(cls, value: str | None) -> Tag:
        """Convert once (empty: ``final``, MONAI Label's default); a typo lists the valid names.

        Raises:
            InputError: An unknown tag.
        """
        if not value:
            return cls.FINAL
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise InputError(f"unknown label tag {value[:40]!r}; medannot keeps versions, not tags: use one of "
                             f"{', '.join(t.value for t in cls)}") from None


class SampleStrategy(enum.StrEnum):
    """Orders in which ``/activelearning/{strategy}`` offers the project's pending cases.

    ``project``: the project's active-learning order (its ``strategy`` setting, as the review page's Next case);
    ``first``: the case list order (oldest case first, as ``GET /api/projects/{pid}/cases`` lists them);
    ``random``, ``uncertainty``, ``diversity``, ``mix``: that learning-loop strategy, whatever the project's setting
    (:mod:`medannot.workflows.learning.strategies`). ``project`` is listed first, so Slicer offers it by default.
    """

    PROJECT = "project"
    FIRST = "first"
    RANDOM = "random"
    UNCERTAINTY = "uncertainty"
    DIVERSITY = "diversity"
    MIX = "mix"

    @classmethod
    def parse(cls, value: str) -> SampleStrategy:
        """Convert once; a typo lists the valid names.

        Raises:
            InputError: An unknown strategy.
        """
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise InputError(f"unknown strategy {value[:40]!r}; this project offers: "
                             f"{', '.join(s.value for s in cls)}") from None


STRATEGY_TEXT = {SampleStrategy.PROJECT: "The project's active-learning order (its strategy setting; the review page's Next case)",
                 SampleStrategy.FIRST: "The oldest pending case first (the project's case list order)",
                 SampleStrategy.RANDOM: "The next pending case in the project's fixed random order",
                 SampleStrategy.UNCERTAINTY: "The pending case whose proposal is most uncertain (mean softmax entropy)",
                 SampleStrategy.DIVERSITY: "The pending case farthest from the reviewed ones (retrieval embedding)",
                 SampleStrategy.MIX: "The mean of the uncertainty and diversity ranks"}


# --------------------------------------------------------------------------- projects, roles, names


def find_project(session: Session, user: User, ref: str) -> tuple[Project, str] | None:
    """The project a MONAI Label base URL names (its name, else its id) and the caller's role.

    None when there is no such project or the caller is neither a member nor a site admin (the two are not told
    apart, so a project's existence is not revealed).
    """
    project = session.scalar(select(Project).where(Project.name == ref))
    if project is None and ref.isdigit() and len(ref) <= 10:
        project = session.get(Project, int(ref))
    if project is None:
        return None
    role = store.role_in(session, user, project.id)
    if role is None and not user.is_admin:
        return None
    return project, role or Role.ADMIN.value


def monailabel_roles(role: str | None) -> list[str]:
    """MONAI Label role names of a medannot project role (None: not a member, no roles)."""
    return [] if role is None else list(ML_ROLES[Role.parse(role)])


def model_key(model: str) -> str:
    """The name MONAI Label clients see for a project's model: a bundled name or method as is, a folder by its last part.

    A server path is never shown to a client.
    """
    name = PurePath(model.replace("\\", "/")).name or model
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:100] or "model"


def project_model_key(project: Project) -> str:
    """The one model name a project offers to MONAI Label clients (``/infer/{model}``, ``/train/{model}``).

    Its base model's name, else (a project that starts from nothing) the project's name. It stays the same while
    trained versions come and go: which version proposes is told in ``/info/`` and in every inference's params.
    """
    return model_key(project.model or project.name)


def label_names(project: Project) -> dict[str, int]:
    """The project's label map as MONAI Label writes it: name -> value (background left out)."""
    return {str(lab["name"]): int(lab["value"]) for lab in project.labels}


def image_id(case_id: int) -> str:
    """The MONAI Label image id of a case."""
    return str(case_id)


def case_of(session: Session, project: Project, raw_id: str | None) -> CaseRecord | None:
    """The case of ``project`` a MONAI Label image (or label) id names, or None."""
    raw = (raw_id or "").strip()
    if not raw.isdigit() or len(raw) > 10 or not 1 <= int(raw) <= 2**31 - 1:
        return None
    case = session.get(CaseRecord, int(raw))
    return case if case is not None and case.project_id == project.id else None


def image_name(case: CaseRecord) -> str:
    """The file name a client saves a case image under (``case-12-brain.nii.gz``); Slicer reads the type from it."""
    stem = PurePath(case.name.replace("\\", "/")).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".mgz", ".dcm", ".zip", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80]
    return f"case-{case.id}-{safe}.nii.gz" if safe else f"case-{case.id}.nii.gz"


def checksum(sha256: str) -> str:
    """A stored file's checksum as MONAI Label and Slicer write it (the blob is named by the SHA-256 of its bytes)."""
    return f"SHA256:{sha256}"


def image_info(case: CaseRecord) -> dict[str, Any]:
    """MONAI Label's image info of a case (no server path)."""
    return {"name": image_name(case), "checksum": checksum(case.image_sha256), "ts": int(case.created.timestamp()),
            "case_id": case.id, "case_name": case.name, "status": case.status, "spatial_dims": case.spatial_dims,
            "shape": list(case.shape), "locked": store.is_locked(case)}


# --------------------------------------------------------------------------- labels (versions)


def label_version(session: Session, case_id: int, tag: Tag) -> AnnotationVersion | None:
    """The version a tag names: ``original`` the latest, ``final`` the latest made by a person; None when there is none."""
    query = select(AnnotationVersion).where(AnnotationVersion.case_id == case_id)
    if tag is Tag.FINAL:
        query = query.where(AnnotationVersion.kind.in_(HUMAN_KINDS))
    return session.scalar(query.order_by(AnnotationVersion.number.desc()).limit(1))


def label_info(version: AnnotationVersion, names: dict[int, str]) -> dict[str, Any]:
    """MONAI Label's label info of a version."""
    author = names.get(version.author_id) if version.author_id else None
    return {"name": f"case-{version.case_id}-v{version.number}.nii.gz", "ts": int(version.created.timestamp()),
            "checksum": checksum(version.mask_sha256), "version_id": version.id, "number": version.number,
            "kind": version.kind, "author": author or (f"model {version.model_name}" if version.model_name else None),
            "model": version.model_name, "model_version": version.model_version}


def _tag_versions(session: Session, project_id: int, tag: Tag) -> dict[int, AnnotationVersion]:
    """Case id -> the version ``tag`` names, for every case of a project (two queries, not one per case)."""
    top = (select(AnnotationVersion.case_id, func.max(AnnotationVersion.number).label("n"))
           .join(CaseRecord, CaseRecord.id == AnnotationVersion.case_id).where(CaseRecord.project_id == project_id))
    if tag is Tag.FINAL:
        top = top.where(AnnotationVersion.kind.in_(HUMAN_KINDS))
    sub = top.group_by(AnnotationVersion.case_id).subquery()
    rows = session.scalars(select(AnnotationVersion).join(sub, and_(AnnotationVersion.case_id == sub.c.case_id,
                                                                     AnnotationVersion.number == sub.c.n)))
    return {v.case_id: v for v in rows}


def datastore_status(session: Session, project: Project) -> dict[str, Any]:
    """``GET /datastore/``: cases in all, cases with a ``final`` label, and how many cases carry each tag."""
    total = session.scalar(select(func.count()).select_from(CaseRecord).where(CaseRecord.project_id == project.id)) or 0
    tags = {tag.value: len(_tag_versions(session, project.id, tag)) for tag in Tag}
    return {"total": int(total), "completed": tags[Tag.FINAL.value], "label_tags": {k: v for k, v in tags.items() if v}}


def datastore_json(session: Session, project: Project) -> dict[str, Any]:
    """``GET /datastore/?output=all``: every case with its image info and its tagged labels."""
    cases = list(session.scalars(select(CaseRecord).where(CaseRecord.project_id == project.id).order_by(CaseRecord.id)))
    tagged = {tag: _tag_versions(session, project.id, tag) for tag in Tag}
    authors = {v.author_id for versions in tagged.values() for v in versions.values() if v.author_id}
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(authors))).all()) if authors else {}
    objects = {}
    for case in cases:
        labels = {tag.value: {"ext": ".nii.gz", "info": label_info(tagged[tag][case.id], names)}
                  for tag in Tag if case.id in tagged[tag]}
        objects[image_id(case.id)] = {"image": {"ext": ".nii.gz", "info": image_info(case)}, "labels": labels}
    return {"name": project.name, "description": f"medannot project {project.name}", "images_dir": "", "labels_dir": "",
            "objects": objects}


def datalist(session: Session, project: Project) -> list[dict[str, str]]:
    """``GET /datastore/?output=train``: ``{"image", "label"}`` ids of the cases with a ``final`` label (no server paths)."""
    finals = _tag_versions(session, project.id, Tag.FINAL)
    return [{"image": image_id(cid), "label": image_id(cid)} for cid in sorted(finals)]


# --------------------------------------------------------------------------- info


def info_json(session: Session, project: Project, role: str, who: learning.Proposing | None) -> dict[str, Any]:
    """``GET /info/``: the project as a MONAI Label app (one segmentation model, its trainer, its labels, the strategies).

    ``who`` is what proposes now (:func:`medannot.server.learning.proposing`): the model is listed when there is
    one (a project that starts from nothing lists none until a version is active); the trainer (the learning loop's
    training round) is always listed. No top-level ``config`` key: Slicer reads one as a server too old for it.
    """
    labels = label_names(project)
    key = project_model_key(project)
    dims = session.scalar(select(CaseRecord.spatial_dims).where(CaseRecord.project_id == project.id)
                          .order_by(CaseRecord.id).limit(1))
    models = {key: {
        "type": "segmentation", "labels": labels, "dimension": int(dims or 3), "config": {},
        "description": f"The model of medannot project {project.name} (proposing: {model_key(who.label)})"}} if who else {}
    trainers = {key: {"description": f"A training round of medannot project {project.name} on its accepted cases "
                      "(fine-tunes the active version; gated before it proposes)", "config": {}}}
    return {
        "name": project.name, "description": f"medannot project {project.name} (medannot {__version__})",
        "version": __version__, "labels": labels, "models": models, "trainers": trainers,
        "strategies": {s.value: {"description": STRATEGY_TEXT[s]} for s in SampleStrategy}, "scoring": {},
        "train_stats": {}, "datastore": datastore_status(session, project),
        "medannot": {"project_id": project.id, "role": role, "roles": monailabel_roles(role),
                     "proposing": model_key(who.label) if who else None,
                     "active_version": who.version.number if who and who.version else None},
    }


# --------------------------------------------------------------------------- next sample


def rank_cases(session: Session, project: Project, strategy: SampleStrategy) -> list[tuple[int, float | None]]:
    """The pending cases in the order ``strategy`` offers them, with their scores: the one place that decides
    MONAI Label's order.

    ``first`` keeps the case list order (no score); every other strategy is the learning loop's own order
    (:func:`medannot.server.learning.case_order`: the stored uncertainty scores and embeddings, seeded by the project
    id), ``project`` with the project's strategy setting, so Slicer and the review page's Next case agree.
    """
    if strategy is SampleStrategy.FIRST:
        return [(int(cid), None) for cid in session.scalars(select(CaseRecord.id).where(
            CaseRecord.project_id == project.id, CaseRecord.status == "pending").order_by(CaseRecord.id))]
    order = learning.case_order(session, project, None if strategy is SampleStrategy.PROJECT else Strategy(strategy.value))
    return [(case.id, score) for case, score in order if case.status == "pending"]


def open_next_case(session: Session, project: Project, user: User, strategy: SampleStrategy,
                   client_id: str | None = None) -> tuple[CaseRecord, float | None] | None:
    """Take the next ``pending`` case in ``strategy``'s order and open it (``in_review``), in the caller's write block.

    A case another client opened at the same moment is skipped (the status changes only where it is still
    ``pending``), so two clients asking together get two different cases. Returns the case and its score in that
    order (None for ``first``, or a case the strategy has no score for); None when no case is pending.
    """
    for cid, score in rank_cases(session, project, strategy):
        result = session.execute(update(CaseRecord).where(CaseRecord.id == cid, CaseRecord.status == "pending")
                                 .values(status="in_review", updated=utcnow()).execution_options(synchronize_session=False))
        if int(getattr(result, "rowcount", 0) or 0) == 1:
            session.expire_all()
            store.audit(session, user, "open", project.id, cid,
                        {"via": "monailabel", "strategy": strategy.value, "client_id": (client_id or "")[:64]})
            case = session.get(CaseRecord, cid)
            return None if case is None else (case, score)
    return None


# --------------------------------------------------------------------------- inference


def stored_proposal(session: Session, case: CaseRecord, who: learning.Proposing) -> AnnotationVersion | None:
    """The case's latest proposal made by a job of the model that proposes now (``who``), or None.

    With an active version: a proposal of that version; with the base model: a proposal of a job of that model
    made by no version.
    """
    query = select(AnnotationVersion).where(AnnotationVersion.case_id == case.id, AnnotationVersion.kind == "proposal")
    if who.version is not None:
        query = query.where(AnnotationVersion.model_version_id == who.version.id)
    else:
        query = (query.join(Job, Job.id == AnnotationVersion.job_id)
                 .where(Job.model == who.model, AnnotationVersion.model_version_id.is_(None)))
    return session.scalar(query.order_by(AnnotationVersion.number.desc()).limit(1))


class _Annotators:
    """The proposers of the models inference ran (at most ``size``, least recently used dropped), one run at a time each.

    A proposer is the annotation worker's (:class:`medannot.workflows.learning.proposer.Proposer`): a trained
    version's outputs are mapped to the project's label values as the worker maps them.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, tuple[int, ...] | None], tuple[Any, threading.Lock]] = OrderedDict()

    def get(self, model: str, value_map: Sequence[int] | None = None) -> tuple[Any, threading.Lock]:
        from medannot.workflows.learning.proposer import Proposer

        key = (model, None if value_map is None else tuple(int(v) for v in value_map))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        made = (Proposer(model, value_map=value_map), threading.Lock())  # slow (loads a bundle): outside the lock
        with self._lock:
            item = self._items.setdefault(key, made)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return item


ANNOTATORS = _Annotators()


def run_model(model: str, value_map: Sequence[int] | None, image_bytes: bytes, case_id: int) -> tuple[bytes, dict[str, Any]]:
    """Run the model that proposes on a stored case image, as the annotation worker does (the worker's proposer).

    Args:
        model: What proposes (:attr:`medannot.server.learning.Proposing.model`: a trained version's bundle folder,
            a bundled name, a bundle folder or a classical method).
        value_map: The project's label values of a version's outputs 1..K (None: the outputs are the values).
        image_bytes: The stored case image (gzipped NIfTI; a picture is a one-slice volume).
        case_id: Recorded in the provenance.

    Returns:
        The uint8 label NIfTI (gzipped, on the case grid) and ``{"model", "model_version"}``.

    Raises:
        ModelError: An unusable model, a model of the wrong dimensionality, or outputs that do not fit the labels.
    """
    proposer, lock = ANNOTATORS.get(model, value_map)
    image = read_nifti_bytes(image_bytes, what="case image")
    with lock:
        proposal = proposer.propose(image, {"case_id": case_id})
    labels = np.asarray(proposal.labels, np.uint8).reshape(image.spatial_shape)
    provenance = proposal.provenance
    mask = Image(labels[None], image.geometry, ImageKind.LABEL)
    return to_nifti_bytes(mask), {"model": provenance.get("name"), "model_version": provenance.get("version") or None}


# --------------------------------------------------------------------------- training


def train_task(job: Job, key: str) -> dict[str, Any]:
    """A training job as MONAI Label's task (``id``, ``status``, ``request``, ``start_ts``, ``end_ts``, ``details``).

    ``medannot`` holds the job as the review server's API shows it (state, progress, message, version number).
    """
    detail = job.detail or {}
    stamp = "%Y-%m-%d %H:%M:%S"
    return {"id": str(job.id), "name": "train", "status": TASK_STATUS.get(job.state, job.state.upper()),
            "request": {"model": key}, "start_ts": job.created.strftime(stamp),
            "end_ts": job.finished.strftime(stamp) if job.finished else None, "details": [job.message] if job.message else [],
            "medannot": {"job_id": job.id, "state": job.state, "progress": round(job.progress, 3), "message": job.message,
                         "version": f"v{detail['number']}" if detail.get("number") else None,
                         "trigger": detail.get("trigger"), "accepted": detail.get("accepted")}}


def training_jobs(session: Session, project: Project, running_only: bool) -> list[Job]:
    """The project's training jobs, newest first (``running_only``: the one queued or running, if any)."""
    query = select(Job).where(Job.project_id == project.id, Job.kind == "train")
    if running_only:
        query = query.where(Job.state.in_(learning.PENDING))
    return list(session.scalars(query.order_by(Job.id.desc()).limit(1 if running_only else 50)))


# --------------------------------------------------------------------------- saving labels


def label_lut(info: object, project: Project) -> dict[int, int] | None:
    """Uploaded value -> project value from a client's ``label_info`` (Slicer: ``[{"name", "idx"}]``), or None.

    Slicer numbers the segments it exports 1, 2, ... in its own order and names them in ``label_info``; each name
    must be one of the project's labels (matched exactly, then ignoring case). None (values kept as sent) without
    ``label_info`` or when it maps every value onto itself.

    Raises:
        InputError: ``label_info`` of the wrong shape, a name outside the project's label map, or an index out of 1-255.
    """
    if info is None or info == []:
        return None
    if not isinstance(info, list) or len(info) > 255 or not all(isinstance(i, dict) for i in info):
        raise InputError("params.label_info must be a list of {\"name\", \"idx\"}")
    by_name = label_names(project)
    folded = {k.casefold(): v for k, v in by_name.items()}
    lut: dict[int, int] = {}
    for item in info:
        name, idx = item.get("name"), item.get("idx")
        if not isinstance(name, str) or isinstance(idx, bool) or not isinstance(idx, int) or not 1 <= idx <= 255:
            raise InputError("params.label_info items need a name and an idx of 1-255")
        value = by_name.get(name, folded.get(name.casefold()))
        if value is None:
            raise InputError(f"segment {name[:60]!r} is not in project {project.name!r}'s label map "
                             f"({', '.join(by_name)}); rename or remove that segment and save again")
        lut[idx] = value
    return None if all(k == v for k, v in lut.items()) else lut


def remap(array: np.ndarray, lut: dict[int, int], affine: list) -> bytes:
    """The label array with its values mapped by ``lut`` (0 stays 0), as the stored uint8 NIfTI on the case grid."""
    table = np.zeros(256, dtype=np.uint8)
    for src, dst in lut.items():
        table[src] = dst
    out = table[np.asarray(array, dtype=np.uint8)]
    return to_nifti_bytes(Image(out[None], case_geometry(affine), ImageKind.LABEL))


def add_edit_version(session: Session, case: CaseRecord, user: User, mask_sha256: str, base: AnnotationVersion | None,
                     provenance: dict[str, Any]) -> AnnotationVersion:
    """A new ``edit`` version on top of ``base`` (the latest), as the review page's save makes one, in the caller's write block.

    The case goes to ``in_review``, the caller's review-page draft of the case is dropped (as a save there drops it)
    and the save is audited. Two saves at once: the unique ``(case_id, number)`` lets one win and the other's block
    raise ``IntegrityError``.
    """
    version = AnnotationVersion(case_id=case.id, number=(base.number if base else 0) + 1, kind="edit",
                                mask_sha256=mask_sha256, author_id=user.id, base_version_id=base.id if base else None,
                                provenance=provenance)
    session.add(version)
    session.flush()
    store.touch(case, "in_review")
    session.execute(delete(Draft).where(Draft.case_id == case.id, Draft.user_id == user.id))
    store.audit(session, user, "save_version", case.project_id, case.id,
                {"version_id": version.id, "number": version.number, "via": "monailabel"})
    return version
