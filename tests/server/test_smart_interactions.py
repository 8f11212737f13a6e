"""The Smart tool's API (issue 11 item 5), SQLite and PostgreSQL: clicks and boxes on a case give the mask of one
object per session from the project's engine, undo drops the last interaction, bad prompts are one line and record
nothing, a locked case refuses, and every interaction counts in the case's effort."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from server_helpers import add_project, add_users, nifti_bytes, run_jobs, synthetic_volume, upload

from medannot.tasks.promptable import default_engine

SHAPE = (24, 20, 12)
BLOCK = (slice(6, 14), slice(5, 12), slice(3, 8))
"""The bright block of :func:`synthetic_volume` (SYNTHETIC test data; identity affine: mm = voxel)."""


def _mask(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/gzip"
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(r.content)).dataobj)


@pytest.fixture(scope="module")
def smart(live):
    add_users(live, ["sm-admin", "sm-rev"])
    pid = add_project(live, "smart-api", None, {"sm-admin": "admin", "sm-rev": "reviewer"}, labels="1=object,2=other")
    r = upload(live.client("sm-admin"), pid, "block.nii.gz", nifti_bytes(synthetic_volume(SHAPE, seed=3)))
    assert r.status_code == 201, r.text
    run_jobs(live)
    return {"live": live, "pid": pid, "cid": r.json()["cases"][0]["id"]}


def test_clicks_undo_and_counts(smart):
    live, cid = smart["live"], smart["cid"]
    c = live.client("sm-admin")
    url = f"/api/cases/{cid}/interactions"
    truth = np.zeros(SHAPE, bool)
    truth[BLOCK] = True
    first = c.post(url, json={"kind": "point", "point": [10, 8, 5], "label": 1})
    one = _mask(first)
    assert one.shape == SHAPE and set(np.unique(one)) <= {0, 1}
    assert first.headers["X-Session"] == "1" and int(first.headers["X-Voxels"]) == int(one.sum())
    assert 2 * (one.astype(bool) & truth).sum() / (one.sum() + truth.sum()) > 0.8  # one click finds the block
    second = c.post(url, json={"session": 1, "kind": "point", "point": [2, 2, 2], "positive": False, "label": 1})
    _mask(second)
    assert (second.headers["X-Session"], second.headers["X-Seq"]) == ("1", "2")
    undo = c.post(f"{url}/undo", json={"session": 1})
    np.testing.assert_array_equal(_mask(undo), one)  # back to the mask of the first click
    assert undo.headers["X-Remaining"] == "1"
    empty = c.post(f"{url}/undo", json={"session": 1})
    assert empty.headers["X-Remaining"] == "0" and _mask(empty).sum() == 0
    assert c.post(f"{url}/undo", json={"session": 1}).status_code == 404  # nothing left to undo
    box = c.post(url, json={"kind": "box", "box": [[5, 4, 2], [15, 13, 9]], "label": 2})
    assert box.headers["X-Session"] == "2" and _mask(box)[BLOCK].mean() > 0.8  # a new object
    listed = c.get(url).json()
    assert listed["counts"] == {"clicks": 2, "boxes": 1, "undone": 2, "sessions": 2}
    assert [(i["session"], i["seq"], i["kind"], i["undone"]) for i in listed["interactions"]] == [
        (1, 1, "point", True), (1, 2, "point", True), (2, 1, "box", False)]
    # the project's default engine, auto: the default of a 3D case, recorded by its name
    assert listed["interactions"][0]["engine"] == default_engine(3) != "auto"


def test_bad_prompts_are_one_line_and_record_nothing(smart):
    live, cid = smart["live"], smart["cid"]
    c = live.client("sm-admin")
    url = f"/api/cases/{cid}/interactions"
    before = c.get(url).json()["counts"]
    for body, words in (
        ({"kind": "point", "point": [100, 8, 5], "label": 1}, "outside the image"),
        ({"kind": "point", "point": [10, 8], "label": 1}, "give 3 coordinates"),
        ({"kind": "box", "box": [[5, 4, 2], [5, 4, 2]], "label": 1}, "zero size"),
        ({"kind": "point", "point": [10, 8, 5], "label": 7}, "not in the project's label map"),
        ({"kind": "point", "label": 1}, "needs 'point' coordinates"),
    ):
        r = c.post(url, json=body)
        assert r.status_code == 422 and words in r.json()["detail"] and "\n" not in r.json()["detail"], (body, r.text)
    assert c.post(url, json={"kind": "point", "point": [10, "nan", 5], "label": 1}).status_code == 422
    assert c.get(url).json()["counts"] == before


def test_interactions_count_in_the_effort_and_a_locked_case_refuses(smart):
    live, cid = smart["live"], smart["cid"]
    c, rev = live.client("sm-admin"), live.client("sm-rev")
    url = f"/api/cases/{cid}/interactions"
    r = c.post(url, json={"kind": "point", "point": [10, 8, 5], "label": 1})
    mask = _mask(r)
    saved = c.post(f"/api/cases/{cid}/versions", content=nifti_bytes(mask.astype(np.uint8)))
    assert saved.status_code == 201, saved.text
    accepted = rev.post(f"/api/cases/{cid}/accept", json={"version_id": saved.json()["id"], "seconds_spent": 12})
    assert accepted.status_code == 200, accepted.text
    effort = accepted.json()["effort"]
    assert (effort["clicks"], effort["boxes"], effort["undone"], effort["sessions"]) == (3, 1, 2, 3)
    assert effort["proposal"] == "none" and effort["voxels_changed"] == int(mask.sum())
    r = c.post(url, json={"kind": "point", "point": [10, 8, 5], "label": 1})
    assert r.status_code == 409 and r.json()["locked"] is True
    assert c.post(f"{url}/undo", json={"session": 3}).status_code == 409
