"""Durability under kill -9 (issue 14), on SQLite and on a real PostgreSQL: a real `medannot serve` process is
killed with SIGKILL while reviewers save versions and a client uploads with Idempotency-Keys, again and again,
and a real `medannot worker` is killed mid-job every few cycles. Afterwards no acknowledged save is lost (each
201 version is there with exactly the mask that was sent, numbers without gaps), every upload key made exactly
one case (keys whose answer was lost are sent again after the restart), every job ends with exactly one
proposal, and SQLite passes its integrity check.

``make test`` runs :data:`CYCLES` (20) cycles per backend; ``make fuzz`` (``-m fuzz``) runs
``MEDANNOT_FUZZ_CYCLES`` (default 100)."""

from __future__ import annotations

import gzip
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
from server_helpers import PASSWORD, free_port, nifti_bytes, synthetic_volume
from sqlalchemy import func, select, text

from medannot.server import accounts, store
from medannot.server.db import Database
from medannot.server.files import BlobStore
from medannot.server.models import AnnotationVersion, CaseRecord, Job
from medannot.server.settings import ServerSettings

MEDANNOT = str(Path(sys.executable).with_name("medannot"))
CYCLES = 20
FUZZ_CYCLES = int(os.environ.get("MEDANNOT_FUZZ_CYCLES", "100"))
SHAPE = (8, 8, 6)
SAVERS = 3
WORKER_EVERY = 4
"""The worker process is killed (mid-job) and restarted every this many cycles."""
NETWORK_ERRORS = (httpx.TransportError,)


@dataclass
class Ledger:
    """What the server acknowledged, and what was sent without an answer."""

    versions: list[tuple[int, int, int, int]] = field(default_factory=list)  # (case, version id, number, voxel)
    uploads: dict[str, list[int]] = field(default_factory=dict)  # key -> case ids answered
    unanswered: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    voxel: itertools.count = field(default_factory=itertools.count)


def mask_with(voxel: int) -> np.ndarray:
    """A mask holding label 1 at one voxel (flat index ``voxel`` modulo the grid): its fingerprint."""
    m = np.zeros(SHAPE, np.uint8)
    m.flat[voxel % m.size] = 1
    return m


class Stack:
    """The data folder, database, token and processes of one backend."""

    def __init__(self, data: Path, db_url: str | None) -> None:
        self.data, self.db_url = data, db_url
        data.mkdir(parents=True)
        self.settings = ServerSettings(data_dir=data, db_url=db_url)
        self.db = Database(self.settings.database_url)
        self.db.migrate()
        secret = self.settings.resolved_secret()  # the file `serve` will read too
        with self.db.write() as s:
            user = store.add_user(s, "dur", PASSWORD, is_admin=True)
            project = store.add_project(s, "durability", "otsu")
            store.set_member(s, project, user, "admin")
            self.pid = project.id
            self.token = accounts.issue_token(s, user, secret, 24.0)
        self.server: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.url = ""
        self.logs: list = []
        self.startup_seconds: list[float] = []

    def _args(self) -> list[str]:
        return ["--data", str(self.data)] + (["--db", self.db_url] if self.db_url else [])

    def _spawn(self, cmd: list[str]) -> subprocess.Popen:
        log = open(self.data / f"proc-{len(self.logs)}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.logs.append(log)
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ, OMP_NUM_THREADS="1"))

    def start_server(self) -> None:
        t0 = time.monotonic()
        port = free_port()
        self.server = self._spawn([MEDANNOT, "serve", "--port", str(port), "--no-worker", *self._args()])
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.server.poll() is None, (self.data / f"proc-{len(self.logs) - 1}.log").read_text()[-2000:]
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    self.startup_seconds.append(time.monotonic() - t0)
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the server did not start in 120 s")

    def start_worker(self) -> None:
        self.worker = self._spawn([MEDANNOT, "worker", *self._args(), "--lease-seconds", "2", "--heartbeat-seconds", "0.3",
                                   "--poll-seconds", "0.1", "--job-delay", "0.4", "--max-attempts", "1000"])

    @staticmethod
    def kill(proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        if proc is not None:
            proc.wait(timeout=60)

    def stop(self) -> None:
        self.kill(self.server)
        self.kill(self.worker)
        for log in self.logs:
            log.close()
        self.db.dispose()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=20)


def saver(stack: Stack, ledger: Ledger, cases: list[int], stop: threading.Event, seed: int) -> None:
    """Save versions on top of the latest until the server goes away; record every 201."""
    rng = random.Random(seed)
    bases: dict[int, int | None] = {}
    try:
        with stack.client() as c:
            while not stop.is_set():
                cid = rng.choice(cases)
                if cid not in bases:
                    latest = c.get(f"/api/cases/{cid}").json()["latest_version"]
                    bases[cid] = latest["id"] if latest else None
                with ledger.lock:
                    voxel = next(ledger.voxel)
                params = {} if bases[cid] is None else {"base_version": bases[cid]}
                r = c.post(f"/api/cases/{cid}/versions", params=params, content=nifti_bytes(mask_with(voxel)))
                if r.status_code == 201:
                    v = r.json()
                    with ledger.lock:
                        ledger.versions.append((cid, v["id"], v["number"], voxel))
                    bases[cid] = v["id"]
                elif r.status_code == 409:
                    latest = r.json().get("latest")
                    bases[cid] = latest["id"] if latest else None
                else:
                    raise AssertionError(f"save answered {r.status_code}: {r.text[:200]}")
    except NETWORK_ERRORS:
        return  # the server was killed: what was not answered was not acknowledged


def uploader(stack: Stack, ledger: Ledger, stop: threading.Event, prefix: str) -> None:
    """Upload small volumes, each with its own Idempotency-Key; keys whose answer was lost are sent again first."""
    counter = itertools.count()
    try:
        with stack.client() as c:
            while not stop.is_set():
                with ledger.lock:
                    pending = sorted(ledger.unanswered)
                key = pending[0] if pending else f"{prefix}-{next(counter)}"
                with ledger.lock:
                    ledger.unanswered.add(key)
                data = nifti_bytes(synthetic_volume(SHAPE, seed=len(key)))
                r = c.post(f"/api/projects/{stack.pid}/cases", headers={"Idempotency-Key": key},
                           files={"file": (f"up-{key}.nii.gz", data, "application/octet-stream")})
                assert r.status_code == 201, r.text[:300]
                with ledger.lock:
                    ledger.uploads.setdefault(key, []).extend(case["id"] for case in r.json()["cases"])
                    ledger.unanswered.discard(key)
    except NETWORK_ERRORS:
        return


def seed_cases(stack: Stack, n: int = 3) -> list[int]:
    from medannot.data import Image
    from medannot.server import jobs as queue
    from medannot.server.imaging import to_nifti_bytes

    ids = []
    for i in range(n):
        image = Image.from_spatial(synthetic_volume(SHAPE, seed=100 + i))
        sha = BlobStore(stack.data).put(to_nifti_bytes(image))
        volume = image.as_volume()
        with stack.db.write() as s:
            case = CaseRecord(project_id=stack.pid, name=f"seed-{i}", status="in_review", image_sha256=sha, source_format="nifti",
                              spatial_dims=3, shape=list(volume.spatial_shape), affine=volume.affine.tolist())
            s.add(case)
            s.flush()
            queue.enqueue(s, case, "otsu")
            ids.append(case.id)
    return ids


def run_cycles(stack: Stack, cycles: int, seed: int) -> Ledger:
    rng = random.Random(seed)
    ledger = Ledger()
    cases = seed_cases(stack)
    for cycle in range(cycles):
        if cycle % WORKER_EVERY == 0:
            stack.kill(stack.worker)  # mid-job, most of the time (each job waits 0.4 s, heartbeating)
            stack.start_worker()
        stack.start_server()
        stop = threading.Event()
        threads = [threading.Thread(target=saver, args=(stack, ledger, cases, stop, seed * 1000 + cycle * 10 + i))
                   for i in range(SAVERS)]
        threads.append(threading.Thread(target=uploader, args=(stack, ledger, stop, f"c{cycle}")))
        before = len(ledger.versions)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(ledger.versions) == before and time.monotonic() < deadline:  # the load is under way (busy machines)
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        stack.kill(stack.server)  # while requests are in flight
        stop.set()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a client thread hung after the kill"
    stack.kill(stack.worker)
    return ledger


def read_array(path: Path) -> np.ndarray:
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(path.read_bytes())).dataobj)


def verify(stack: Stack, ledger: Ledger) -> dict:
    """Check the ledger against the database and the files; returns counts for the report."""
    # the answers lost in the last kill: sent again to a fresh server, as a client would
    stack.start_server()
    uploader_once(stack, ledger)
    stack.kill(stack.server)
    blobs = BlobStore(stack.data)
    with stack.db.read() as s:
        for cid, vid, number, voxel in ledger.versions:
            v = s.get(AnnotationVersion, vid)
            assert v is not None, f"acknowledged version {vid} of case {cid} is lost"
            assert (v.case_id, v.number, v.kind) == (cid, number, "edit")
            np.testing.assert_array_equal(read_array(blobs.path(v.mask_sha256)), mask_with(voxel), err_msg=f"version {vid}")
        for (cid,) in s.execute(select(CaseRecord.id)).all():
            numbers = sorted(s.scalars(select(AnnotationVersion.number).where(AnnotationVersion.case_id == cid)))
            assert numbers == list(range(1, len(numbers) + 1)), f"case {cid}: version numbers {numbers}"
        for key, ids in ledger.uploads.items():
            named = s.scalars(select(CaseRecord.id).where(CaseRecord.name == f"up-{key}")).all()
            assert len(set(ids)) == 1 and list(named) == [ids[0]], f"key {key}: answered {ids}, cases {list(named)}"
        if stack.db.is_sqlite:
            assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    from medannot.server.worker import Worker

    worker = Worker(stack.settings.model_copy(update={"max_attempts": 1000, "lease_seconds": 2.0}), stack.db, name="final")
    deadline = time.monotonic() + 300
    while True:  # finish what the killed workers left (their leases expire after 2 s)
        while worker.run_once() is not None:
            pass
        with stack.db.read() as s:
            open_jobs = s.scalar(select(func.count(Job.id)).where(Job.state.in_(("queued", "running"))))
        if not open_jobs:
            break
        assert time.monotonic() < deadline, f"{open_jobs} jobs never finished"
        time.sleep(0.5)
    worker.close()
    with stack.db.read() as s:
        states = dict(s.execute(select(Job.state, func.count(Job.id)).group_by(Job.state)).all())
        per_job = s.execute(select(AnnotationVersion.job_id, func.count(AnnotationVersion.id))
                            .where(AnnotationVersion.job_id.is_not(None)).group_by(AnnotationVersion.job_id)).all()
        jobs = s.scalar(select(func.count(Job.id)))
        retried = s.scalar(select(func.count(Job.id)).where(Job.attempts > 1))
    assert states == {"done": jobs}, states
    assert len(per_job) == jobs and all(n == 1 for _, n in per_job), "a job without, or with more than one, proposal"
    return {"versions": len(ledger.versions), "uploads": len(ledger.uploads), "jobs": jobs, "jobs_retried": retried}


def uploader_once(stack: Stack, ledger: Ledger) -> None:
    """Send every unanswered key once more (to a running server)."""
    with stack.client() as c:
        for key in sorted(ledger.unanswered):
            data = nifti_bytes(synthetic_volume(SHAPE, seed=len(key)))
            r = c.post(f"/api/projects/{stack.pid}/cases", headers={"Idempotency-Key": key},
                       files={"file": (f"up-{key}.nii.gz", data, "application/octet-stream")})
            assert r.status_code == 201, r.text[:300]
            ledger.uploads.setdefault(key, []).extend(case["id"] for case in r.json()["cases"])
            ledger.unanswered.discard(key)


def _run(backend: str, cycles: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres").new_database() if backend == "postgresql" else None
    stack = Stack(tmp_path / "data", url)
    try:
        t0 = time.monotonic()
        ledger = run_cycles(stack, cycles, seed=cycles)
        cycling = time.monotonic() - t0
        counts = verify(stack, ledger)
        counts.update(cycles_s=round(cycling, 1), server_start_s=round(float(np.median(stack.startup_seconds)), 2),
                      verify_s=round(time.monotonic() - t0 - cycling, 1))
    finally:
        stack.stop()
    assert counts["versions"] >= cycles and counts["uploads"] >= cycles // 2, counts  # the load really ran
    print(f"{backend}: {cycles} kill -9 cycles: {counts}")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_cycles_lose_no_acknowledged_write(backend, tmp_path, request):
    _run(backend, CYCLES, tmp_path, request)


@pytest.mark.slow
@pytest.mark.fuzz
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_many_cycles_lose_no_acknowledged_write(backend, tmp_path, request):
    _run(backend, FUZZ_CYCLES, tmp_path, request)
