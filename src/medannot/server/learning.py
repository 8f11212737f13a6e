"""The learning loop on the server: settings, the model that proposes, training jobs, versions, activation, order.

Functions take an open session (the caller's ``write()`` block commits) and follow
:mod:`medannot.workflows.learning` (settings, split, gate, strategies):

* A project proposes with its **active version** (a model trained from its accepted cases), else its **base model**
  (the bundle or classical method it was created with), else nothing (a project that starts from nothing: its
  cases get the Smart tool and an empty mask).
* Accepting a case fixes its side of the validation split once (:func:`medannot.workflows.learning.split.assign_side`)
  and, every ``retrain_every`` newly accepted cases, queues a training round by itself.
* A training job is queued with the accepted cases of that moment; a worker trains the version, gates it and stores
  it (:mod:`medannot.server.training_jobs`). One training job per project at a time.
* Activating a version (the gate, or a person rolling back or forward) retires the previous one and, when the
  project says so, queues new proposals for the cases nobody has edited yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medannot.errors import InputError
from medannot.server import store
from medannot.server.models import AnnotationVersion, CaseRecord, Job, ModelVersion, Project, User, utcnow
from medannot.workflows.learning.registry import VersionStatus
from medannot.workflows.learning.settings import LearningSettings, Strategy, parse_settings
from medannot.workflows.learning.split import Side, assign_side
from medannot.workflows.learning.strategies import Candidate, order_cases

__all__ = [
    "Proposing",
    "accepted_side",
    "activate",
    "case_order",
    "enqueue_annotation",
    "learning_settings",
    "on_accepted",
    "proposing",
    "queue_training",
    "repropose",
    "set_settings",
    "version_dir",
    "version_json",
]

MODELS_DIR = "models"
"""Folder of the trained versions inside the data folder: ``models/project-<id>/v<number>/`` (bundle folders)."""
PENDING = ("queued", "running")
HUMAN_KINDS = ("edit", "accepted", "reopened")


def learning_settings(project: Project) -> LearningSettings:
    """The project's learning settings (the defaults where it set none)."""
    return parse_settings(project.settings or {})


def set_settings(project: Project, updates: dict[str, Any]) -> LearningSettings:
    """Change some learning settings (nested sections merged); the Smart tool's engine must exist.

    Raises:
        ConfigError: An unknown setting, a value out of range, or an unknown engine.
    """
    from medannot.workflows.learning.engines import check_engine_name

    new = parse_settings(updates, learning_settings(project))
    check_engine_name(new.engine)
    project.settings = new.model_dump(mode="json")
    return new


def version_dir(data_dir: str | Path, project_id: int, number: int) -> Path:
    """The bundle folder of version ``number`` of a project."""
    return Path(data_dir) / MODELS_DIR / f"project-{project_id}" / f"v{number}"


@dataclass
class Proposing:
    """The model that proposes a project's masks now.

    Attributes:
        model: What to load: a version's bundle folder, a bundled model, a bundle folder, or a classical method.
        label: How it is shown (``brain-mri``, ``nuclei-project v3``).
        version: The active version, or None (the base model).
        value_map: The project's label values of the model's outputs 1..K (None: the outputs are the values).
    """

    model: str
    label: str
    version: ModelVersion | None
    value_map: list[int] | None


def proposing(s: Session, project: Project, data_dir: str | Path) -> Proposing | None:
    """The project's active version, else its base model, else None (see the module docstring)."""
    if project.active_version_id is not None:
        v = s.get(ModelVersion, project.active_version_id)
        if v is not None:
            return Proposing(str(Path(data_dir) / v.bundle_dir), f"{project.name} v{v.number}", v, [int(x) for x in v.label_values])
    if project.model:
        return Proposing(project.model, project.model, None, None)
    return None


def enqueue_annotation(s: Session, case: CaseRecord, project: Project, data_dir: str | Path) -> Job:
    """Queue an annotation job with the model that proposes now (a project without one: the job computes the
    case's embedding for the ``diversity`` order and proposes nothing)."""
    who = proposing(s, project, data_dir)
    detail = {"model_version_id": who.version.id if who and who.version else None}
    job = Job(project_id=case.project_id, case_id=case.id, kind="annotate", model=who.label if who else "",
              state="queued", progress=0.0, message="queued", detail=detail)
    s.add(job)
    s.flush()
    return job


# --------------------------------------------------------------------------- split and automatic rounds


def _count_sides(s: Session, project_id: int) -> tuple[int, int]:
    rows = dict(s.execute(select(CaseRecord.split, func.count(CaseRecord.id)).where(
        CaseRecord.project_id == project_id, CaseRecord.split.is_not(None)).group_by(CaseRecord.split)).all())
    return int(rows.get(Side.TRAIN.value, 0)), int(rows.get(Side.VAL.value, 0))


def accepted_side(s: Session, case: CaseRecord, project: Project) -> Side:
    """Fix the case's side of the validation split if it has none yet (see :mod:`medannot.workflows.learning.split`)."""
    if case.split is None:
        n_train, n_val = _count_sides(s, project.id)
        case.split = assign_side(n_train + n_val, n_val, learning_settings(project).val_fraction).value
    return Side(case.split)


def _pending_training(s: Session, project_id: int) -> Job | None:
    return s.scalar(select(Job).where(Job.project_id == project_id, Job.kind == "train", Job.state.in_(PENDING)).limit(1))


def _last_round_size(s: Session, project_id: int) -> int:
    job = s.scalar(select(Job).where(Job.project_id == project_id, Job.kind == "train").order_by(Job.id.desc()).limit(1))
    return int((job.detail or {}).get("accepted", 0)) if job is not None else 0


def on_accepted(s: Session, case: CaseRecord, project: Project) -> Job | None:
    """After a case is accepted: fix its side of the split; queue an automatic round when one is due.

    A round is due when ``retrain_every`` is set, that many cases were accepted since the last round was queued,
    no round is queued or running, and the project has enough cases to train. Returns the queued job, or None.
    """
    accepted_side(s, case, project)
    settings = learning_settings(project)
    if settings.retrain_every < 1 or _pending_training(s, project.id) is not None:
        return None
    cases = _accepted(s, project.id)
    if len(cases) - _last_round_size(s, project.id) < settings.retrain_every:
        return None
    try:
        return queue_training(s, project, None, f"auto after {settings.retrain_every} accepted cases")
    except InputError:
        return None  # not enough cases of each side yet: the next accepted case tries again


# --------------------------------------------------------------------------- training jobs


def _accepted(s: Session, project_id: int) -> list[CaseRecord]:
    """Cases of the project accepted now, with a side of the split, by id."""
    return list(s.scalars(select(CaseRecord).where(CaseRecord.project_id == project_id, CaseRecord.status == "accepted",
                                                   CaseRecord.split.is_not(None)).order_by(CaseRecord.id)))


def next_version_number(s: Session, project_id: int) -> int:
    """The number the next version gets: above every stored version and every number a training job reserved."""
    top = int(s.scalar(select(func.coalesce(func.max(ModelVersion.number), 0)).where(ModelVersion.project_id == project_id)) or 0)
    for detail in s.scalars(select(Job.detail).where(Job.project_id == project_id, Job.kind == "train")):
        top = max(top, int((detail or {}).get("number", 0)))
    return top + 1


def queue_training(s: Session, project: Project, user: User | None, trigger: str) -> Job:
    """Queue a training round on the cases accepted now (its version number is reserved here).

    Raises:
        InputError: A round is already queued or running, or too few accepted cases (naming how many of each side).
    """
    pending = _pending_training(s, project.id)
    if pending is not None:
        raise InputError(f"project {project.name!r} already has a training job ({pending.state}, job {pending.id}); "
                         "wait for it to finish")
    settings = learning_settings(project)
    cases = _accepted(s, project.id)
    val = [c.id for c in cases if c.split == Side.VAL.value]
    train = [c.id for c in cases if c.split == Side.TRAIN.value]
    if len(cases) < settings.min_cases or not val or not train:
        raise InputError(f"project {project.name!r} has {len(cases)} accepted case(s) ({len(train)} to train, {len(val)} to "
                         f"validate); a training round needs at least {settings.min_cases} with one of each: accept more cases")
    number = next_version_number(s, project.id)
    detail = {"number": number, "trigger": trigger[:200], "train": train, "val": val, "accepted": len(cases),
              "by": user.id if user is not None else None}
    job = Job(project_id=project.id, case_id=None, kind="train", model=f"{project.name} v{number}", state="queued",
              progress=0.0, message=f"queued: train v{number} on {len(train)} cases, validate on {len(val)}", detail=detail)
    s.add(job)
    s.flush()
    store.audit(s, user, "queue_training", project.id, detail={"job_id": job.id, "number": number, "trigger": trigger[:200]},
                actor=None if user else "auto")
    return job


# --------------------------------------------------------------------------- versions and activation


def version_json(v: ModelVersion, active_id: int | None) -> dict[str, Any]:
    """The API form of a model version."""
    gate = v.gate or {}
    cand = gate.get("candidate") or {}
    return {
        "id": v.id, "number": v.number, "name": f"v{v.number}", "status": v.status, "active": v.id == active_id,
        "parent_id": v.parent_id, "parent_model": v.parent_model, "train_cases": v.train_cases, "val_cases": v.val_cases,
        "cases_sha256": v.cases_sha256, "bundle_sha256": v.bundle_sha256, "trigger": v.trigger, "recipe": v.recipe,
        "gate": {"passed": gate.get("passed"), "reason": gate.get("reason"), "rule": gate.get("rule"),
                 "active": gate.get("active")},
        "validation": {"mean_dice": cand.get("mean_dice"), "per_label": cand.get("per_label")},
        "seconds": v.seconds, "job_id": v.job_id, "created": v.created.isoformat(),
        "activated": v.activated.isoformat() if v.activated else None,
    }


def find_version(s: Session, project: Project, ref: str | int) -> ModelVersion:
    """A version of ``project`` by number (``3`` or ``v3``).

    Raises:
        InputError: No such version of this project (a version of another project is named as such).
    """
    text = str(ref).strip().lower().removeprefix("v")
    if not text.isdigit():
        raise InputError(f"version {str(ref)[:20]!r}: give its number, e.g. 3 or v3")
    v = s.scalar(select(ModelVersion).where(ModelVersion.project_id == project.id, ModelVersion.number == int(text)))
    if v is None:
        raise InputError(f"project {project.name!r} has no version v{int(text)}; `medannot projects models {project.name}` lists them")
    return v


def check_loadable(version: ModelVersion, data_dir: str | Path) -> None:
    """Load the version's bundle (a bundle that cannot load is never activated).

    Raises:
        InputError: The bundle is missing or cannot be loaded (the reason in one line).
    """
    from medannot.errors import MedannotError
    from medannot.models.bundle import Bundle

    try:
        Bundle.load(Path(data_dir) / version.bundle_dir)
    except MedannotError as exc:
        first = (exc.reason if hasattr(exc, "reason") else str(exc)).splitlines()[0][:200]
        raise InputError(f"version v{version.number} cannot be loaded ({first}); the active model is unchanged") from None


def activate(s: Session, project: Project, version: ModelVersion | None, data_dir: str | Path, user: User | None,
             reason: str) -> list[Job]:
    """Make ``version`` the model that proposes (None: back to the base model); returns the re-proposal jobs queued.

    The previous active version is retired. The bundle must load.

    Raises:
        InputError: A version of another project, or one that cannot be loaded (nothing changes).
    """
    if version is not None and version.project_id != project.id:
        raise InputError(f"version {version.id} belongs to another project, not {project.name!r}; nothing changed")
    if version is not None:
        check_loadable(version, data_dir)
    previous = s.get(ModelVersion, project.active_version_id) if project.active_version_id is not None else None
    if previous is not None and (version is None or previous.id != version.id):
        previous.status = VersionStatus.RETIRED.value
    if version is not None:
        version.status = VersionStatus.ACTIVE.value
        version.activated = utcnow()
    project.active_version_id = version.id if version is not None else None
    s.flush()
    store.audit(s, user, "activate_model", project.id, detail={
        "version": version.number if version else None, "previous": previous.number if previous else None, "reason": reason[:200]},
        actor=None if user else "gate")
    return repropose(s, project, data_dir) if learning_settings(project).repropose_on_activate else []


def repropose(s: Session, project: Project, data_dir: str | Path) -> list[Job]:
    """Queue new proposals, with the model that proposes now, for the cases nobody has edited (unlocked, only
    proposals so far, none from this model yet, no annotation job waiting)."""
    who = proposing(s, project, data_dir)
    if who is None:
        return []
    current_id = who.version.id if who.version else None
    jobs = []
    for case in s.scalars(select(CaseRecord).where(CaseRecord.project_id == project.id,
                                                   CaseRecord.status.in_(("pending", "in_review"))).order_by(CaseRecord.id)):
        kinds = set(s.scalars(select(AnnotationVersion.kind).where(AnnotationVersion.case_id == case.id)))
        if kinds & set(HUMAN_KINDS):
            continue
        latest = store.latest_version(s, case.id)
        if latest is not None and latest.model_version_id == current_id:
            continue  # already proposed by this model (the base model's proposals have no version)
        waiting = s.scalar(select(Job.id).where(Job.case_id == case.id, Job.kind == "annotate", Job.state.in_(PENDING)).limit(1))
        if waiting is not None:
            continue
        jobs.append(enqueue_annotation(s, case, project, data_dir))
    return jobs


# --------------------------------------------------------------------------- order of the unreviewed cases


def case_order(s: Session, project: Project, strategy: Strategy | None = None) -> list[tuple[CaseRecord, float | None]]:
    """The project's unreviewed cases (pending or in review) in its strategy's order (or ``strategy``'s), with each
    case's score."""
    chosen = strategy if strategy is not None else learning_settings(project).strategy
    open_cases = list(s.scalars(select(CaseRecord).where(CaseRecord.project_id == project.id,
                                                         CaseRecord.status.in_(("pending", "in_review")))))
    labelled = [np.asarray(e, np.float32) for e in s.scalars(select(CaseRecord.embedding).where(
        CaseRecord.project_id == project.id, CaseRecord.status == "accepted", CaseRecord.embedding.is_not(None)))]
    cands = [Candidate(c.id, c.score, np.asarray(c.embedding, np.float32) if c.embedding else None) for c in open_cases]
    by_id = {c.id: c for c in open_cases}
    return [(by_id[int(k)], score) for k, score in order_cases(chosen, cands, labelled, seed=project.id)]  # type: ignore[call-overload]
