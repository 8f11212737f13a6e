"""A worker runs a training job: the round, the gate, and the new version (:mod:`medannot.server.learning`).

The job lists the cases accepted when it was queued (train and validation sides) and reserves its version number.
The worker reads each case's image and its latest *accepted* mask from the blob store, trains the round in the one
training loop (:func:`medannot.workflows.learning.rounds.run_round`: fine-tuned from the active version, else from
the base model when it is a bundle of the same dimensionality, else from scratch; bounded by the project's time
budget) while it renews its lease and reports progress, then measures the candidate and the model that proposes now
on the validation cases and applies the gate. The version row is written, and the version activated when it
passed, in the same transaction that finishes the job, and only while the worker still holds the job's lease.

Crashes: the bundle folder appears only complete (atomic rename) and the round checkpoints every epoch, so a
worker killed mid-training leaves a job that another worker claims when the lease runs out; it resumes from the
checkpoint (or, if the bundle was complete, goes straight to the gate), and the job yields exactly one version
(``model_versions.job_id`` is unique).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from medannot.errors import InputError, MedannotError
from medannot.server import jobs as queue
from medannot.server import learning
from medannot.server.imaging import mask_array, read_nifti_bytes
from medannot.server.models import AnnotationVersion, CaseRecord, Job, ModelVersion, Project
from medannot.workflows.learning.gate import Scores, decide, score_masks
from medannot.workflows.learning.registry import VersionStatus, cases_hash
from medannot.workflows.learning.rounds import LabelledCase, RoundResult, RoundSpec, run_round

if TYPE_CHECKING:
    from medannot.server.worker import Worker

log = logging.getLogger("medannot.worker")

__all__ = ["run_training_job"]


class _LeaseLost(Exception):
    pass


def _plan(worker: Worker, job_id: int) -> dict[str, Any]:
    """Everything the round needs, read in one snapshot."""
    with worker.db.read() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise InputError(f"training job {job_id} no longer exists")
        project = s.get(Project, job.project_id)
        if project is None:
            raise InputError("its project no longer exists")
        detail = dict(job.detail or {})
        settings = learning.learning_settings(project)
        who = learning.proposing(s, project, worker.settings.data_dir)
        cases: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
        for side in ("train", "val"):
            for cid in detail.get(side, []):
                case = s.get(CaseRecord, int(cid))
                accepted = s.scalar(select(AnnotationVersion).where(AnnotationVersion.case_id == int(cid), AnnotationVersion.kind ==
                                                                    "accepted").order_by(AnnotationVersion.number.desc()).limit(1))
                if case is None or accepted is None:
                    raise InputError(f"case {cid} of this round was deleted or has no accepted mask; queue a new round")
                cases[side].append({"id": case.id, "image": case.image_sha256, "mask": accepted.mask_sha256,
                                    "shape": list(case.shape), "dims": case.spatial_dims})
        dims = {c["dims"] for side in cases.values() for c in side}
        if len(dims) != 1:
            raise InputError("the accepted cases mix 2D and 3D images; a project trains on one kind")
        return {
            "project_id": project.id, "name": project.name, "labels": list(project.labels), "settings": settings,
            "number": int(detail["number"]), "trigger": str(detail.get("trigger", "")), "by": detail.get("by"),
            "cases": cases, "dims": dims.pop(), "base_model": project.model,
            "incumbent": None if who is None else {"model": who.model, "value_map": who.value_map,
                                                   "version_id": who.version.id if who.version else None,
                                                   "number": who.version.number if who.version else None},
        }


def _parent(plan: dict[str, Any]) -> str | None:
    """Weights that start the round: the active version, else the base model if it is a bundle of these dimensions."""
    if not plan["settings"].recipe.fine_tune:
        return None
    inc = plan["incumbent"]
    if inc is not None and inc["version_id"] is not None:
        return str(inc["model"])
    base = plan["base_model"]
    if not base:
        return None
    from medannot import classical
    from medannot.models.bundle import Bundle

    if base in classical.list_methods():
        return None
    try:
        bundle = Bundle.load(base)
    except MedannotError:
        return None
    return base if int(bundle.spatial_dims) == plan["dims"] and bundle.spec.network.name else None


def _spec(worker: Worker, plan: dict[str, Any], out: Path) -> RoundSpec:
    blobs = worker.blobs

    def files(side: str) -> list[LabelledCase]:
        return [LabelledCase(f"case-{c['id']}", blobs.path(c["image"]), blobs.path(c["mask"])) for c in plan["cases"][side]]

    dims = plan["dims"]
    shapes = [c["shape"][:dims] for side in plan["cases"].values() for c in side]
    return RoundSpec(plan["name"], f"v{plan['number']}", dims, plan["labels"], files("train"), files("val"),
                     tuple(int(v) for v in np.min(shapes, axis=0)), out, _parent(plan), plan["settings"].recipe,
                     description=f"Version v{plan['number']} of review project {plan['name']!r}, trained from its accepted cases.")


def _measure(worker: Worker, plan: dict[str, Any], model: str, value_map: list[int] | None) -> Scores:
    from medannot.workflows.learning.proposer import Proposer

    proposer = Proposer(model, value_map=value_map)
    values = [int(lab["value"]) for lab in plan["labels"]]
    pairs = []
    for c in plan["cases"]["val"]:
        image = read_nifti_bytes(worker.blobs.get(c["image"]), what="case image")
        truth, _ = mask_array(worker.blobs.get(c["mask"]))
        pairs.append((f"case-{c['id']}", proposer.propose(image).labels.reshape(truth.shape), truth))
    return score_masks(pairs, values)


def _train(worker: Worker, job_id: int, spec: RoundSpec) -> RoundResult | None:
    """The round in the worker's helper thread while the lease is renewed; None when the lease was lost."""
    from medannot.models.bundle import Bundle

    if spec.out.is_dir():  # a previous try trained it completely and stopped before storing the version
        try:
            Bundle.load(spec.out)
            log.info("job %s: bundle %s is complete from an earlier try; going to the gate", job_id, spec.out)
            return RoundResult(spec.out, 0.0, 0, 0, False, spec.parent)
        except MedannotError:
            pass
    fraction, message = [0.0], ["starting the round"]

    def progress(done: float, text: str) -> None:
        fraction[0], message[0] = done, text

    future = worker._pool.submit(run_round, spec, progress)
    while True:
        try:
            return future.result(timeout=worker.settings.heartbeat_seconds)
        except FutureTimeout:
            if not worker._beat(job_id, 0.05 + 0.8 * fraction[0], message[0]):
                log.warning("job %s: lease lost while training; its result will be dropped", job_id)
                future.result()
                return None


def run_training_job(worker: Worker, job_id: int) -> None:
    """Run the training job ``job_id`` (claimed by ``worker``): round, gate, version (see the module docstring).

    Raises:
        MedannotError: The round cannot run (missing cases, bad data or recipe); the job is failed with the reason.
    """
    plan = _plan(worker, job_id)
    out = learning.version_dir(worker.settings.data_dir, plan["project_id"], plan["number"])
    spec = _spec(worker, plan, out)
    worker._beat(job_id, 0.02, f"training v{plan['number']} on {len(spec.train)} cases")
    t0 = time.monotonic()
    result = _train(worker, job_id, spec)
    if result is None:
        return
    if not worker._beat(job_id, 0.88, "measuring the candidate and the active model on the validation cases"):
        return
    values = [int(lab["value"]) for lab in plan["labels"]]
    candidate = _measure(worker, plan, str(out), values)
    inc = plan["incumbent"]
    active = _measure(worker, plan, str(inc["model"]), inc["value_map"]) if inc is not None else None
    decision = decide(candidate, active, plan["settings"].gate)
    _store(worker, job_id, plan, spec, result, decision, time.monotonic() - t0)


def _store(worker: Worker, job_id: int, plan: dict[str, Any], spec: RoundSpec, result: RoundResult, decision: Any,
           seconds: float) -> None:
    from medannot.models.bundle import Bundle

    sha = Bundle.load(spec.out).spec.sha256 or ""
    data_dir = Path(worker.settings.data_dir)
    train_ids = [c["id"] for c in plan["cases"]["train"]]
    val_ids = [c["id"] for c in plan["cases"]["val"]]
    inc = plan["incumbent"]
    try:
        with worker.db.write() as s:
            if not queue.heartbeat(s, job_id, worker.name, worker.settings.lease_seconds, 0.97, "storing the version"):
                raise _LeaseLost
            project = s.get(Project, plan["project_id"])
            if project is None:
                raise _LeaseLost
            recipe = plan["settings"].recipe.model_dump(mode="json")
            recipe.update({"steps_done": result.steps_done, "steps_planned": result.steps_planned,
                           "budget_hit": result.budget_hit, "parent_model": spec.parent, "resumed_from": result.resumed_from})
            version = ModelVersion(
                project_id=project.id, number=plan["number"], status=VersionStatus.CANDIDATE.value,
                bundle_dir=spec.out.relative_to(data_dir).as_posix(), bundle_sha256=sha,
                parent_id=inc["version_id"] if (inc and inc["version_id"] and spec.parent) else None, parent_model=spec.parent,
                train_cases=train_ids, val_cases=val_ids, cases_sha256=cases_hash(str(i) for i in train_ids),
                label_values=[int(lab["value"]) for lab in plan["labels"]], recipe=recipe, gate=decision.to_dict(),
                trigger=plan["trigger"][:200] or "-", seconds=round(seconds, 2), job_id=job_id, created_by=plan["by"])
            s.add(version)
            s.flush()
            if decision.passed:
                learning.activate(s, project, version, data_dir, None, f"gate: {decision.reason}")
            else:
                version.status = VersionStatus.REJECTED.value
            word = "active" if decision.passed else "rejected"
            if not queue.finish(s, job_id, worker.name, "done", f"v{version.number} {word}: {decision.reason}"):
                raise _LeaseLost
    except _LeaseLost:
        log.warning("job %s: lease lost before storing the version; dropping it", job_id)
    except IntegrityError:
        log.warning("job %s: its version was stored already; dropping this one", job_id)
