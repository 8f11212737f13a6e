"""The worker: claims jobs, runs them, stores their results.

Two kinds of job: ``annotate`` runs the model that proposes for the case's project (its active version, else its
base model; :mod:`medannot.server.learning`) and stores the proposal version with the case's uncertainty score and
retrieval embedding (the active-learning order); a project without a model gets only the embedding. ``train`` runs
a training round, the gate and the new version (:mod:`medannot.server.training_jobs`).

Run it as ``medannot worker --data DIR [--db URL]`` (any number of processes, on any machine that sees
the database and the data folder) or as the thread that ``medannot serve`` starts. Inference and training run in
a helper thread while the worker renews its lease every ``heartbeat_seconds``; if the lease is lost (the
job was re-queued because this worker looked dead), the result is thrown away.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from medannot.data import Image, ImageKind
from medannot.errors import MedannotError, ModelError
from medannot.server import jobs as queue
from medannot.server import learning, store
from medannot.server.db import Database
from medannot.server.files import BlobStore
from medannot.server.imaging import read_nifti_bytes, to_nifti_bytes
from medannot.server.middleware import public_message
from medannot.server.models import AnnotationVersion, CaseRecord, Job, ModelVersion, Project
from medannot.server.settings import ServerSettings

log = logging.getLogger("medannot.worker")


def make_annotator(model: str) -> Any:
    """The predictor of a project's model: a classical method by name, else a bundle (name or folder).

    Raises:
        ModelError: A bundle whose task gives no label map (the review server stores masks).
    """
    from medannot import classical
    from medannot.tasks import get_task, load_predictor
    from medannot.tasks.segmentation import ClassicalSegmenter

    if model in classical.list_methods():
        return ClassicalSegmenter(model)
    predictor = load_predictor(model)
    if not get_task(predictor.task).writes_label_maps:
        raise ModelError(f"model {model!r} is a {predictor.task.value} model; a review project needs a model that gives label maps")
    return predictor


class Worker:
    """Claims and runs annotation jobs.

    Args:
        settings: Server settings (database, data folder, lease and heartbeat times, test delay).
        db: An open database (default: one for ``settings``).
        name: Worker id written into the lease (default: host:pid:thread).
    """

    def __init__(self, settings: ServerSettings, db: Database | None = None, name: str | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.database_url)
        self.blobs = BlobStore(settings.data_dir)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"
        self._annotators: dict[Any, Any] = {}
        self._extractor: Any = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medannot-infer")

    def _beat(self, job_id: int, progress: float | None = None, message: str | None = None) -> bool:
        with self.db.write() as s:
            return queue.heartbeat(s, job_id, self.name, self.settings.lease_seconds, progress, message)

    def _wait(self, job_id: int, seconds: float, start: float, end: float, message: str) -> bool:
        """Sleep ``seconds`` while heartbeating, progress going from ``start`` to ``end``; False if the lease was lost."""
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < seconds:
            if not self._beat(job_id, start + (end - start) * elapsed / seconds, message):
                return False
            time.sleep(min(self.settings.heartbeat_seconds, seconds - elapsed))
        return True

    def run_once(self) -> int | None:
        """Claim and run one job; returns its id, or None when nothing was queued."""
        with self.db.write() as s:
            job = queue.claim(s, self.name, self.settings.lease_seconds, self.settings.max_attempts)
            if job is None:
                return None
            job_id, case_id, kind = job.id, job.case_id, job.kind
            if kind == "train":
                target: _Target | None = None
            else:
                case = s.get(CaseRecord, case_id) if case_id is not None else None
                if case is None:  # deleted with its project while queued (the cascade removes the job too)
                    queue.finish(s, job_id, self.name, "failed", "its case no longer exists")
                    return job_id
                project = s.get(Project, case.project_id)
                target = self._target(s, job, case, project)
        log.info("job %s: %s", job_id, "training" if target is None else f"case {case_id} with {target.label or 'no model'}")
        try:
            if target is None:
                from medannot.server.training_jobs import run_training_job

                run_training_job(self, job_id)
            else:
                self._run(job_id, target)
        except MedannotError as exc:
            self._fail(job_id, public_message(exc), retry=target is not None)
        except Exception as exc:  # noqa: BLE001 - one broken job must not stop the worker
            log.exception("job %s failed", job_id)
            self._fail(job_id, f"{type(exc).__name__}: {exc}")
        return job_id

    def _target(self, s: Any, job: Job, case: CaseRecord, project: Project | None) -> _Target:
        """What an annotation job runs: the model version it was queued with, else its model name (may be none)."""
        version_id = (job.detail or {}).get("model_version_id")
        settings = learning.learning_settings(project) if project is not None else None
        base = _Target(case.id, case.image_sha256, case.spatial_dims, job.model, job.model, None, None,
                       case.embedding is None, settings.mc_dropout if settings else 0)
        if version_id is not None:
            v = s.get(ModelVersion, int(version_id))
            if v is None:
                gone = "the model version this job was queued with was deleted; queue the case again"
                return _Target(case.id, case.image_sha256, case.spatial_dims, "", job.model, None, gone, False, 0)
            base.model = str(Path(self.settings.data_dir) / v.bundle_dir)
            base.value_map, base.version_id = [int(x) for x in v.label_values], v.id
        return base

    def _fail(self, job_id: int, reason: str, retry: bool = True) -> None:
        with self.db.write() as s:
            job = s.get(Job, job_id)
            again = retry and job is not None and job.attempts < self.settings.max_attempts
            queue.finish(s, job_id, self.name, "queued" if again else "failed", reason.splitlines()[0] if reason else "failed")

    def _proposer(self, target: _Target) -> Any:
        from medannot.workflows.learning.proposer import Proposer

        key = (target.model, tuple(target.value_map or ()), target.mc_dropout)
        if key not in self._annotators:
            self._annotators[key] = Proposer(target.model, value_map=target.value_map, uncertainty=True, mc_dropout=target.mc_dropout)
        return self._annotators[key]

    def _in_thread(self, job_id: int, fn: Any, *args: Any) -> tuple[bool, Any]:
        """Run ``fn`` in the helper thread while heartbeating; (False, None) when the lease was lost."""
        future = self._pool.submit(fn, *args)
        while True:
            try:
                return True, future.result(timeout=self.settings.heartbeat_seconds)
            except TimeoutError:
                if not self._beat(job_id, 0.7, "annotating"):
                    log.warning("job %s: lease lost while annotating; the result will be dropped", job_id)
                    future.result()
                    return False, None

    def _embedding(self, image: Any) -> list[float] | None:
        """The case's retrieval vector (the ``diversity`` order); None when it cannot be computed."""
        try:
            if self._extractor is None:
                from medannot.retrieval.features import FeatureExtractor

                self._extractor = FeatureExtractor()
            work = image.as_plane() if image.ndim == 3 and image.spatial_shape[2] == 1 else image
            return [round(float(v), 6) for v in self._extractor.vector(work)]
        except Exception:  # noqa: BLE001 - the order falls back to random for this case; the proposal matters more
            log.exception("embedding failed")
            return None

    def _run(self, job_id: int, target: _Target) -> None:
        if target.error is not None:
            raise ModelError(target.error)
        delay = self.settings.job_delay_seconds
        if delay and not self._wait(job_id, delay, 0.0, 0.5, "waiting (--job-delay, for tests)"):
            log.warning("job %s: lease lost during the delay; dropping it", job_id)
            return
        image = read_nifti_bytes(self.blobs.get(target.image_sha), what="case image")
        embedding = None
        if target.want_embedding:
            self._beat(job_id, 0.5, "computing the case's embedding")
            ok, embedding = self._in_thread(job_id, self._embedding, image)
            if not ok:
                return
        if not target.model:
            self._finish_without_model(job_id, target.case_id, embedding)
            return
        self._beat(job_id, 0.55, "loading the model")
        proposer = self._proposer(target)
        self._beat(job_id, 0.6, "annotating")
        ok, proposal = self._in_thread(job_id, proposer.propose, image, {"case_id": target.case_id})
        if not ok:
            return
        mask = Image(proposal.labels.reshape(image.spatial_shape)[None].astype("uint8"), image.geometry, ImageKind.LABEL)
        sha = self.blobs.put(to_nifti_bytes(mask))
        self._store(job_id, target, sha, proposal, embedding)

    def _finish_without_model(self, job_id: int, case_id: int, embedding: list[float] | None) -> None:
        with self.db.write() as s:
            case = s.get(CaseRecord, case_id)
            if case is not None and embedding is not None:
                case.embedding = embedding
            queue.finish(s, job_id, self.name, "done", "no model yet: nothing proposed (use the Smart tool or draw)")

    def _store(self, job_id: int, target: _Target, sha: str, proposal: Any, embedding: list[float] | None) -> None:
        prov = proposal.provenance
        case_id = target.case_id
        for _ in range(5):  # a human may save a version at the same moment: take the next number and retry
            try:
                with self.db.write() as s:
                    if not queue.heartbeat(s, job_id, self.name, self.settings.lease_seconds, 0.95, "saving"):
                        log.warning("job %s: lease lost before saving; dropping the result", job_id)
                        return
                    s.add(AnnotationVersion(
                        case_id=case_id, number=store.next_number(s, case_id), kind="proposal", mask_sha256=sha, author_id=None,
                        model_name=str(prov.get("name") or target.label)[:200], model_version=str(prov.get("version") or "")[:100] or None,
                        job_id=job_id, provenance=prov, model_version_id=target.version_id,
                    ))
                    s.flush()
                    case = s.get(CaseRecord, case_id)
                    if case is not None:
                        store.touch(case)
                        case.score = proposal.uncertainty
                        if embedding is not None:
                            case.embedding = embedding
                    if not queue.finish(s, job_id, self.name, "done", "done"):
                        raise _LeaseLost
                return
            except _LeaseLost:
                log.warning("job %s: lease lost while saving; dropping the result", job_id)
                return
            except IntegrityError as exc:
                if "job_id" in str(exc.orig) or "annotation_versions_job_id" in str(exc.orig):
                    log.warning("job %s: already has its result; dropping this one", job_id)
                    return
        raise MedannotError(f"job {job_id}: could not store the proposal after 5 tries (version numbers kept changing)")

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Run jobs until ``stop`` is set (poll every ``poll_seconds`` when idle)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # noqa: BLE001 - e.g. the database restarting; wait and try again
                log.exception("worker: could not claim a job")
                ran = None
            if ran is None:
                stop.wait(self.settings.poll_seconds)

    def close(self) -> None:
        """Stop the inference thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class _LeaseLost(Exception):
    pass


@dataclass
class _Target:
    """What an annotation job runs on."""

    case_id: int
    image_sha: str
    dims: int
    model: str  # what to load ("" = the project has no model)
    label: str  # how the job names it
    value_map: list[int] | None
    error: str | None
    want_embedding: bool
    mc_dropout: int
    version_id: int | None = None
