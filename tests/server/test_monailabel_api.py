"""The MONAI Label paths of the review server over HTTP (httpx): tokens before bodies, roles per project, the
next case, inference, label checks and mapping, locked cases, the datastore listing and downloads, and the learning
loop behind them (training rounds queued from a client, inference with the active version, the project's order).

The end-to-end run with MONAI Label's own client is ``test_monailabel_client.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from urllib.parse import quote

import httpx
import nibabel as nib
import numpy as np
import pytest
from server_helpers import PASSWORD, add_project, add_users, nifti_bytes, read_mask, run_jobs, synthetic_volume, upload

from medannot import samples
from medannot.workflows.learning.proposer import Proposer
from medannot.workflows.learning.strategies import Candidate, order_cases

NAME = "mla brains"
BASE = f"/monailabel/{quote(NAME)}"
BLOCK = (slice(6, 14), slice(5, 12), slice(3, 8))
SHAPE = (24, 20, 12)


@pytest.fixture(scope="module")
def world(live):
    add_users(live, ["mla_admin", "mla_ann", "mla_rev", "mla_out", "mla_site"], admin={"mla_site"})
    members = {"mla_admin": "admin", "mla_ann": "annotator", "mla_rev": "reviewer"}
    pid = add_project(live, NAME, "otsu", members)
    two = add_project(live, "mla-two", "otsu", members, labels="1=a,3=b")
    add_project(live, "mla-other", "otsu", {"mla_out": "admin"})
    return {"pid": pid, "two": two}


def new_case(live, pid: int, name: str, array: np.ndarray | None = None) -> int:
    r = upload(live.client("mla_admin"), pid, name, nifti_bytes(synthetic_volume() if array is None else array))
    assert r.status_code == 201, r.text
    return r.json()["cases"][0]["id"]


def put_label(client, base: str, image: int, data: bytes, params: dict | None = None, tag: str | None = None):  # noqa: ANN001, ANN201
    query = {"image": str(image)} | ({"tag": tag} if tag else {})
    return client.put(f"{base}/datastore/label", params=query, data={"params": json.dumps(params or {})},
                      files={"label": ("label.nii.gz", data, "application/octet-stream")})


def block_mask(value: int = 1, shape: tuple = SHAPE) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[BLOCK] = value
    return mask


ROUTES = [("GET", "/info/"), ("GET", "/auth/token/valid"), ("GET", "/datastore/"), ("GET", "/datastore/image?image=1"),
          ("HEAD", "/datastore/image?image=1"), ("GET", "/datastore/image/info?image=1"), ("GET", "/datastore/label?label=1&tag=final"),
          ("HEAD", "/datastore/label?image=1&tag=final"), ("GET", "/datastore/label/info?label=1&tag=final"),
          ("PUT", "/datastore/label?image=1"), ("PUT", "/datastore/image"), ("POST", "/infer/otsu?image=1"),
          ("POST", "/activelearning/first"), ("GET", "/train/"), ("POST", "/train/"), ("POST", "/train/otsu"), ("DELETE", "/train/"),
          ("PUT", "/session/"), ("GET", "/session/x"), ("DELETE", "/session/x")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_token_before_its_body_is_read(live, world, method, path):
    anon = live.client(None)
    garbage = b"--x\r\nnot a form at all"
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Bearer " + "a" * 300}):
        r = anon.request(method, BASE + path, content=garbage, headers={"content-type": "multipart/form-data; boundary=x", **headers})
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        if method != "HEAD":
            assert "auth/token" in r.json()["detail"]


def test_auth_is_public_and_the_login_form_gives_a_medannot_token(live, world):
    anon = live.client(None)
    assert anon.get(f"{BASE}/auth/").json()["enabled"] is True
    r = anon.post(f"{BASE}/auth/token", data={"username": "mla_ann", "password": PASSWORD, "grant_type": "password"})
    assert r.status_code == 200 and r.json()["token_type"] == "bearer"
    token = r.json()["access_token"]
    assert anon.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()["username"] == "mla_ann"
    valid = anon.get(f"{BASE}/auth/token/valid", headers={"Authorization": f"bearer {token}"}).json()
    assert valid["username"] == "mla_ann" and valid["roles"] == ["monailabel-annotator", "monailabel-user"]
    assert anon.post(f"{BASE}/auth/token", data={"username": "mla_ann", "password": "wrong-password"}).status_code == 401
    assert anon.post(f"{BASE}/auth/token", json={"username": "mla_ann"}).status_code == 422
    assert anon.post(f"{BASE}/auth/token", data={"username": "u", "password": "p" * 20000}).status_code == 413
    outsider = live.client("mla_out").get(f"{BASE}/auth/token/valid")
    assert outsider.status_code == 200 and outsider.json()["roles"] == []


def test_non_members_get_403_whether_or_not_the_project_exists(live, world):
    out = live.client("mla_out")
    member_only = out.get(f"{BASE}/info/")
    missing = out.get("/monailabel/no-such-project/info/")
    assert member_only.status_code == missing.status_code == 403
    assert "not a member" in member_only.json()["detail"] and "not a member" in missing.json()["detail"]
    assert out.get(f"/monailabel/{world['pid']}/info/").status_code == 403
    site = live.client("mla_site")
    assert site.get("/monailabel/no-such-project/info/").status_code == 404
    info = site.get(f"/monailabel/{world['pid']}/info/").json()  # by id as well as by name
    assert info["name"] == NAME and info["medannot"]["role"] == "admin"


def test_next_sample_offers_pending_cases_in_order_and_opens_them(live, world):
    pid = add_project(live, "mla-order", "otsu", {"mla_ann": "annotator", "mla_admin": "admin"})
    ids = [new_case(live, pid, f"c{i}.nii.gz") for i in range(4)]
    ann, base = live.client("mla_ann"), "/monailabel/mla-order"
    first = ann.post(f"{base}/activelearning/first", json={"client_id": "slicer-1"}).json()
    assert first["id"] == str(ids[0]) and first["status"] == "in_review" and first["name"] == f"case-{ids[0]}-c0.nii.gz"
    assert ann.get(f"/api/cases/{ids[0]}").json()["status"] == "in_review"
    assert ann.post(f"{base}/activelearning/first").json()["id"] == str(ids[1])  # the opened case is not offered again
    order = [key for key, _ in order_cases("random", [Candidate(key=i) for i in ids[2:]], seed=pid)]  # the loop's order
    assert [ann.post(f"{base}/activelearning/random").json()["id"] for _ in ids[2:]] == [str(i) for i in order]
    assert ann.post(f"{base}/activelearning/random").json() == {}  # nothing pending
    r = ann.post(f"{base}/activelearning/epistemic")
    assert r.status_code == 422 and "project, first, random, uncertainty, diversity, mix" in r.json()["detail"]


def test_infer_runs_the_model_then_returns_its_stored_proposal(live, world):
    cid = new_case(live, world["pid"], "infer.nii.gz")
    ann = live.client("mla_ann")
    r = ann.post(f"{BASE}/infer/otsu", params={"image": cid, "output": "json"})
    assert r.status_code == 200 and r.json()["source"] == "model run" and r.json()["label_names"] == {"foreground": 1}
    r = ann.post(f"{BASE}/infer/otsu", params={"image": cid, "output": "image"})
    assert r.headers["content-type"] == "application/gzip"
    np.testing.assert_array_equal(read_mask(r.content), block_mask())
    assert run_jobs(live) >= 1
    proposal = ann.get(f"/api/cases/{cid}/versions").json()[0]
    r = ann.post(f"{BASE}/infer/otsu", params={"image": cid}, data={"params": json.dumps({"client_id": "x"})})
    assert r.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'"source": "stored proposal"' in r.content and f'"version_id": {proposal["id"]}'.encode() in r.content
    assert ann.post(f"{BASE}/infer/otsu", params={"image": cid, "output": "json"}).json()["version_id"] == proposal["id"]
    assert len(ann.get(f"/api/cases/{cid}/versions").json()) == 1  # inference stores nothing
    assert ann.post(f"{BASE}/infer/unet", params={"image": cid}).status_code == 404
    assert ann.post(f"{BASE}/infer/otsu", params={"image": 999999}).status_code == 404
    assert ann.post(f"{BASE}/infer/otsu", params={"image": cid, "session_id": "s"}).status_code == 422
    assert ann.post(f"{BASE}/infer/otsu", params={"image": cid, "output": "dicom_seg"}).status_code == 422
    scribbles = ann.post(f"{BASE}/infer/otsu", params={"image": cid}, files={"label": ("s.nii.gz", b"x", "application/octet-stream")})
    assert scribbles.status_code == 422 and "scribbles" in scribbles.json()["detail"]  # the form allows no file


def test_labels_are_checked_on_the_case_grid_and_mapped_by_segment_name(live, world):
    cid = new_case(live, world["two"], "two.nii.gz")
    rev, base = live.client("mla_rev"), "/monailabel/mla-two"  # reviewers label too (medannot's edit right)
    slicer = np.zeros(SHAPE, np.uint8)
    slicer[BLOCK] = 1
    slicer[0:3, 0:3, 0:3] = 2  # Slicer numbers its segments 1, 2 in its own order
    info = [{"name": "a", "idx": 1}, {"name": "B", "idx": 2}]
    r = put_label(rev, base, cid, nifti_bytes(slicer), {"label_info": info, "client_id": "slicer"})
    assert r.status_code == 200, r.text
    stored = read_mask(rev.get(r.json()["version"]["mask_url"]).content)
    assert set(np.unique(stored)) == {0, 1, 3} and (stored[0:3, 0:3, 0:3] == 3).all() and (stored[BLOCK] == 1).all()

    bad = put_label(rev, base, cid, nifti_bytes(slicer), {"label_info": [{"name": "tumour", "idx": 1}]})
    assert bad.status_code == 422 and "tumour" in bad.json()["detail"] and "a, b" in bad.json()["detail"]
    assert put_label(rev, base, cid, nifti_bytes(slicer)).status_code == 422  # value 2 is not in the map 1, 3
    assert put_label(rev, base, cid, nifti_bytes(np.zeros((24, 20, 11), np.uint8))).status_code == 422  # another grid
    shifted = np.diag([1.0, 1.0, 1.0, 1.0])
    shifted[0, 3] = 5.0
    assert put_label(rev, base, cid, nifti_bytes(block_mask(), shifted)).status_code == 422
    assert put_label(rev, base, cid, b"\x1f\x8b not gzip").status_code == 422
    assert put_label(rev, base, cid, nifti_bytes(block_mask()), tag="original").status_code == 422

    latest = r.json()["version"]["id"]
    stale = put_label(rev, base, cid, nifti_bytes(block_mask()), {"base_version": latest - 1 if latest > 1 else 10**6})
    assert stale.status_code == 409 and stale.json()["latest"]["id"] == latest
    ok = put_label(rev, base, cid, nifti_bytes(block_mask(3)), {"base_version": latest})
    assert ok.status_code == 200 and ok.json()["version"]["base_version_id"] == latest


def test_a_label_over_the_json_limit_is_an_upload(live, world):
    """The label PUT gets the upload limit: an uncompressed mask larger than the 1 MiB JSON limit is accepted."""
    shape = (128, 96, 96)
    image = (np.random.default_rng(1).random(shape) * 100).astype(np.int16)  # noise: a plausible compression ratio
    cid = new_case(live, world["pid"], "big.nii.gz", image)
    data = nifti_bytes(np.zeros(shape, np.uint8), gz=False)
    assert len(data) > live.settings.max_json_bytes
    assert put_label(live.client("mla_ann"), BASE, cid, data).status_code == 200


def test_accepted_cases_refuse_labels_and_roles_decide_training(live, world):
    cid = new_case(live, world["pid"], "locked.nii.gz")
    ann, rev, admin = live.client("mla_ann"), live.client("mla_rev"), live.client("mla_admin")
    saved = put_label(ann, BASE, cid, nifti_bytes(block_mask()))
    assert saved.status_code == 200
    assert rev.post(f"/api/cases/{cid}/accept", json={"version_id": saved.json()["version"]["id"]}).status_code == 200
    r = put_label(ann, BASE, cid, nifti_bytes(block_mask()))
    assert r.status_code == 409 and r.json()["locked"] is True
    assert put_label(admin, BASE, cid, nifti_bytes(block_mask())).status_code == 409
    assert ann.post(f"{BASE}/train/").status_code == 403 and rev.post(f"{BASE}/train/otsu").status_code == 403
    r = admin.post(f"{BASE}/train/otsu", json={})  # the learning loop's own refusal: one accepted case is too few
    assert r.status_code == 422 and "accept more cases" in r.json()["detail"]
    assert admin.get(f"{BASE}/train/", params={"check_if_running": "true"}).status_code == 404  # Slicer: not running
    assert rev.put(f"{BASE}/datastore/image").status_code == 403  # reviewers do not upload cases
    assert ann.put(f"{BASE}/datastore/image").status_code == 501
    assert ann.put(f"{BASE}/session/").status_code == 406


def test_datastore_lists_cases_with_tags_and_serves_their_files(live, world):
    cid = new_case(live, world["pid"], "listed.nii.gz")
    run_jobs(live)
    ann, admin = live.client("mla_ann"), live.client("mla_admin")
    objects = ann.get(f"{BASE}/datastore/", params={"output": "all"}).json()["objects"]
    entry = objects[str(cid)]
    assert set(entry["labels"]) == {"original"} and entry["labels"]["original"]["info"]["kind"] == "proposal"
    assert entry["image"]["info"]["name"] == f"case-{cid}-listed.nii.gz" and "path" not in entry["image"]["info"]
    saved = put_label(ann, BASE, cid, nifti_bytes(block_mask()))
    entry = ann.get(f"{BASE}/datastore/", params={"output": "all"}).json()["objects"][str(cid)]
    assert entry["labels"]["final"]["info"]["version_id"] == saved.json()["version"]["id"] == entry["labels"]["original"]["info"]["version_id"]
    stats = ann.get(f"{BASE}/datastore/").json()
    assert stats["total"] == len(objects) and stats["completed"] >= 1 and stats["label_tags"]["final"] == stats["completed"]
    assert {"image": str(cid), "label": str(cid)} in ann.get(f"{BASE}/datastore/", params={"output": "train"}).json()
    assert ann.get(f"{BASE}/datastore/", params={"output": "bogus"}).status_code == 422

    image = ann.get(f"{BASE}/datastore/image", params={"image": cid})
    assert image.headers["content-type"] == "application/gzip" and image.headers["cache-control"] == "no-store"
    assert "attachment" in image.headers["content-disposition"]
    assert "SHA256:" + hashlib.sha256(image.content).hexdigest() == entry["image"]["info"]["checksum"]
    assert nib.Nifti1Image.from_bytes(gzip.decompress(image.content)).shape == SHAPE
    digest = entry["image"]["info"]["checksum"]
    assert ann.head(f"{BASE}/datastore/image", params={"image": cid, "check_sum": digest}).status_code == 200
    assert ann.head(f"{BASE}/datastore/image", params={"image": cid, "check_sum": "SHA256:" + "0" * 64}).status_code == 404
    assert ann.head(f"{BASE}/datastore/label", params={"image": cid, "tag": "final"}).status_code == 200
    label = ann.get(f"{BASE}/datastore/label", params={"label": cid, "tag": "original"})
    np.testing.assert_array_equal(read_mask(label.content), block_mask())
    assert ann.get(f"{BASE}/datastore/label/info", params={"label": cid, "tag": "final"}).json()["author"] == "mla_ann"
    assert ann.get(f"{BASE}/datastore/label", params={"label": cid, "tag": "other"}).status_code == 422
    assert ann.get(f"{BASE}/datastore/image/info", params={"image": cid}).json()["case_id"] == cid
    other = add_project(live, "mla-elsewhere", "otsu", {"mla_ann": "annotator"})
    assert ann.get("/monailabel/mla-elsewhere/datastore/image", params={"image": cid}).status_code == 404  # not its case
    assert other

    audit = admin.get(f"/api/projects/{world['pid']}/audit").json()
    reads = [a for a in audit if a["case_id"] == cid and a["action"] in {"read_image", "read_mask", "save_version"}]
    assert {a["action"] for a in reads} == {"read_image", "read_mask", "save_version"}
    assert all(a["detail"]["via"] == "monailabel" for a in reads)


def test_model_runs_are_bounded_and_leave_the_server_answering(live, world, monkeypatch):
    """One model run at a time per server, a few callers wait (without holding the event loop), one more gets 429."""
    from medannot.server.monailabel import routes, service

    release, started = threading.Event(), threading.Event()
    real = service.run_model

    def slow(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        started.set()
        if not release.wait(60):
            raise RuntimeError("never released")
        return real(*args, **kw)

    monkeypatch.setattr(service, "run_model", slow)
    cid = new_case(live, world["pid"], "bounded.nii.gz")
    answers: list[int] = []

    def call() -> None:
        with httpx.Client(base_url=live.url, timeout=120, headers={"Authorization": f"Bearer {live.tokens['mla_ann']}"}) as c:
            answers.append(c.post(f"{BASE}/infer/otsu", params={"image": cid, "output": "json"}).status_code)

    threads = [threading.Thread(target=call) for _ in range(routes.INFER_SLOTS + routes.INFER_WAITING)]
    for t in threads:
        t.start()
    assert started.wait(60)
    gate = live.app.state.monailabel_infer
    for _ in range(600):  # until every caller is either running or waiting (polled, no timing asserted)
        stats = gate.statistics()
        if stats.borrowed_tokens == routes.INFER_SLOTS and stats.tasks_waiting == routes.INFER_WAITING:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"callers never queued up: {gate.statistics()}")
    assert live.client(None).get("/health").status_code == 200  # the event loop is free while the model runs
    busy = live.client("mla_ann").post(f"{BASE}/infer/otsu", params={"image": cid, "output": "json"})
    assert busy.status_code == 429 and busy.headers["retry-after"]
    release.set()
    for t in threads:
        t.join(120)
    assert answers == [200] * len(threads)


def test_a_project_without_a_model_lists_none_and_infer_says_so(live, world):
    from sqlalchemy import select

    from medannot.server import store
    from medannot.server.models import CaseRecord, Project, User

    with live.db.write() as s:  # a project that starts from nothing (the learning loop's case): model ""
        project = Project(name="mla-empty", model="", labels=store.parse_labels("1=a"))
        s.add(project)
        s.flush()
        store.set_member(s, project, s.scalar(select(User).where(User.username == "mla_ann")), "annotator")
        pid = project.id
    with live.db.write() as s:  # a case without a job (there is no model to run)
        case = CaseRecord(project_id=pid, name="empty", status="pending", image_sha256="0" * 64, source_format="nifti",
                          spatial_dims=3, shape=list(SHAPE), affine=np.eye(4).tolist())
        s.add(case)
        s.flush()
        cid = case.id
    ann = live.client("mla_ann")
    assert ann.get("/monailabel/mla-empty/info/").json()["models"] == {}
    r = ann.post("/monailabel/mla-empty/infer/model", params={"image": cid})
    assert r.status_code == 404 and "no model yet" in r.json()["detail"]


# --------------------------------------------------------------------------- the learning loop behind the MONAI Label paths

TILE = 64
FAST = {"recipe": {"epochs": 1, "iterations_per_epoch": 4, "batch_size": 2, "channels": [8, 16], "num_threads": 1},
        "min_cases": 3, "val_fraction": 0.25}
"""A round of 4 steps of a 2-level U-Net: enough to exercise the loop, not to learn well."""


def _png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _tile_label(client, cid: int, truth: np.ndarray) -> bytes:
    """A 2D truth mask as a label NIfTI on the stored case grid (a picture is stored as one slice)."""
    data = client.get(f"/api/cases/{cid}/image").content
    stored = nib.Nifti1Image.from_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return nifti_bytes(truth[..., None].astype(np.uint8), stored.affine)


def _add_tile(client, pid: int, image: np.ndarray, truth: np.ndarray, k: int) -> tuple[int, np.ndarray]:
    box = (slice(64, 128), slice(k * TILE, (k + 1) * TILE))
    r = client.post(f"/api/projects/{pid}/cases", files={"file": (f"tile{k}.png", _png(np.ascontiguousarray(image[box])), "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["cases"][0]["id"], truth[box]


@pytest.fixture(scope="module")
def learned(live, world):
    """Project 'mla-learning' from nothing (label 1 = nucleus, fast rounds): 7 real nuclei tiles, 4 labelled through
    MONAI Label's label upload and accepted, v1 trained through the learning loop's own API and active."""
    admin = live.client("mla_site")
    r = admin.post("/api/projects", json={"name": "mla-learning", "labels": "1=nucleus", "settings": FAST})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    for user, role in (("mla_admin", "admin"), ("mla_ann", "annotator"), ("mla_rev", "reviewer")):
        assert admin.put(f"/api/projects/{pid}/members", json={"username": user, "role": role}).status_code == 200
    image = samples.nuclei_image().scalar()
    truth = (samples.nuclei_instances().scalar() > 0).astype(np.uint8)
    cases = [_add_tile(admin, pid, image, truth, k) for k in range(7)]
    run_jobs(live)
    ann, rev = live.client("mla_ann"), live.client("mla_rev")
    for cid, mask in cases[:4]:
        saved = put_label(ann, "/monailabel/mla-learning", cid, _tile_label(ann, cid, mask))
        assert saved.status_code == 200, saved.text
        assert rev.post(f"/api/cases/{cid}/accept", json={"version_id": saved.json()["version"]["id"]}).status_code == 200
    r = live.client("mla_admin").post(f"/api/projects/{pid}/train")
    assert r.status_code == 201, r.text
    run_jobs(live)
    assert live.client("mla_admin").get(f"/api/projects/{pid}/models").json()["proposing"] == "v1"
    return {"pid": pid, "cases": cases, "base": "/monailabel/mla-learning"}


def test_train_queues_a_round_as_the_learning_api_does(live, learned):
    admin, ann, rev, base, pid = live.client("mla_admin"), live.client("mla_ann"), live.client("mla_rev"), learned["base"], learned["pid"]
    info = ann.get(f"{base}/info/").json()
    assert list(info["trainers"]) == ["mla-learning"]  # the project's one trainer (it has no base model: its name)
    assert ann.post(f"{base}/train/mla-learning").status_code == 403 and rev.post(f"{base}/train/").status_code == 403
    assert admin.post(f"{base}/train/unet").status_code == 404
    r = admin.post(f"{base}/train/mla-learning", json={"max_epochs": 1})
    assert r.status_code == 200, r.text  # MONAI Label's client takes only 200
    task = r.json()
    assert task["status"] == "SUBMITTED" and task["request"] == {"model": "mla-learning"} and task["medannot"]["version"] == "v2"
    busy = admin.post(f"{base}/train/mla-learning")
    assert busy.status_code == 429 and "Already Running" in busy.json()["detail"]
    assert admin.post(f"/api/projects/{pid}/train").status_code == 409  # the same queue as the learning loop's API
    running = admin.get(f"{base}/train/", params={"check_if_running": "true"}).json()
    assert running["id"] == task["id"] and running["status"] == "SUBMITTED"
    job = admin.get(f"/api/jobs/{task['id']}").json()
    assert job["kind"] == "train" and job["project_id"] == pid
    run_jobs(live)
    assert admin.get(f"{base}/train/", params={"check_if_running": "true"}).status_code == 404
    done = admin.get(f"{base}/train/").json()
    assert done["id"] == task["id"] and done["status"] == "DONE", done
    models = admin.get(f"/api/projects/{pid}/models").json()
    v2 = next(v for v in models["versions"] if v["number"] == 2)
    assert v2["trigger"] == "user mla_admin (MONAI Label)" and v2["status"] in {"active", "rejected"}
    assert [t["id"] for t in admin.get(f"{base}/train/", params={"all": "true"}).json()][0] == task["id"]
    assert admin.delete(f"{base}/train/").status_code == 501


def test_infer_runs_the_active_version_with_the_workers_proposer(live, learned):
    ann, admin, base, pid = live.client("mla_ann"), live.client("mla_admin"), learned["base"], learned["pid"]
    active = admin.get(f"/api/projects/{pid}/models").json()["active"]
    info = ann.get(f"{base}/info/").json()
    assert list(info["models"]) == ["mla-learning"] and info["medannot"]["active_version"] == active["number"]
    cid, _ = _add_tile(admin, pid, samples.nuclei_image().scalar(), samples.nuclei_instances().scalar(), 7)  # not proposed yet
    r = ann.post(f"{base}/infer/mla-learning", params={"image": cid, "output": "json"})
    assert r.status_code == 200, r.text
    params = r.json()
    assert params["source"] == "model run" and params["model_version_id"] == active["id"]
    assert params["proposing"] == f"mla-learning_v{active['number']}"
    assert params["label_names"] == {"nucleus": 1}
    mask = read_mask(ann.post(f"{base}/infer/mla-learning", params={"image": cid, "output": "image"}).content)
    from medannot.server.imaging import read_nifti_bytes

    bundle = f"{live.settings.data_dir}/models/project-{pid}/v{active['number']}"
    image = read_nifti_bytes(ann.get(f"/api/cases/{cid}/image").content)
    expected = Proposer(bundle, value_map=[1]).propose(image).labels.reshape(image.spatial_shape)
    np.testing.assert_array_equal(mask, expected)  # what the worker would propose, on the case grid
    run_jobs(live)  # the worker proposes with the active version: that stored proposal is returned from now on
    stored = ann.post(f"{base}/infer/mla-learning", params={"image": cid, "output": "json"}).json()
    versions = ann.get(f"/api/cases/{cid}/versions").json()
    assert stored["source"] == "stored proposal" and stored["version_id"] == versions[0]["id"]
    assert versions[0]["model_version_id"] == active["id"]


def test_next_sample_follows_the_projects_strategy(live, world):
    from medannot.server.models import CaseRecord

    pid = add_project(live, "mla-strategy", "otsu", {"mla_ann": "annotator", "mla_admin": "admin"})
    ids = [new_case(live, pid, f"s{i}.nii.gz") for i in range(5)]
    scores = dict(zip(ids, [0.2, 0.9, 0.1, 0.5, 0.7], strict=True))
    with live.db.write() as s:  # the uncertainty scores the worker's proposals would leave
        for cid, score in scores.items():
            s.get(CaseRecord, cid).score = score
    admin, ann, base = live.client("mla_admin"), live.client("mla_ann"), "/monailabel/mla-strategy"
    assert admin.patch(f"/api/projects/{pid}/settings", json={"strategy": "uncertainty"}).status_code == 200
    info = ann.get(f"{base}/info/").json()
    assert list(info["strategies"])[0] == "project"  # Slicer offers the first one by default
    assert ann.get(f"/api/projects/{pid}/next").json()["id"] == ids[1]  # the review page's Next case
    first = ann.post(f"{base}/activelearning/project", json={"client_id": "slicer"}).json()
    assert first["id"] == str(ids[1]) and first["strategy"]["project"] == {
        "ts": first["ts"], "client_id": "slicer", "order": "uncertainty", "score": 0.9}
    assert ann.post(f"{base}/activelearning/project").json()["id"] == str(ids[4])
    assert ann.post(f"{base}/activelearning/uncertainty").json()["id"] == str(ids[3])  # by name, whatever the setting
    assert ann.post(f"{base}/activelearning/first").json()["id"] == str(ids[0])
    assert ann.post(f"{base}/activelearning/project").json()["id"] == str(ids[2])
    assert ann.post(f"{base}/activelearning/project").json() == {}
