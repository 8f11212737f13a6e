"""Concurrent writers on SQLite and PostgreSQL: two reviewers saving on the same base (one wins, the other
gets 409 with the winner's version, nothing is lost), and 20 simultaneous uploads with one Idempotency-Key
(one case, one job, twenty identical answers)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from server_helpers import add_project, add_users, nifti_bytes, read_mask, run_jobs, synthetic_volume, upload
from sqlalchemy import func, select

from medannot.server.models import CaseRecord, IdempotencyKey, Job

AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def world(live):
    add_users(live, ["c1", "c2", "cu"])
    pid = add_project(live, "concurrency", "otsu", {"c1": "reviewer", "c2": "reviewer", "cu": "annotator"})
    r = upload(live.client("cu"), pid, "v.nii.gz", nifti_bytes(synthetic_volume(seed=3), AFFINE))
    assert r.status_code == 201
    run_jobs(live)
    return pid, r.json()["cases"][0]["id"]


def _fresh_client(live, user):  # one connection per thread: real concurrency, not one shared client
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.tokens[user]}"}, timeout=120)


def test_two_reviewers_save_the_same_version_at_once(live, world):
    _, cid = world
    shape = synthetic_volume().shape
    for round_ in range(4):
        base = live.client("c1").get(f"/api/cases/{cid}").json()["latest_version"]["id"]
        edits = {}
        for user, value in (("c1", 1), ("c2", 1)):
            m = np.zeros(shape, np.uint8)
            m[(slice(None),) * 2 + (slice(round_ * 2 + (user == "c2"), round_ * 2 + (user == "c2") + 1),)] = value
            edits[user] = m
        barrier = threading.Barrier(2)

        def save(user, edits=edits, barrier=barrier, base=base):  # bound now: the pool runs it within this round
            with _fresh_client(live, user) as c:
                body = nifti_bytes(edits[user], AFFINE)
                barrier.wait()
                return user, c.post(f"/api/cases/{cid}/versions", params={"base_version": base}, content=body)

        with ThreadPoolExecutor(2) as pool:
            results = dict(pool.map(save, ["c1", "c2"]))
        codes = sorted(r.status_code for r in results.values())
        assert codes == [201, 409], {u: (r.status_code, r.text[:200]) for u, r in results.items()}
        winner = next(u for u, r in results.items() if r.status_code == 201)
        loser = "c2" if winner == "c1" else "c1"
        assert results[loser].json()["latest"]["id"] == results[winner].json()["id"]
        # the loser reloads, merges and saves on top: both edits are in the history, in order
        merged = edits[loser] | edits[winner]
        again = live.client(loser).post(f"/api/cases/{cid}/versions", params={"base_version": results[winner].json()["id"]},
                                        content=nifti_bytes(merged, AFFINE))
        assert again.status_code == 201
        versions = live.client(loser).get(f"/api/cases/{cid}/versions").json()
        assert [v["id"] for v in versions[:2]] == [again.json()["id"], results[winner].json()["id"]]
        np.testing.assert_array_equal(read_mask(live.client(loser).get(versions[1]["mask_url"]).content), edits[winner])
        np.testing.assert_array_equal(read_mask(live.client(loser).get(versions[0]["mask_url"]).content), merged)
    numbers = [v["number"] for v in live.client("c1").get(f"/api/cases/{cid}/versions").json()]
    assert numbers == list(range(len(numbers), 0, -1))  # no gap, no duplicate


def test_twenty_concurrent_uploads_with_one_key_make_one_case(live, world):
    pid, _ = world
    data = nifti_bytes(synthetic_volume(seed=11), AFFINE)
    barrier = threading.Barrier(20)

    def send(_):
        with _fresh_client(live, "cu") as c:
            barrier.wait()
            return upload(c, pid, "same.nii.gz", data, key="upload-same-file-1")

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, range(20)))
    assert all(a.status_code == 201 for a in answers), [a.text[:200] for a in answers if a.status_code != 201]
    ids = {tuple(c["id"] for c in a.json()["cases"]) for a in answers}
    assert len(ids) == 1 and len(next(iter(ids))) == 1
    (case_id,) = next(iter(ids))
    with live.db.read() as s:
        assert s.scalar(select(func.count(CaseRecord.id)).where(CaseRecord.project_id == pid, CaseRecord.name == "same")) == 1
        assert s.scalar(select(func.count(Job.id)).where(Job.case_id == case_id)) == 1
        assert s.scalar(select(func.count(IdempotencyKey.id)).where(IdempotencyKey.key == "upload-same-file-1")) == 1
    # a different key (or none) is a different request
    assert upload(live.client("cu"), pid, "same.nii.gz", data, key="upload-same-file-2").json()["cases"][0]["id"] != case_id
