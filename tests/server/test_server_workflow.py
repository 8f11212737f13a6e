"""Workflow integrity (issue 14): an accepted or rejected case is locked - edits, drafts and new jobs get 409 -
until a reviewer or admin reopens it; reopening is audited and shows in the versions list. An annotator can no
longer undo an accept (the case used to go back to review and drop out of the export), and an edit no longer
silently un-rejects. SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from server_helpers import add_project, add_users, nifti_bytes, read_mask, run_jobs, synthetic_volume, upload

SHAPE = (24, 20, 12)


@pytest.fixture(scope="module")
def world(live):
    add_users(live, ["w-rev", "w-ann", "w-adm"])
    pid = add_project(live, "workflow", "otsu", {"w-rev": "reviewer", "w-ann": "annotator", "w-adm": "admin"})
    r = upload(live.client("w-ann"), pid, "w.nii.gz", nifti_bytes(synthetic_volume(SHAPE, seed=11)))
    assert r.status_code == 201, r.text
    run_jobs(live)
    return {"live": live, "pid": pid, "cid": r.json()["cases"][0]["id"]}


def _latest(c, cid):
    return c.get(f"/api/cases/{cid}").json()["latest_version"]


def _edit(c, cid, value: int = 1):
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:4, 1:4, 1:4] = value
    return c.post(f"/api/cases/{cid}/versions", params={"base_version": _latest(c, cid)["id"]}, content=nifti_bytes(mask))


def _exported(c, pid):
    r = c.post(f"/api/projects/{pid}/export")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        return [x["id"] for x in json.loads(zf.read("manifest.json"))["cases"]]


def test_an_annotator_cannot_undo_an_accept(world):
    live, cid, pid = world["live"], world["cid"], world["pid"]
    rev, ann = live.client("w-rev"), live.client("w-ann")
    accepted = rev.post(f"/api/cases/{cid}/accept", json={"version_id": _latest(rev, cid)["id"], "seconds_spent": 3})
    assert accepted.status_code == 200 and accepted.json()["locked"] is True
    mask_before = rev.get(accepted.json()["accepted_version"]["mask_url"]).content
    r = _edit(ann, cid)
    assert r.status_code == 409 and r.json()["locked"] is True, r.text  # was 201: back in review, out of the export
    assert ann.put(f"/api/cases/{cid}/draft", content=nifti_bytes(np.zeros(SHAPE, np.uint8))).status_code == 409
    assert ann.post(f"/api/cases/{cid}/jobs").status_code == 409
    assert _edit(rev, cid).status_code == 409  # reviewers too: reopen first
    case = rev.get(f"/api/cases/{cid}").json()
    assert case["status"] == "accepted" and case["latest_version"]["kind"] == "accepted"
    assert _exported(rev, pid) == [cid]
    np.testing.assert_array_equal(read_mask(rev.get(case["accepted_version"]["mask_url"]).content), read_mask(mask_before))


def test_reopening_needs_the_reviewer_role_and_shows_in_the_versions(world):
    live, cid = world["live"], world["cid"]
    rev, ann, adm = live.client("w-rev"), live.client("w-ann"), live.client("w-adm")
    assert ann.post(f"/api/cases/{cid}/reopen").status_code == 403
    before = rev.get(f"/api/cases/{cid}/versions").json()
    r = rev.post(f"/api/cases/{cid}/reopen", json={"reason": "left border missed"})
    assert r.status_code == 200 and r.json()["status"] == "in_review" and r.json()["locked"] is False
    versions = rev.get(f"/api/cases/{cid}/versions").json()
    assert len(versions) == len(before) + 1
    top = versions[0]
    assert (top["kind"], top["author"], top["base_version_id"]) == ("reopened", "w-rev", before[0]["id"])
    assert rev.get(top["mask_url"]).content == rev.get(before[0]["mask_url"]).content  # same mask, now editable
    assert rev.post(f"/api/cases/{cid}/reopen").status_code == 409  # not locked any more
    audit = adm.get(f"/api/projects/{world['pid']}/audit").json()
    assert any(a["action"] == "reopen" and a["user"] == "w-rev" and a["detail"]["reason"] == "left border missed" for a in audit)
    assert _edit(ann, cid).status_code == 201  # open for edits again
    assert world["cid"] not in _exported(rev, world["pid"])  # in review: not exported until accepted again


def test_a_rejected_case_is_locked_too(world):
    live, cid = world["live"], world["cid"]
    rev, ann, adm = live.client("w-rev"), live.client("w-ann"), live.client("w-adm")
    assert rev.post(f"/api/cases/{cid}/reject", json={"reason": "wrong series"}).status_code == 200
    r = _edit(ann, cid)
    assert r.status_code == 409, r.text  # was 201 and the case silently left 'rejected'
    assert rev.get(f"/api/cases/{cid}").json()["status"] == "rejected"
    assert rev.post(f"/api/cases/{cid}/accept", json={"version_id": _latest(rev, cid)["id"]}).status_code == 409
    assert rev.post(f"/api/cases/{cid}/reject", json={"reason": "wrong series (checked)"}).status_code == 200  # reason updated
    assert adm.post(f"/api/cases/{cid}/reopen").status_code == 200  # project admins may reopen
    assert rev.post(f"/api/cases/{cid}/accept", json={"version_id": _latest(rev, cid)["id"]}).status_code == 200
