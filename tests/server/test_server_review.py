"""Review through the HTTP API on SQLite and PostgreSQL: proposals from the worker, edits with optimistic
concurrency (409), drafts, accept with correction effort, exports (NIfTI + COCO read back), headers, audit."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from server_helpers import add_project, add_users, nifti_bytes, read_mask, run_jobs, synthetic_volume, upload

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])


@pytest.fixture(scope="module")
def world(live):
    add_users(live, ["ra", "rb", "an"])
    pid = add_project(live, "review", "otsu", {"ra": "admin", "rb": "reviewer", "an": "annotator"})
    volume = synthetic_volume()
    r = upload(live.client("an"), pid, "scan.nii.gz", nifti_bytes(volume, AFFINE))
    assert r.status_code == 201, r.text
    assert run_jobs(live) >= 1
    return {"pid": pid, "cid": r.json()["cases"][0]["id"], "volume": volume, "live": live}


def _edit(c, cid, array, base):
    params = {} if base is None else {"base_version": base}
    return c.post(f"/api/cases/{cid}/versions", params=params, content=nifti_bytes(array.astype(np.uint8), AFFINE))


def test_proposal_is_the_models_output_on_the_image_grid(world):
    from medannot.classical import run_method
    from medannot.data import Geometry, Image

    c, cid = world["live"].client("rb"), world["cid"]
    case = c.get(f"/api/cases/{cid}").json()
    v = case["latest_version"]
    assert (v["kind"], v["number"], v["model_name"], case["job"]["state"]) == ("proposal", 1, "otsu", "done")
    assert case["shape"] == list(world["volume"].shape) and case["labels"][0]["value"] == 1
    image = Image.from_spatial(world["volume"], Geometry.from_affine(AFFINE))
    expected = run_method("otsu", image).array[0]
    np.testing.assert_array_equal(read_mask(c.get(v["mask_url"]).content), expected)
    image_back = read_mask(c.get(case["image_url"]).content)
    np.testing.assert_array_equal(image_back, world["volume"])


def test_downloads_are_never_html(world):
    c, cid = world["live"].client("rb"), world["cid"]
    case = c.get(f"/api/cases/{cid}").json()
    for url in (case["image_url"], case["latest_version"]["mask_url"]):
        r = c.get(url)
        assert r.headers["content-type"] == "application/gzip"
        assert r.headers["content-disposition"].startswith("attachment")
        assert r.headers["x-content-type-options"] == "nosniff"


def test_versions_conflict_and_nothing_is_overwritten(world):
    c, cid = world["live"].client("rb"), world["cid"]
    base = c.get(f"/api/cases/{cid}").json()["latest_version"]
    mask = read_mask(c.get(base["mask_url"]).content)
    edited = mask.copy()
    edited[6:9, 5:8, 3:5] = 0
    r = _edit(c, cid, edited, base["id"])
    assert r.status_code == 201, r.text
    mine = r.json()
    assert (mine["kind"], mine["number"], mine["author"], mine["base_version_id"]) == ("edit", base["number"] + 1, "rb", base["id"])
    stale = _edit(world["live"].client("ra"), cid, mask, base["id"])
    assert stale.status_code == 409 and stale.json()["latest"]["id"] == mine["id"]
    no_base = _edit(c, cid, mask, None)
    assert no_base.status_code == 409
    versions = c.get(f"/api/cases/{cid}/versions").json()
    assert [v["number"] for v in versions] == sorted((v["number"] for v in versions), reverse=True)
    assert versions[0]["id"] == mine["id"]
    np.testing.assert_array_equal(read_mask(c.get(mine["mask_url"]).content), edited)
    np.testing.assert_array_equal(read_mask(c.get(base["mask_url"]).content), mask)
    assert c.get(f"/api/cases/{cid}").json()["status"] == "in_review"


@pytest.mark.parametrize("bad", ["shape", "affine", "label", "garbage", "empty"])
def test_masks_off_the_grid_or_label_map_are_refused(world, bad):
    c, cid = world["live"].client("rb"), world["cid"]
    latest = c.get(f"/api/cases/{cid}").json()["latest_version"]["id"]
    shape = world["volume"].shape
    data = {
        "shape": nifti_bytes(np.zeros((shape[0] + 1, *shape[1:]), np.uint8), AFFINE),
        "affine": nifti_bytes(np.zeros(shape, np.uint8), np.diag([1.0, 0.8, 2.0, 1.0])),
        "label": nifti_bytes(np.full(shape, 7, np.uint8), AFFINE),
        "garbage": b"<html><script>alert(1)</script></html>",
        "empty": b"",
    }[bad]
    r = c.post(f"/api/cases/{cid}/versions", params={"base_version": latest}, content=data)
    assert r.status_code == 422, r.text
    assert c.get(f"/api/cases/{cid}").json()["latest_version"]["id"] == latest


def test_drafts_are_per_user_and_dropped_by_a_save(world):
    live, cid = world["live"], world["cid"]
    ra, rb = live.client("ra"), live.client("rb")
    latest = rb.get(f"/api/cases/{cid}").json()["latest_version"]
    draft = read_mask(rb.get(latest["mask_url"]).content)
    draft[0, 0, 0] = 1
    assert rb.put(f"/api/cases/{cid}/draft", content=nifti_bytes(draft.astype(np.uint8), AFFINE)).status_code == 204
    np.testing.assert_array_equal(read_mask(rb.get(f"/api/cases/{cid}/draft").content), draft)
    assert ra.get(f"/api/cases/{cid}/draft").status_code == 404
    assert _edit(rb, cid, draft, latest["id"]).status_code == 201
    assert rb.get(f"/api/cases/{cid}/draft").status_code == 404


def test_accept_records_the_correction_effort(world):
    from medpy.metric.binary import dc

    from medannot.evaluation.metrics import hd95

    live, cid = world["live"], world["cid"]
    c = live.client("rb")
    versions = c.get(f"/api/cases/{cid}/versions").json()
    proposal = read_mask(c.get(next(v for v in versions if v["kind"] == "proposal")["mask_url"]).content)
    latest = versions[0]
    final = read_mask(c.get(latest["mask_url"]).content)
    assert live.client("an").post(f"/api/cases/{cid}/accept", json={"version_id": latest["id"]}).status_code == 403
    r = c.post(f"/api/cases/{cid}/accept", json={"version_id": latest["id"], "seconds_spent": 42.5})
    assert r.status_code == 200, r.text
    case = r.json()
    assert case["status"] == "accepted" and case["accepted_version"]["kind"] == "accepted"
    effort = case["effort"]
    assert effort["dice"] == pytest.approx(dc(final == 1, proposal == 1))
    assert effort["hd95_mm"] == pytest.approx(hd95(final == 1, proposal == 1, (0.8, 0.8, 2.0)))
    assert effort["voxels_changed"] == int((final != proposal).sum()) > 0
    assert effort["seconds"] == 42.5
    np.testing.assert_array_equal(read_mask(c.get(case["accepted_version"]["mask_url"]).content), final)
    listed = c.get(f"/api/projects/{world['pid']}/cases", params={"status": "accepted"}).json()
    assert [x["id"] for x in listed] == [cid]
    assert c.get(f"/api/projects/{world['pid']}/cases", params={"status": "bogus"}).status_code == 422


def test_export_holds_the_accepted_mask(world):
    live, cid = world["live"], world["cid"]
    c = live.client("rb")
    accepted = c.get(f"/api/cases/{cid}").json()["accepted_version"]
    r = c.post(f"/api/projects/{world['pid']}/export")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        (entry,) = manifest["cases"]
        assert entry["id"] == cid and entry["version_id"] == accepted["id"] and entry["effort"]["seconds"] == 42.5
        np.testing.assert_array_equal(read_mask(zf.read(entry["file"])), read_mask(c.get(accepted["mask_url"]).content))
        assert "coco.json" not in zf.namelist()  # 3D only


def test_audit_log_records_reads_edits_accepts_exports(world):
    live = world["live"]
    rows = live.client("ra").get(f"/api/projects/{world['pid']}/audit").json()
    seen = {(r["user"], r["action"]) for r in rows}
    assert {("rb", "read_image"), ("rb", "read_mask"), ("rb", "save_version"), ("rb", "accept"), ("rb", "export"),
            ("an", "upload")} <= seen
    assert live.client("rb").get(f"/api/projects/{world['pid']}/audit").status_code == 403


def test_reject_and_reannotate_with_idempotency_key(world):
    live, cid = world["live"], world["cid"]
    rb, an = live.client("rb"), live.client("an")
    assert rb.get(f"/api/cases/{cid}").json()["status"] == "accepted"  # by the test above
    locked = rb.post(f"/api/cases/{cid}/reject", json={"reason": "motion"})
    assert locked.status_code == 409 and locked.json()["locked"] is True  # an accepted case is reopened first
    assert rb.post(f"/api/cases/{cid}/reopen", json={"reason": "motion artefact seen"}).status_code == 200
    r = rb.post(f"/api/cases/{cid}/reject", json={"reason": "motion"})
    assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["reject_reason"] == "motion"
    assert an.post(f"/api/cases/{cid}/jobs").status_code == 409  # a rejected case is locked too
    assert rb.post(f"/api/cases/{cid}/reopen").status_code == 200
    first = an.post(f"/api/cases/{cid}/jobs", headers={"Idempotency-Key": "again-1"})
    second = an.post(f"/api/cases/{cid}/jobs", headers={"Idempotency-Key": "again-1"})
    assert first.status_code == second.status_code == 201 and first.json()["id"] == second.json()["id"]
    assert an.get(f"/api/jobs/{first.json()['id']}").json()["state"] == "queued"
    assert run_jobs(live) >= 1
    job = an.get(f"/api/jobs/{first.json()['id']}").json()
    assert (job["state"], job["progress"]) == ("done", 1.0)
