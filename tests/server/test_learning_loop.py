"""The learning loop on the server (issue 12), SQLite and PostgreSQL, on real images (tiles of the stardist nuclei
sample, 64x64, with their hand-drawn masks): a project that starts from nothing, accepted cases split once into
train/validation, training rounds as queued jobs run by a worker, the gate, versions, rollback, re-proposals from
the active version, the active-learning order, and the bad inputs that must leave the active model unchanged."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage
from server_helpers import add_users, read_mask, run_jobs
from sqlalchemy import select

from medannot import samples
from medannot.errors import InputError
from medannot.server import learning
from medannot.server.models import CaseRecord, Job, ModelVersion, Project

TILE = 64
FAST = {"recipe": {"epochs": 1, "iterations_per_epoch": 4, "batch_size": 2, "channels": [8, 16], "num_threads": 1},
        "min_cases": 3, "val_fraction": 0.25}
"""A round of 4 steps of a 2-level U-Net: enough to exercise the loop, not to learn well."""


def nuclei_tiles(n: int, start: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``n`` real 64x64 tiles of the nuclei sample (row-major from tile ``start``) with binary truth masks."""
    image = samples.nuclei_image().scalar()
    truth = (samples.nuclei_instances().scalar() > 0).astype(np.uint8)
    out = []
    per_row = image.shape[1] // TILE
    for k in range(start, start + n):
        r, c = divmod(k, per_row)
        box = (slice(r * TILE, (r + 1) * TILE), slice(c * TILE, (c + 1) * TILE))
        out.append((f"tile{k:02d}", np.ascontiguousarray(image[box]), truth[box]))
    return out


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_for(client, cid: int, truth2d: np.ndarray) -> bytes:
    """The truth mask as a label NIfTI on the stored case grid (a 2D case is one slice)."""
    stored = nib.Nifti1Image.from_bytes(_gunzip(client.get(f"/api/cases/{cid}/image").content))
    return nib.Nifti1Image(truth2d[..., None].astype(np.uint8), stored.affine).to_bytes()


def _gunzip(data: bytes) -> bytes:
    import gzip

    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def correct_and_accept(client, cid: int, truth2d: np.ndarray) -> dict:
    """Save the truth as an edit on top of the latest version, then accept it."""
    latest = client.get(f"/api/cases/{cid}").json()["latest_version"]
    params = {"base_version": latest["id"]} if latest else {}
    r = client.post(f"/api/cases/{cid}/versions", params=params, content=mask_for(client, cid, truth2d))
    assert r.status_code == 201, r.text
    r = client.post(f"/api/cases/{cid}/accept", json={"version_id": r.json()["id"], "seconds_spent": 5})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def loop(live):
    """Project 'nuclei-from-nothing' (no model, label 1 = nucleus) with 8 uploaded tiles, owned by ll-admin."""
    add_users(live, ["ll-admin", "ll-rev"], admin={"ll-admin"})
    admin = live.client("ll-admin")
    r = admin.post("/api/projects", json={"name": "nuclei-from-nothing", "labels": "1=nucleus", "settings": FAST})
    assert r.status_code == 201, r.text
    project = r.json()
    assert project["model"] == "" and project["active_version_id"] is None
    pid = project["id"]
    assert admin.put(f"/api/projects/{pid}/members", json={"username": "ll-rev", "role": "reviewer"}).status_code == 200
    tiles = nuclei_tiles(8, start=4)
    cases = {}
    for name, pixels, truth in tiles:
        r = admin.post(f"/api/projects/{pid}/cases", files={"file": (f"{name}.png", png(pixels), "image/png")})
        assert r.status_code == 201, r.text
        cases[name] = (r.json()["cases"][0]["id"], truth)
    run_jobs(live)
    return {"live": live, "pid": pid, "cases": cases, "names": [t[0] for t in tiles]}


def _project(live, pid):
    with live.db.read() as s:
        p = s.get(Project, pid)
        s.expunge(p)
        return p


def test_a_project_from_nothing_learns_from_its_accepted_cases(loop):
    live, pid, cases, names = loop["live"], loop["pid"], loop["cases"], loop["names"]
    admin, rev = live.client("ll-admin"), live.client("ll-rev")
    first = admin.get(f"/api/cases/{cases[names[0]][0]}").json()
    assert first["latest_version"] is None and first["job"]["state"] == "done"  # no model: nothing proposed
    with live.db.read() as s:
        assert all(s.get(CaseRecord, cid).embedding for cid, _ in cases.values())  # but the diversity order has its vectors

    # too few accepted cases: one clear line, nothing queued, no model
    for name in names[:2]:
        correct_and_accept(rev, *cases[name])
    r = admin.post(f"/api/projects/{pid}/train")
    assert r.status_code == 422 and "2 accepted case(s)" in r.json()["detail"] and "accept more cases" in r.json()["detail"]
    assert admin.get(f"/api/projects/{pid}/models").json()["versions"] == []

    # the split is fixed when a case is accepted: the first validates, then 1 in 4 (val_fraction 0.25)
    for name in names[2:4]:
        correct_and_accept(rev, *cases[name])
    sides = [admin.get(f"/api/cases/{cases[n][0]}").json()["split"] for n in names[:4]]
    assert sides == ["val", "train", "train", "train"]
    effort = admin.get(f"/api/cases/{cases[names[0]][0]}").json()["effort"]
    assert effort["proposal"] == "none" and effort["dice"] == 0.0 and effort["voxels_changed"] == int(cases[names[0]][1].sum())

    # a reviewer may not train; the admin queues a round, a worker trains, gates and activates it
    assert rev.post(f"/api/projects/{pid}/train").status_code == 403
    r = admin.post(f"/api/projects/{pid}/train", json={"note": "first round"})
    assert r.status_code == 201 and r.json()["kind"] == "train", r.text
    assert admin.post(f"/api/projects/{pid}/train").status_code == 409  # one round at a time
    run_jobs(live)
    job = admin.get(f"/api/jobs/{r.json()['id']}").json()
    assert job["state"] == "done" and job["message"].startswith("v1 active"), job
    models = admin.get(f"/api/projects/{pid}/models").json()
    assert models["proposing"] == "v1" and [v["status"] for v in models["versions"]] == ["active"]
    v1 = models["versions"][0]
    assert v1["trigger"] == "user ll-admin: first round" and v1["gate"]["passed"] is True
    assert sorted(v1["train_cases"]) == sorted(cases[n][0] for n in names[1:4]) and v1["val_cases"] == [cases[names[0]][0]]
    assert len(v1["bundle_sha256"]) == 64 and v1["validation"]["mean_dice"] is not None
    bundle = Path(live.settings.data_dir) / "models" / f"project-{pid}" / "v1"
    assert (bundle / "bundle.json").is_file() and not list(bundle.parent.glob(".*"))  # complete, no staging or checkpoint left

    # the unreviewed cases were proposed again by v1: the page shows which version proposed each case
    run_jobs(live)
    detail = admin.get(f"/api/cases/{cases[names[5]][0]}").json()
    assert detail["proposed_by"]["model_version_id"] == v1["id"] and detail["proposed_by"]["model_version"] == "v1"
    assert detail["latest_version"]["kind"] == "proposal" and detail["uncertainty"] is not None
    proposal = read_mask(admin.get(detail["latest_version"]["mask_url"]).content)
    assert proposal.shape == (TILE, TILE, 1) and set(np.unique(proposal)) <= {0, 1}

    # a candidate that does not beat the active model by the margin is kept as rejected; v1 stays active
    assert admin.patch(f"/api/projects/{pid}/settings", json={"gate": {"min_gain": 0.99}}).status_code == 200
    correct_and_accept(rev, *cases[names[4]])
    assert admin.post(f"/api/projects/{pid}/train").status_code == 201
    run_jobs(live)
    models = admin.get(f"/api/projects/{pid}/models").json()
    assert [(v["name"], v["status"]) for v in models["versions"]] == [("v2", "rejected"), ("v1", "active")]
    v2 = models["versions"][0]
    assert v2["gate"]["passed"] is False and "below the active model" in v2["gate"]["reason"]
    assert v2["gate"]["active"]["mean_dice"] is not None and v2["parent_model"].endswith("v1")  # fine-tuned from v1

    # roll forward by hand, then back: the previous one is retired each time, proposals follow
    r = admin.post(f"/api/projects/{pid}/models/v2/activate", json={"reason": "try it"})
    assert r.status_code == 200 and r.json()["proposing"] == "v2" and r.json()["reproposals"] >= 2, r.text
    run_jobs(live)
    statuses = {v["name"]: v["status"] for v in admin.get(f"/api/projects/{pid}/models").json()["versions"]}
    assert statuses == {"v2": "active", "v1": "retired"}
    assert rev.post(f"/api/projects/{pid}/models/v1/activate").status_code == 403
    assert admin.post(f"/api/projects/{pid}/models/1/activate").json()["proposing"] == "v1"
    run_jobs(live)
    detail = admin.get(f"/api/cases/{cases[names[6]][0]}").json()
    assert detail["proposed_by"]["model_version"] == "v1"
    versions = admin.get(f"/api/cases/{cases[names[6]][0]}/versions").json()
    assert [v["model_version"] for v in versions] == ["v1", "v2", "v1"]  # newest first: each activation re-proposed it


def test_bad_activations_leave_the_active_model_unchanged(loop):
    live, pid = loop["live"], loop["pid"]
    admin = live.client("ll-admin")
    before = _project(live, pid).active_version_id
    assert before is not None
    r = admin.post(f"/api/projects/{pid}/models/v99/activate")
    assert r.status_code == 422 and "has no version v99" in r.json()["detail"]
    assert admin.post(f"/api/projects/{pid}/models/base/activate").status_code == 422  # started from nothing: no base model
    # a version whose bundle no longer loads
    with live.db.read() as s:
        v2 = s.scalar(select(ModelVersion).where(ModelVersion.project_id == pid, ModelVersion.number == 2))
        folder = Path(live.settings.data_dir) / v2.bundle_dir
    backup = folder.with_name("v2-backup")
    shutil.copytree(folder, backup)
    try:
        (folder / "bundle.json").write_text("{not json")
        r = admin.post(f"/api/projects/{pid}/models/v2/activate")
        assert r.status_code == 422 and "v2 cannot be loaded" in r.json()["detail"] and "unchanged" in r.json()["detail"]
    finally:
        shutil.rmtree(folder)
        backup.rename(folder)
    assert _project(live, pid).active_version_id == before
    # a version of another project
    with live.db.write() as s:
        other = Project(name="other-project", model="", labels=[{"value": 1, "name": "x", "color": "#ff0000"}])
        s.add(other)
        s.flush()
        v2 = s.scalar(select(ModelVersion).where(ModelVersion.project_id == pid, ModelVersion.number == 2))
        with pytest.raises(InputError, match="belongs to another project"):
            learning.activate(s, other, v2, live.settings.data_dir, None, "test")
        assert other.active_version_id is None
    assert _project(live, pid).active_version_id == before


def test_rounds_start_by_themselves_and_cases_come_in_the_strategy_order(loop):
    live, pid, cases, names = loop["live"], loop["pid"], loop["cases"], loop["names"]
    admin, rev = live.client("ll-admin"), live.client("ll-rev")
    assert admin.patch(f"/api/projects/{pid}/settings", json={"retrain_every": 2, "strategy": "uncertainty"}).status_code == 200
    listed = admin.get(f"/api/projects/{pid}/cases", params={"order": "strategy"}).json()
    open_cases = [c for c in listed if c["rank"] is not None]
    assert [c["rank"] for c in open_cases] == list(range(1, len(open_cases) + 1)) and len(open_cases) == 3
    scores = [c["score"] for c in open_cases]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)  # most uncertain first
    assert all(c["rank"] is None for c in listed[len(open_cases):])  # the reviewed ones follow
    nxt = admin.get(f"/api/projects/{pid}/next").json()
    assert nxt["id"] == open_cases[0]["id"] and nxt["strategy"] == "uncertainty"
    r = admin.patch(f"/api/projects/{pid}/settings", json={"strategy": "uncertain"})  # a typo: one line with the valid names
    assert r.status_code == 422 and "strategy" in r.json()["detail"] and "'diversity'" in r.json()["detail"], r.text
    r = admin.patch(f"/api/projects/{pid}/settings", json={"engine": "no-such-engine"})
    assert r.status_code == 422 and "growcut" in r.json()["detail"], r.text
    r = admin.patch(f"/api/projects/{pid}/settings", json={"engine": "auto"})  # the default: per case dimensionality
    assert r.status_code == 200 and r.json()["engine"] == "auto", r.text

    # accepting two more cases queues a round by itself
    before = {j["id"] for j in admin.get(f"/api/projects/{pid}/jobs").json()}
    correct_and_accept(rev, *cases[names[5]])
    assert not [j for j in admin.get(f"/api/projects/{pid}/jobs").json() if j["id"] not in before and j["kind"] == "train"]
    correct_and_accept(rev, *cases[names[6]])
    new = [j for j in admin.get(f"/api/projects/{pid}/jobs").json() if j["id"] not in before and j["kind"] == "train"]
    assert len(new) == 1 and new[0]["state"] == "queued"
    with live.db.read() as s:
        assert s.get(Job, new[0]["id"]).detail["trigger"] == "auto after 2 accepted cases"


def test_a_training_job_whose_worker_lost_its_lease_stores_no_version(loop):
    """The worker that lost the job (it looked dead) finishes late: its version is dropped, the job's owner stores one."""
    from datetime import timedelta

    from sqlalchemy import update

    from medannot.server import jobs as queue
    from medannot.server.models import utcnow
    from medannot.server.training_jobs import run_training_job
    from medannot.server.worker import Worker

    live, pid = loop["live"], loop["pid"]
    with live.db.write() as s:
        job = s.scalar(select(Job).where(Job.project_id == pid, Job.kind == "train", Job.state == "queued"))
        if job is None:
            job = learning.queue_training(s, s.get(Project, pid), None, "lease test")
        job_id, number = job.id, job.detail["number"]
        s.execute(update(Job).where(Job.id == job_id).values(state="running", lease_owner="slow", attempts=1,
                                                             lease_expires=utcnow() + timedelta(seconds=60)))
    slow = Worker(live.settings, live.db, name="slow")
    with live.db.write() as s:  # another worker took the job over while "slow" was training
        s.execute(update(Job).where(Job.id == job_id).values(lease_owner="fast"))
    run_training_job(slow, job_id)
    slow.close()
    with live.db.read() as s:
        assert s.scalar(select(ModelVersion).where(ModelVersion.job_id == job_id)) is None
    with live.db.write() as s:  # the owner's lease runs out: any worker may claim the job again
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires=utcnow() - timedelta(seconds=1)))
    run_jobs(live)
    with live.db.read() as s:
        versions = list(s.scalars(select(ModelVersion).where(ModelVersion.job_id == job_id)))
        assert len(versions) == 1 and versions[0].number == number
        assert s.get(Job, job_id).state == "done" and queue.job_json(s.get(Job, job_id))["kind"] == "train"


@pytest.mark.slow
def test_a_worker_killed_mid_training_leaves_no_version_and_the_round_resumes(live):
    """SIGKILL a real worker process while it trains: no version and no bundle appear; when its lease runs out another
    worker claims the job, resumes the round from its checkpoint and stores exactly one version."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from medannot.server.training_jobs import run_training_job  # noqa: F401 - the module the worker runs

    add_users(live, ["kill-admin"], admin={"kill-admin"})
    admin = live.client("kill-admin")
    slow_recipe = {**FAST, "recipe": {**FAST["recipe"], "epochs": 60, "iterations_per_epoch": 5}}
    pid = admin.post("/api/projects", json={"name": "killed-round", "labels": "1=nucleus", "settings": slow_recipe}).json()["id"]
    for name, pixels, truth in nuclei_tiles(4, start=20):
        r = admin.post(f"/api/projects/{pid}/cases", files={"file": (f"{name}.png", png(pixels), "image/png")})
        correct_and_accept(admin, r.json()["cases"][0]["id"], truth)
    run_jobs(live)  # the embedding jobs (and other modules' jobs): the training job is next
    job_id = admin.post(f"/api/projects/{pid}/train").json()["id"]
    out = Path(live.settings.data_dir) / "models" / f"project-{pid}" / "v1"
    checkpoint = out.with_name(f".{out.name}.checkpoint.pt")
    cmd = [str(Path(sys.executable).with_name("medannot")), "worker", "--data", str(live.settings.data_dir), "--lease-seconds", "2",
           "--heartbeat-seconds", "0.3", "--poll-seconds", "0.2"] + (["--db", live.settings.db_url] if live.settings.db_url else [])
    worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.is_file():  # at least one epoch trained and checkpointed
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never started training"
            time.sleep(0.1)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
    job = admin.get(f"/api/jobs/{job_id}").json()
    assert job["state"] == "running" and job["attempts"] == 1 and 0 < job["progress"] < 0.9
    assert not out.exists() and admin.get(f"/api/projects/{pid}/models").json()["versions"] == []
    time.sleep(2.5)  # its lease runs out
    run_jobs(live)
    job = admin.get(f"/api/jobs/{job_id}").json()
    assert job["state"] == "done" and job["attempts"] == 2, job
    models = admin.get(f"/api/projects/{pid}/models").json()
    assert [v["name"] for v in models["versions"]] == ["v1"] and models["proposing"] == "v1"
    recipe = models["versions"][0]["recipe"]
    assert recipe["resumed_from"] >= 5 and recipe["steps_done"] == recipe["steps_planned"] == 300  # resumed, not restarted
    assert (out / "bundle.json").is_file() and not checkpoint.exists()
