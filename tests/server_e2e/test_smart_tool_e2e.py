"""The Smart tool in headless Chromium against the real server (issue 11 item 5), on a project that starts from
nothing (issue 12 item 1): click inside a real nucleus, drag a box around another, a negative shift-click, a
negative right click undone with Ctrl+Z, save, accept. Every result is checked in the server's data: the saved
mask against the hand-drawn nuclei of the stardist sample, the recorded interactions and the case's effort."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy import ndimage as ndi
from test_review_page_e2e import at, choose_project, click_mm, fetch_mask, login, new_page, open_case, readout

pytestmark = pytest.mark.slow

CROP = (slice(320, 448), slice(256, 384))
"""A 128x128 crop of the right half of the nuclei sample (no bundled model or engine tuning saw it)."""


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


@pytest.fixture(scope="module")
def smart_case(live_server):
    """Project 'from-nothing' (no model, 1 = nucleus; alice admin) with the crop uploaded; the job only embeds it."""
    from medannot import samples
    from medannot.server import store
    from medannot.server.models import User

    pixels = np.ascontiguousarray(samples.nuclei_image().scalar()[CROP])
    instances = samples.nuclei_instances().scalar()[CROP]
    with live_server.app.state.ctx.db.write() as s:
        project = store.add_project(s, "from-nothing", None, "1=nucleus")
        for name, role in (("alice", "admin"), ("bob", "annotator")):
            store.set_member(s, project, s.query(User).filter_by(username=name).one(), role)
        s.flush()
        pid = project.id
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    with live_server.api() as api:
        r = api.post(f"/api/projects/{pid}/cases", files={"file": ("smart-crop.png", buffer.getvalue(), "image/png")})
        assert r.status_code == 201, r.text
        cid = r.json()["cases"][0]["id"]
        deadline = time.monotonic() + 120
        while api.get(f"/api/cases/{cid}").json()["job"]["state"] != "done":
            assert time.monotonic() < deadline, "the embedding job did not finish"
            time.sleep(0.3)
        assert api.get(f"/api/cases/{cid}").json()["latest_version"] is None  # no model: nothing proposed
    # the two largest nuclei that do not touch the crop's border
    ids, sizes = np.unique(instances[instances > 0], return_counts=True)
    inside = [(n, i) for i, n in zip(ids, sizes) if not np.isin(i, np.concatenate([instances[0], instances[-1], instances[:, 0],
                                                                                     instances[:, -1]]))]
    (_, a), (_, b) = sorted(inside, reverse=True)[:2]
    return {"pid": pid, "cid": cid, "a": instances == a, "b": instances == b, "instances": instances}


def _centre(mask: np.ndarray) -> tuple[int, int]:
    dist = ndi.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(dist)), mask.shape))


def _calibrate(page):
    """Canvas fractions -> voxel (row, column) of the shown 2D case, from two Navigate clicks (a linear map per axis)."""
    p1, p2 = (0.35, 0.35), (0.65, 0.65)
    click_mm(page, at(page, *p1))
    v1 = readout(page)[1][:2].astype(float)
    click_mm(page, at(page, *p2))
    v2 = readout(page)[1][:2].astype(float)
    scale = (v2 - v1) / (np.array(p2) - np.array(p1))  # voxel axis 0 (x) is shown across, axis 1 (y) up and down

    def to_page(voxel: tuple[int, int]) -> tuple[float, float]:
        frac = np.array(p1) + (np.asarray(voxel, float) - v1) / scale
        return at(page, float(frac[0]), float(frac[1]))

    return to_page


def _wait_smart(page, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if page.get_attribute("body", "data-smart-busy") == "false" and page.get_attribute("body", "data-smart-count") == str(count):
            return
        assert time.monotonic() < deadline, (f"smart count {page.get_attribute('body', 'data-smart-count')} "
                                             f"(busy {page.get_attribute('body', 'data-smart-busy')}), expected {count}; "
                                             f"{page.inner_text('#message')}")
        time.sleep(0.05)


def test_smart_tool_clicks_box_negative_undo_save_accept(browser, live_server, smart_case, artifacts) -> None:
    pid, cid = smart_case["pid"], smart_case["cid"]
    context, page, errors = new_page(browser, live_server)
    login(page, live_server)
    choose_project(page, pid)
    open_case(page, cid)
    assert "no model yet" in page.inner_text("#message")
    assert "nothing yet" in page.inner_text("#model-facts")
    to_page = _calibrate(page)

    page.keyboard.press("s")
    assert page.get_attribute("body", "data-tool") == "smart"
    a_centre = _centre(smart_case["a"])
    page.mouse.click(*to_page(a_centre))  # positive click inside nucleus A
    _wait_smart(page, 1)
    artifacts(page, "smart-click")

    page.keyboard.press("o")  # next object: a box around nucleus B
    rows, cols = np.nonzero(smart_case["b"])
    corner1, corner2 = to_page((rows.min() - 3, cols.min() - 3)), to_page((rows.max() + 3, cols.max() + 3))
    page.mouse.move(*corner1)
    page.mouse.down()
    page.mouse.move(*corner2, steps=5)
    page.mouse.up()
    _wait_smart(page, 1)
    assert "Smart:" in page.inner_text("#message")
    background = np.argwhere(ndi.binary_dilation(smart_case["b"], iterations=6) & ~ndi.binary_dilation(smart_case["b"], iterations=3)
                             & (smart_case["instances"] == 0))
    page.keyboard.down("Shift")
    page.mouse.click(*to_page(tuple(background[0])))  # negative shift-click just outside B
    page.keyboard.up("Shift")
    _wait_smart(page, 2)
    page.mouse.click(*to_page(tuple(background[-1])), button="right")  # negative right click ...
    _wait_smart(page, 3)
    page.keyboard.press("Control+z")  # ... undone: the server drops it from the object
    _wait_smart(page, 2)
    artifacts(page, "smart-box-negative-undo")

    page.click("#save-button")
    deadline = time.monotonic() + 30
    while "saved as v1" not in page.inner_text("#save-state"):
        assert time.monotonic() < deadline, page.inner_text("#save-state") + " / " + page.inner_text("#message")
        time.sleep(0.05)
    with live_server.api() as api:
        versions = api.get(f"/api/cases/{cid}/versions").json()
        saved = np.asarray(fetch_mask(api, versions[0]).dataobj)[..., 0]
        counts = api.get(f"/api/cases/{cid}/interactions").json()["counts"]
    assert versions[0]["kind"] == "edit" and set(np.unique(saved)) <= {0, 1}
    objects = smart_case["a"] | smart_case["b"]
    near = ndi.binary_dilation(objects, iterations=8)
    assert _dice((saved > 0) & ndi.binary_dilation(smart_case["a"], iterations=8), smart_case["a"]) > 0.6
    assert _dice((saved > 0) & ndi.binary_dilation(smart_case["b"], iterations=8), smart_case["b"]) > 0.6
    assert ((saved > 0) & ~near).sum() < 0.2 * objects.sum(), "the Smart tool painted far from the two nuclei"
    assert counts == {"clicks": 3, "boxes": 1, "undone": 1, "sessions": 2}

    page.click("#accept-button")
    deadline = time.monotonic() + 30
    while page.inner_text("#case-status") != "accepted":
        assert time.monotonic() < deadline, page.inner_text("#message")
        time.sleep(0.05)
    with live_server.api() as api:
        detail = api.get(f"/api/cases/{cid}").json()
    effort = detail["effort"]
    assert (effort["clicks"], effort["boxes"], effort["undone"], effort["proposal"]) == (3, 1, 1, "none")
    assert effort["voxels_changed"] == int((saved > 0).sum()) and detail["split"] == "val"  # the first accepted case validates
    assert "3 / 1" in page.inner_text("#effort")
    artifacts(page, "smart-accepted")
    assert errors == []
    context.close()


def test_train_button_gates_v1_and_the_list_shows_who_proposed(browser, live_server, smart_case, artifacts) -> None:
    """After the Smart-tool case was accepted, two more cases are accepted (their hand-drawn masks, through the API);
    the project admin presses Train on the page: the worker thread trains v1, the gate makes it active, the model panel
    shows it with its validation Dice and the unreviewed case gets a proposal from v1."""
    import gzip

    import nibabel as nib

    from medannot import samples
    from medannot.server.models import Project

    pid = smart_case["pid"]
    with live_server.app.state.ctx.db.write() as s:  # a round of a few steps of a small network: the loop, not the learning
        s.get(Project, pid).settings = {"recipe": {"epochs": 1, "iterations_per_epoch": 4, "batch_size": 2, "channels": [8, 16],
                                                   "num_threads": 1}, "min_cases": 3, "val_fraction": 0.25}
    image, truth = samples.nuclei_image().scalar(), (samples.nuclei_instances().scalar() > 0).astype(np.uint8)
    ids = []
    with live_server.api() as api:
        for k, box in enumerate([(slice(320, 384), slice(384, 448)), (slice(384, 448), slice(384, 448)), (slice(448, 512), slice(384, 448))]):
            buffer = io.BytesIO()
            PILImage.fromarray(np.ascontiguousarray(image[box])).save(buffer, format="PNG")
            r = api.post(f"/api/projects/{pid}/cases", files={"file": (f"more-{k}.png", buffer.getvalue(), "image/png")})
            ids.append(r.json()["cases"][0]["id"])
        for cid, box in zip(ids[:2], [(slice(320, 384), slice(384, 448)), (slice(384, 448), slice(384, 448))]):
            stored = nib.Nifti1Image.from_bytes(gzip.decompress(api.get(f"/api/cases/{cid}/image").content))
            mask = nib.Nifti1Image(truth[box][..., None], stored.affine).to_bytes()
            version = api.post(f"/api/cases/{cid}/versions", content=mask).json()
            assert api.post(f"/api/cases/{cid}/accept", json={"version_id": version["id"]}).status_code == 200
    context, page, errors = new_page(browser, live_server)
    login(page, live_server)
    choose_project(page, pid)
    assert page.locator("#train-button").is_visible()
    page.click("#train-button")
    deadline = time.monotonic() + 240
    while "v1 active" not in page.inner_text("#model-list"):
        assert time.monotonic() < deadline, page.inner_text("#model-facts") + " / " + page.inner_text("#message")
        time.sleep(0.5)
    assert "val Dice" in page.inner_text("#model-list") and "gate:" in page.inner_text("#model-list")
    assert "v1" in page.inner_text("#model-facts")  # proposing now
    deadline = time.monotonic() + 120
    unreviewed = f".case-button[data-case-id='{ids[2]}']"
    while "proposed by v1" not in page.inner_text(unreviewed):
        assert time.monotonic() < deadline, page.inner_text(unreviewed)
        page.select_option("#status-filter", "pending")  # refreshes the list
        page.select_option("#status-filter", "")
        time.sleep(0.5)
    open_case(page, ids[2])
    assert "from-nothing v1" in page.inner_text("#provenance")  # which version proposed this case
    artifacts(page, "trained-v1")
    assert errors == []
    context.close()
