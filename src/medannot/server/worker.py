"""The annotation worker: claims jobs, runs the project's model, stores the proposal version.

Run it as ``medannot worker --data DIR [--db URL]`` (any number of processes, on any machine that sees
the database and the data folder) or as the thread that ``medannot serve`` starts. Inference runs in a
helper thread while the worker renews its lease every ``heartbeat_seconds``; if the lease is lost (the
job was re-queued because this worker looked dead), the result is thrown away.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import IntegrityError

from medannot.errors import MedannotError, ModelError
from medannot.server import jobs as queue
from medannot.server import store
from medannot.server.db import Database
from medannot.server.files import BlobStore
from medannot.server.imaging import read_nifti_bytes, to_nifti_bytes
from medannot.server.models import AnnotationVersion, CaseRecord, Job
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
        self._annotators: dict[str, Any] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medannot-infer")

    def _annotator(self, model: str) -> Any:
        if model not in self._annotators:
            self._annotators[model] = make_annotator(model)
        return self._annotators[model]

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
            job_id, case_id, model = job.id, job.case_id, job.model
            case = s.get(CaseRecord, case_id)
            if case is None:  # deleted with its project while queued (the cascade removes the job too)
                queue.finish(s, job_id, self.name, "failed", "its case no longer exists")
                return job_id
            image_sha, dims = case.image_sha256, case.spatial_dims
        log.info("job %s: case %s with %s", job_id, case_id, model)
        try:
            self._run(job_id, case_id, model, image_sha, dims)
        except MedannotError as exc:
            self._fail(job_id, str(exc))
        except Exception as exc:  # noqa: BLE001 - one broken job must not stop the worker
            log.exception("job %s failed", job_id)
            self._fail(job_id, f"{type(exc).__name__}: {exc}")
        return job_id

    def _fail(self, job_id: int, reason: str) -> None:
        with self.db.write() as s:
            job = s.get(Job, job_id)
            retry = job is not None and job.attempts < self.settings.max_attempts
            queue.finish(s, job_id, self.name, "queued" if retry else "failed", reason.splitlines()[0] if reason else "failed")

    def _run(self, job_id: int, case_id: int, model: str, image_sha: str, dims: int) -> None:
        delay = self.settings.job_delay_seconds
        if delay and not self._wait(job_id, delay, 0.0, 0.5, "waiting (--job-delay, for tests)"):
            log.warning("job %s: lease lost during the delay; dropping it", job_id)
            return
        self._beat(job_id, 0.5, "loading the model")
        annotator = self._annotator(model)
        image = read_nifti_bytes(self.blobs.get(image_sha), what="case image")
        if dims == 2:
            image = image.as_plane()
        self._beat(job_id, 0.6, "annotating")
        future = self._pool.submit(annotator.predict, image)
        while True:
            try:
                labelled = future.result(timeout=self.settings.heartbeat_seconds)
                break
            except TimeoutError:
                if not self._beat(job_id, 0.7, "annotating"):
                    log.warning("job %s: lease lost while annotating; the result will be dropped", job_id)
                    future.result()
                    return
        labels = labelled.labels
        if labels.array.max(initial=0) > 255:
            raise MedannotError(f"model {model} produced label values above 255; the server stores uint8 masks")
        mask = labels.with_array(labels.array.astype("uint8"))
        sha = self.blobs.put(to_nifti_bytes(mask))
        self._store(job_id, case_id, sha, annotator.provenance({"case_id": case_id}))

    def _store(self, job_id: int, case_id: int, sha: str, provenance: Any) -> None:
        prov = json.loads(json.dumps(dataclasses.asdict(provenance), default=str))
        for _ in range(5):  # a human may save a version at the same moment: take the next number and retry
            try:
                with self.db.write() as s:
                    if not queue.heartbeat(s, job_id, self.name, self.settings.lease_seconds, 0.95, "saving"):
                        log.warning("job %s: lease lost before saving; dropping the result", job_id)
                        return
                    s.add(AnnotationVersion(
                        case_id=case_id, number=store.next_number(s, case_id), kind="proposal", mask_sha256=sha, author_id=None,
                        model_name=provenance.name, model_version=provenance.version or None, job_id=job_id, provenance=prov,
                    ))
                    s.flush()
                    case = s.get(CaseRecord, case_id)
                    if case is not None:
                        store.touch(case)
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
