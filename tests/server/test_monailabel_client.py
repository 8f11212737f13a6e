"""A medannot project through MONAI Label's own client (``MONAILabelClient`` from PyPI, as 3D Slicer's module uses it).

The client runs in its own environment (``monailabel_env``); the server is the shared live server (SQLite and
PostgreSQL). Shown: login, info, next sample by strategy, image download, infer, label upload, the new version
seen through medannot's own API, and the role rules (annotator may label but not train, a non-member gets 403, an
accepted case refuses labels).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monailabel_env import client_python, run_client
from server_helpers import PASSWORD, add_project, add_users, nifti_bytes, read_mask, synthetic_volume, upload

BLOCK = (slice(6, 14), slice(5, 12), slice(3, 8))
"""Where synthetic_volume puts its bright block (what Otsu finds)."""


@pytest.fixture(scope="module")
def client_env():
    return client_python()


@pytest.fixture(scope="module")
def world(live):
    add_users(live, ["mlc_admin", "mlc_ann", "mlc_rev", "mlc_out"])
    pid = add_project(live, "mlc-brains", "otsu", {"mlc_admin": "admin", "mlc_ann": "annotator", "mlc_rev": "reviewer"})
    add_project(live, "mlc-other", "otsu", {"mlc_out": "annotator"})
    admin = live.client("mlc_admin")
    cases = []
    for seed in range(3):
        r = upload(admin, pid, f"brain{seed}.nii.gz", nifti_bytes(synthetic_volume(seed=seed)))
        assert r.status_code == 201, r.text
        cases.append(r.json()["cases"][0]["id"])
    return {"pid": pid, "cases": cases, "base": f"{live.url}/monailabel/mlc-brains"}


def test_slicer_round_trip_through_the_monailabel_client(live, world, client_env, tmp_path):
    base, cases = world["base"], world["cases"]

    def run(*calls):
        return run_client(client_env, base, tmp_path, PASSWORD, list(calls))

    enabled, info, sample, store = run({"as": None, "op": "auth_enabled"}, {"as": "mlc_ann", "op": "info"},
                                       {"as": "mlc_ann", "op": "next_sample", "args": ["first", {}]},
                                       {"as": "mlc_ann", "op": "datastore"})
    assert enabled == {"ok": True}
    info = info["ok"]
    assert info["name"] == "mlc-brains" and info["labels"] == {"foreground": 1} and "config" not in info
    assert list(info["models"]) == ["otsu"] and info["models"]["otsu"]["labels"] == {"foreground": 1}
    assert {"first", "random"} <= set(info["strategies"]) and info["medannot"]["role"] == "annotator"
    sample = sample["ok"]
    sid = sample["id"]
    assert sid == str(cases[0]) and sample["name"].endswith(".nii.gz") and sample["status"] == "in_review"
    assert set(store["ok"]["objects"]) == {str(c) for c in cases}

    image, inferred = run({"as": "mlc_ann", "op": "download_image", "args": [sid]},
                          {"as": "mlc_ann", "op": "infer", "args": ["otsu", sid, {}]})
    assert image["ok"]["sha256"] == sample["checksum"].split(":")[1]
    assert image["ok"]["cache_control"] == "no-store"
    label_path, params = inferred["ok"]
    assert params["source"] == "model run" and params["label_names"] == {"foreground": 1}
    proposal = read_mask(Path(label_path).read_bytes())
    expected = np.zeros(proposal.shape, np.uint8)
    expected[BLOCK] = 1
    np.testing.assert_array_equal(proposal, expected)

    edited = proposal.copy()
    edited[6:8] = 0  # the annotator erases two slabs of the block
    edited_path = tmp_path / "edited.nii.gz"
    nib.save(nib.Nifti1Image(edited, np.eye(4)), edited_path)
    saved, final, train, valid = run(
        {"as": "mlc_ann", "op": "save_label", "args": [sid, str(edited_path), "", {"label_info": [{"name": "foreground", "idx": 1}]}]},
        {"as": "mlc_ann", "op": "download_label", "args": [sid, "final"]},
        {"as": "mlc_ann", "op": "train_start", "args": ["otsu", {}]},
        {"as": "mlc_ann", "op": "auth_valid_token"})
    version = saved["ok"]["version"]
    assert saved["ok"]["image"] == sid and version["kind"] == "edit" and version["author"] == "mlc_ann"
    np.testing.assert_array_equal(read_mask(Path(final["ok"]).read_bytes()), edited)
    assert train["status"] == 403, train  # an annotator labels but does not train
    assert valid == {"ok": True}

    # the new version, through medannot's own API
    ann = live.client("mlc_ann")
    versions = ann.get(f"/api/cases/{sid}/versions").json()
    assert versions[0]["id"] == version["id"] and versions[0]["kind"] == "edit" and versions[0]["author"] == "mlc_ann"
    np.testing.assert_array_equal(read_mask(ann.get(versions[0]["mask_url"]).content), edited)
    assert ann.get(f"/api/cases/{sid}").json()["status"] == "in_review"

    # accepted cases are locked; roles per project
    rev = live.client("mlc_rev")
    assert rev.post(f"/api/cases/{sid}/accept", json={"version_id": version["id"]}).status_code == 200
    locked, rev_train, admin_train, outsider, nxt, store, final = run(
        {"as": "mlc_ann", "op": "save_label", "args": [sid, str(edited_path), "", {}]},
        {"as": "mlc_rev", "op": "train_start", "args": ["otsu", {}]},
        {"as": "mlc_admin", "op": "train_start", "args": ["otsu", {}]},
        {"as": "mlc_out", "op": "info"},
        {"as": "mlc_rev", "op": "next_sample", "args": ["random", {}]},
        {"as": "mlc_rev", "op": "datastore"},
        {"as": "mlc_rev", "op": "download_label", "args": [sid, "final"]})
    assert locked["status"] == 409 and "locked" in locked["error"]
    assert rev_train["status"] == 403
    assert admin_train["status"] == 422 and "accept more cases" in admin_train["error"]  # the learning loop's queue: 1 accepted case
    assert outsider["status"] == 403
    assert nxt["ok"]["id"] in {str(c) for c in cases[1:]}
    assert len(ann.get(f"/api/cases/{sid}/versions").json()) == len(versions) + 1  # the accept, not the refused save
    listed = store["ok"]["objects"][sid]["labels"]["final"]["info"]  # the accepted version, with the download's checksum
    data = Path(final["ok"]).read_bytes()
    assert listed["kind"] == "accepted" and listed["checksum"] == "SHA256:" + hashlib.sha256(data).hexdigest()
    np.testing.assert_array_equal(read_mask(data), edited)


def test_wrong_password_is_refused_by_the_client_login(live, world, client_env, tmp_path):
    [result] = run_client(client_env, world["base"], tmp_path, "not-the-password", [{"as": "mlc_ann", "op": "info"}])
    assert result.get("login") and result["status"] == 401

