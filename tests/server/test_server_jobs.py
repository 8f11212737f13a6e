"""Jobs survive crashes: a real worker process killed with SIGKILL mid-job leaves a job that another worker
takes over when the lease expires, and the job yields exactly one proposal version (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from server_helpers import add_project, add_users, nifti_bytes, run_jobs, synthetic_volume, upload
from sqlalchemy import func, select, update

from medannot.server import jobs as queue
from medannot.server.models import AnnotationVersion, Job, utcnow
from medannot.server.worker import Worker

MEDANNOT = str(Path(sys.executable).with_name("medannot"))


def _job(live, job_id):
    with live.db.read() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def _proposals(live, job_id):
    with live.db.read() as s:
        return s.scalar(select(func.count(AnnotationVersion.id)).where(AnnotationVersion.job_id == job_id))


def _new_job(live, project, user):
    run_jobs(live)  # the server is shared by the test modules: finish their queued jobs so this one is next
    r = upload(live.client(user), project, "crash.nii.gz", nifti_bytes(synthetic_volume(seed=int(time.time() * 1000) % 10000)))
    assert r.status_code == 201, r.text
    return r.json()["cases"][0]["job"]["id"]


def _wait(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _worker(live, *extra):
    cmd = [MEDANNOT, "worker", "--data", str(live.settings.data_dir), "--lease-seconds", "2", "--heartbeat-seconds", "0.3",
           "--poll-seconds", "0.2", *extra]
    if live.settings.db_url:
        cmd += ["--db", live.settings.db_url]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = Path(live.settings.data_dir) / f"worker-{time.monotonic_ns()}.log"
    with open(log, "wb") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh, env=env)


@pytest.fixture(scope="module")
def project(live):
    add_users(live, ["jobs-admin"])
    return add_project(live, "jobs", "otsu", {"jobs-admin": "admin"})


@pytest.mark.slow
def test_worker_killed_mid_job_is_replaced_and_the_job_yields_one_result(live, project):
    job_id = _new_job(live, project, "jobs-admin")
    first = _worker(live, "--job-delay", "120")
    try:
        _wait(lambda: _job(live, job_id).state == "running" and _job(live, job_id).progress > 0, 120, "the first worker to start")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    killed = _job(live, job_id)
    assert killed.state == "running" and killed.attempts == 1 and _proposals(live, job_id) == 0
    second = _worker(live, "--job-delay", "0")
    try:
        _wait(lambda: _job(live, job_id).state == "done", 120, "the second worker to finish the job")
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine: shutting down is not what this test is about
            second.kill()
            second.wait(timeout=30)
    done = _job(live, job_id)
    assert done.attempts == 2 and done.progress == 1.0 and done.lease_owner != killed.lease_owner
    assert _proposals(live, job_id) == 1
    versions = live.client("jobs-admin").get(f"/api/cases/{done.case_id}/versions").json()
    assert [(v["kind"], v["job_id"]) for v in versions] == [("proposal", job_id)]


def test_a_worker_that_lost_its_lease_stores_nothing(live, project):
    job_id = _new_job(live, project, "jobs-admin")
    slow, fast = Worker(live.settings, live.db, name="slow"), Worker(live.settings, live.db, name="fast")
    with live.db.write() as s:
        claimed = queue.claim(s, "slow", 30.0)
        while claimed is not None and claimed.id != job_id:  # other queued jobs of this module: finish them first
            queue.finish(s, claimed.id, "slow", "failed", "not this test's job")
            claimed = queue.claim(s, "slow", 30.0)
    assert claimed is not None
    with live.db.write() as s:  # "slow" looks dead: its lease ran out
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires=utcnow() - timedelta(seconds=1)))
    assert fast.run_once() == job_id and _job(live, job_id).state == "done"
    assert not slow._beat(job_id, 0.5)
    from medannot.server.worker import _Target
    from medannot.workflows.learning.proposer import Proposal

    case_id = _job(live, job_id).case_id
    late = Proposal(np.zeros((1, 1, 1), np.uint8), None, {"name": "otsu", "version": ""})
    slow._store(job_id, _Target(case_id, "0" * 64, 3, "otsu", "otsu", None, None, False, 0), "0" * 64, late, None)
    assert _proposals(live, job_id) == 1
    with live.db.read() as s:
        assert s.scalar(select(AnnotationVersion.mask_sha256).where(AnnotationVersion.job_id == job_id)) != "0" * 64
    slow.close()
    fast.close()


@pytest.mark.slow  # loads torch to find out the model does not exist
def test_failed_jobs_are_retried_then_marked_failed(live, project):
    job_id = _new_job(live, project, "jobs-admin")
    with live.db.write() as s:
        s.execute(update(Job).where(Job.id == job_id).values(model="no-such-model"))
    w = Worker(live.settings.model_copy(update={"max_attempts": 2}), live.db, name="retry")
    ran = []
    while (j := w.run_once()) is not None:
        ran.append(j)
    w.close()
    job = _job(live, job_id)
    assert ran.count(job_id) == 2 and job.state == "failed" and "no-such-model" in job.message
    assert live.client("jobs-admin").get(f"/api/jobs/{job_id}").json()["state"] == "failed"
