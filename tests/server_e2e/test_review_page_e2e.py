"""The review page in headless Chromium against the real server: log in, open a case, look, paint, undo,
save, accept, reject, conflicts, drafts and keyboard shortcuts; every result is checked in the server's data
(masks read back with nibabel on the image grid), not only on screen."""

from __future__ import annotations

import gzip
import io
import time

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

pytestmark = pytest.mark.slow

PEN = 3
"""Pen size used for strokes (voxels)."""


def pen_reach_mm(pen: int, spacing_mm: float = 1.0) -> float:
    """How far from the stroke's centre line a pen may paint: NiiVue's pen is a square of 2*(pen//2)+1
    voxels around each voxel of a Bresenham line between the (rounded) mouse positions, so half the
    square's diagonal plus one voxel's diagonal for the rounding."""
    return ((pen // 2) + 1) * np.sqrt(2) * spacing_mm


# --------------------------------------------------------------------------- helpers


def nifti(data: bytes) -> nib.Nifti1Image:
    """A NIfTI image from (gzipped or plain) bytes."""
    return nib.Nifti1Image.from_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def login(page, server, user: str = "alice", next_path: str = "/") -> None:
    page.goto(f"{server.url}{next_path}")
    page.wait_for_url("**/login?next=**")
    page.fill("#username", user)
    page.fill("#password", server.password)
    page.click("#login-button")
    page.locator("body[data-state=idle], body[data-state=ready]").wait_for(state="attached", timeout=60_000)


def open_case(page, case_id: int) -> None:
    page.click(f".case-button[data-case-id='{case_id}']")
    page.locator(f"body[data-state=ready][data-case-id='{case_id}']").wait_for(state="attached", timeout=60_000)


def choose_project(page, project_id: int) -> None:
    page.select_option("#project-select", str(project_id))
    page.locator("#case-list .case-button").first.wait_for(timeout=10_000)


def canvas_box(page) -> dict:
    return page.locator("#viewer-canvas").bounding_box()


def at(page, fx: float, fy: float) -> tuple[float, float]:
    """Page coordinates of the point at fractions (fx, fy) of the viewer canvas."""
    box = canvas_box(page)
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def readout(page) -> tuple[np.ndarray, np.ndarray]:
    """The crosshair shown in the status line: (world mm, RAS voxel)."""
    node = page.locator("#location")
    mm = np.array([float(v) for v in node.get_attribute("data-mm").split(",")])
    vox = np.array([int(v) for v in node.get_attribute("data-vox").split(",")])
    return mm, vox


def click_mm(page, point: tuple[float, float]) -> np.ndarray:
    """Click (Navigate tool) at a page point; return the world position (mm) the page reports for it."""
    before = page.locator("#location").get_attribute("data-mm")
    page.mouse.click(*point)
    for _ in range(100):
        now = page.locator("#location").get_attribute("data-mm")
        if now and now != before:
            break
        time.sleep(0.02)
    return readout(page)[0]


def stroke(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse drag from start to end (paints when the Draw or Erase tool is on)."""
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=4)  # each step repaints the whole mask texture (slow in software GL)
    page.mouse.up()


def wait_text(page, selector: str, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = page.locator(selector).inner_text()
        if text in content:
            return content
        assert time.monotonic() < deadline, f"{selector} shows {content!r}, expected {text!r}"
        time.sleep(0.05)


def wait_count(page, selector: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := page.locator(selector).count()) != count:
        assert time.monotonic() < deadline, f"{now} elements match {selector}, expected {count}"
        time.sleep(0.05)


def stroke_voxels(affine: np.ndarray, a_mm: np.ndarray, b_mm: np.ndarray) -> np.ndarray:
    """Voxel indices (N x 3) on the segment a-b, sampled every 0.25 mm, leaving out 1 mm at both ends."""
    length = float(np.linalg.norm(b_mm - a_mm))
    ts = np.linspace(1.0 / length, 1 - 1.0 / length, max(2, int(length * 4)))
    points = a_mm[None] + ts[:, None] * (b_mm - a_mm)[None]
    ijk = nib.affines.apply_affine(np.linalg.inv(affine), points)
    return np.unique(np.rint(ijk).astype(int), axis=0)


def near_segment(affine: np.ndarray, shape: tuple[int, ...], a_mm: np.ndarray, b_mm: np.ndarray,
                 radius_mm: float, slab_mm: float) -> np.ndarray:
    """Boolean mask of voxels whose centre lies within radius_mm of segment a-b in the slice plane and
    within slab_mm of the slice (the plane holds a and b: same third world coordinate)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    xyz = nib.affines.apply_affine(affine, ijk)
    ab = b_mm - a_mm
    t = np.clip(((xyz - a_mm) @ ab) / (ab @ ab), 0, 1)
    closest = a_mm + t[:, None] * ab
    in_plane = np.linalg.norm((xyz - closest)[:, :2], axis=1) <= radius_mm
    in_slab = np.abs(xyz[:, 2] - a_mm[2]) <= slab_mm
    return (in_plane & in_slab).reshape(shape)


def fetch_mask(api, version: dict) -> nib.Nifti1Image:
    answer = api.get(version["mask_url"])
    assert answer.status_code == 200, answer.text
    return nifti(answer.content)


def canvas_is_rendered(png: bytes) -> tuple[float, float]:
    """(fraction of pixels brighter than the background, grey-level standard deviation) of a screenshot."""
    grey = np.asarray(PILImage.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float((grey > 40).mean()), float(grey.std())


def new_page(browser, server, query: str = ""):
    context = browser.new_context(viewport={"width": 1400, "height": 850})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


# --------------------------------------------------------------------------- tests


def test_login_required_wrong_password_refused_and_annotators_cannot_accept(browser, live_server) -> None:
    context, page, errors = new_page(browser, live_server)
    page.goto(f"{live_server.url}/")
    page.wait_for_url("**/login?next=**")  # no token: the page sends us to the login form
    page.fill("#username", "alice")
    page.fill("#password", "not the password")
    page.click("#login-button")
    page.locator("#login-error").wait_for(state="visible")
    assert "Wrong user name or password" in page.inner_text("#login-error")
    # Bob is an annotator: he may edit but not accept or reject (the server would answer 403).
    page.fill("#username", "bob")
    page.fill("#password", live_server.password)
    page.click("#login-button")
    page.locator("body[data-state=idle]").wait_for(state="attached", timeout=60_000)
    assert page.inner_text("#user-name") == "bob"
    choose_project(page, live_server.projects["brain"])
    assert page.locator("#accept-button").is_disabled() and page.locator("#reject-button").is_disabled()
    assert not page.locator("#save-button").is_disabled()
    assert errors == []
    context.close()


def test_paint_save_accept_changes_the_mask_exactly_where_painted(browser, live_server, artifacts) -> None:
    """Open a brain case, check the viewer renders, scroll slices, paint one stroke of white matter, save,
    accept; the accepted mask differs from the model's proposal on that stroke and nowhere else."""
    case_id = live_server.cases["brain-a"]
    context, page, errors = new_page(browser, live_server)
    login(page, live_server)
    choose_project(page, live_server.projects["brain"])
    open_case(page, case_id)
    assert page.inner_text("#case-status") == "in review"
    assert "in review" in page.locator(f".case-button[data-case-id='{case_id}']").inner_text()  # list follows
    assert "brain-mri" in page.inner_text("#provenance")  # provenance: the model that proposed the mask
    assert page.locator("#version-list li").count() == 1

    fraction, spread = canvas_is_rendered(page.locator("#viewer-canvas").screenshot())
    assert fraction > 0.15 and spread > 20, f"viewer looks blank: {fraction:.2f} bright, std {spread:.1f}"
    artifacts(page, "opened")

    page.keyboard.press("v")  # 3 planes -> axial only
    assert page.get_attribute("body", "data-view") == "axial"
    click_mm(page, at(page, 0.45, 0.55))
    start_vox = readout(page)[1]
    for _ in range(3):
        page.keyboard.press("ArrowUp")
    moved_mm, moved_vox = readout(page)
    assert moved_vox[2] == start_vox[2] + 3  # three slices up
    page.keyboard.press("PageDown")
    last_mm, last_vox = readout(page)
    assert last_vox[2] == start_vox[2] - 7
    assert last_mm[2] == pytest.approx(moved_mm[2] - 10, abs=1e-3)  # 1 mm slices

    a_point, b_point = at(page, 0.40, 0.42), at(page, 0.62, 0.56)
    a_mm, b_mm = click_mm(page, a_point), click_mm(page, b_point)
    assert a_mm[2] == pytest.approx(b_mm[2])  # both on the shown axial slice
    assert page.input_value("#pen-size") == str(PEN)
    page.keyboard.press("2")  # label 2 (white matter); picking a label switches to the Draw tool
    assert page.get_attribute("body", "data-tool") == "draw"
    stroke(page, a_point, b_point)
    assert page.get_attribute("body", "data-dirty") == "true"
    artifacts(page, "painted")

    page.keyboard.press("Control+s")
    wait_text(page, "#save-state", "saved as v2")
    page.keyboard.press("a")
    wait_text(page, "#case-status", "accepted")
    page.locator("#effort-section").wait_for(state="visible")
    artifacts(page, "accepted")

    with live_server.api() as api:
        detail = api.get(f"/api/cases/{case_id}").json()
        versions = api.get(f"/api/cases/{case_id}/versions").json()
        image = nifti(api.get(f"/api/cases/{case_id}/image").content)
        proposal = fetch_mask(api, versions[-1])
        accepted = fetch_mask(api, detail["accepted_version"])
    assert [v["kind"] for v in versions] == ["accepted", "edit", "proposal"]
    assert versions[1]["author"] == "alice"
    # The page's export is on the image grid: same shape and affine as the case image, which is stored LPS
    # (NiiVue shows it RAS and must write the mask back in the file's voxel order).
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
    assert accepted.shape == image.shape[:3]
    np.testing.assert_allclose(accepted.affine, image.affine, atol=1e-4)
    before = np.asarray(proposal.dataobj)
    after = np.asarray(accepted.dataobj)
    changed = before != after
    assert changed.sum() > 0
    assert set(np.unique(after[changed])) == {2}  # everything that changed became white matter
    # Every voxel on the stroke's centre line is white matter now...
    line = stroke_voxels(accepted.affine, a_mm, b_mm)
    assert (after[tuple(line.T)] == 2).all()
    # ... and nothing changed farther than the pen from the stroke, or off its slice.
    allowed = near_segment(accepted.affine, accepted.shape, a_mm, b_mm, radius_mm=pen_reach_mm(PEN), slab_mm=0.5)
    assert not (changed & ~allowed).any(), f"{int((changed & ~allowed).sum())} voxels changed away from the stroke"
    assert detail["status"] == "accepted"
    assert detail["effort"]["voxels_changed"] == int(changed.sum())
    assert 0 < detail["effort"]["dice"] < 1
    assert detail["effort"]["seconds"] > 0
    assert page.locator("#effort").inner_text().count(str(int(changed.sum()))) == 1
    assert errors == []
    context.close()


def test_undo_removes_a_stroke_before_saving(browser, live_server, artifacts) -> None:
    """On a 2D nuclei case: stroke 1, Ctrl+Z, stroke 2, save. The saved mask keeps stroke 2 only."""
    case_id = live_server.cases["nuclei-a"]
    context, page, errors = new_page(browser, live_server)
    login(page, live_server)
    choose_project(page, live_server.projects["nuclei"])
    open_case(page, case_id)
    assert page.get_attribute("body", "data-view") == "axial"  # a 2D image is shown as one plane

    first = (at(page, 0.35, 0.25), at(page, 0.65, 0.30))
    second = (at(page, 0.30, 0.70), at(page, 0.70, 0.75))
    first_mm = [click_mm(page, p) for p in first]
    second_mm = [click_mm(page, p) for p in second]
    page.keyboard.press("]")  # pen 3 -> 4
    assert page.input_value("#pen-size") == "4"
    page.keyboard.press("e")  # erase: paint background
    assert page.get_attribute("body", "data-tool") == "erase"
    stroke(page, *first)
    page.keyboard.press("Control+z")
    stroke(page, *second)
    page.click("#save-button")
    wait_text(page, "#save-state", "saved as v2")
    artifacts(page, "undo-then-second-stroke")

    with live_server.api() as api:
        versions = api.get(f"/api/cases/{case_id}/versions").json()
        proposal = fetch_mask(api, versions[-1])
        saved = fetch_mask(api, versions[0])
    before, after = np.asarray(proposal.dataobj), np.asarray(saved.dataobj)
    changed = before != after
    assert set(np.unique(after[changed])) <= {0}
    first_line = stroke_voxels(saved.affine, *first_mm)
    assert (after[tuple(first_line.T)] == before[tuple(first_line.T)]).all(), "the undone stroke was saved"
    second_line = stroke_voxels(saved.affine, *second_mm)
    assert (after[tuple(second_line.T)] == 0).all()
    assert (before[tuple(second_line.T)] > 0).any(), "stroke 2 crossed no nucleus: the test proves nothing"
    allowed = near_segment(saved.affine, saved.shape, *second_mm, radius_mm=pen_reach_mm(4), slab_mm=0.5)
    assert changed.sum() > 0 and not (changed & ~allowed).any()
    assert errors == []
    context.close()


def test_saving_on_a_stale_version_shows_the_conflict(browser, live_server, artifacts) -> None:
    """Alice opens a case; Bob saves a version first; Alice's save gets 409: the page says so and loads Bob's."""
    case_id = live_server.cases["brain-b"]
    context, page, errors = new_page(browser, live_server)
    login(page, live_server)
    choose_project(page, live_server.projects["brain"])
    open_case(page, case_id)

    with live_server.api("bob") as bob:
        v1 = bob.get(f"/api/cases/{case_id}").json()["latest_version"]
        mask = fetch_mask(bob, v1)
        data = np.asarray(mask.dataobj).copy()
        data[data.shape[0] // 2, data.shape[1] // 2, :] = 1
        edited = gzip.compress(nib.Nifti1Image(data, mask.affine, mask.header).to_bytes())
        answer = bob.post(f"/api/cases/{case_id}/versions", params={"base_version": v1["id"]}, content=edited,
                          headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code == 201, answer.text

    page.keyboard.press("d")
    stroke(page, at(page, 0.3, 0.3), at(page, 0.4, 0.35))
    page.keyboard.press("Control+s")
    banner = page.locator("#banner")
    banner.wait_for(state="visible")
    text = banner.inner_text()
    assert "Version 2 was saved by bob" in text and "NOT saved" in text
    wait_text(page, "#save-state", "not saved: conflict")
    artifacts(page, "conflict")
    page.click("#load-latest")
    banner.wait_for(state="hidden")
    wait_text(page, "#save-state", "v2 loaded")
    assert page.locator("#version-list li").count() == 2
    with live_server.api() as api:
        versions = api.get(f"/api/cases/{case_id}/versions").json()
    assert [(v["number"], v["author"]) for v in versions][0] == (2, "bob")  # nothing of Alice's overwrote it
    assert len(versions) == 2
    assert errors == []
    context.close()


def test_draft_autosave_restore_keyboard_help_and_reject(browser, live_server, artifacts) -> None:
    """Autosaved draft comes back after a reload; the help overlay lists the shortcuts; R rejects."""
    case_id = live_server.cases["nuclei-b"]
    context, page, errors = new_page(browser, live_server)
    login(page, live_server, next_path="/?autosave=1")
    choose_project(page, live_server.projects["nuclei"])
    open_case(page, case_id)
    page.keyboard.press("1")
    stroke(page, at(page, 0.3, 0.5), at(page, 0.7, 0.5))
    wait_text(page, "#save-state", "draft autosaved", timeout=10)
    with live_server.api() as api:
        draft = api.get(f"/api/cases/{case_id}/draft")
        latest = api.get(f"/api/cases/{case_id}").json()["latest_version"]
        proposal = np.asarray(fetch_mask(api, latest).dataobj)
    assert draft.status_code == 200
    drafted = np.asarray(nifti(draft.content).dataobj)
    assert drafted.shape == proposal.shape and (drafted != proposal).sum() > 0

    page.reload()  # the URL keeps the case: it reopens with the draft
    page.locator(f"body[data-state=ready][data-case-id='{case_id}']").wait_for(state="attached", timeout=60_000)
    assert "Restored your unsaved draft" in page.locator("#banner").inner_text()
    assert page.get_attribute("body", "data-dirty") == "true"

    page.keyboard.press("?")
    help_box = page.locator("#help")
    help_box.wait_for(state="visible")
    assert page.locator("#shortcut-table tr").count() >= 15
    assert "undo the last stroke" in help_box.inner_text()
    artifacts(page, "help")
    page.keyboard.press("Escape")
    help_box.wait_for(state="hidden")
    for key, tool in (("d", "draw"), ("e", "erase"), ("n", "navigate")):
        page.keyboard.press(key)
        assert page.get_attribute("body", "data-tool") == tool
    page.click("#discard-draft")
    wait_text(page, "#save-state", "v1 loaded")
    with live_server.api() as api:
        assert api.get(f"/api/cases/{case_id}/draft").status_code == 404

    page.keyboard.press("r")
    page.locator("#reject-dialog").wait_for(state="visible")
    page.fill("#reject-reason", "out of focus")
    page.keyboard.press("Enter")
    wait_text(page, "#case-status", "rejected")
    with live_server.api() as api:
        assert api.get(f"/api/cases/{case_id}").json()["status"] == "rejected"
    page.select_option("#status-filter", "rejected")
    wait_count(page, "#case-list .case-button", 1)  # only the rejected case is listed
    assert page.locator(f".case-button[data-case-id='{case_id}']").count() == 1
    page.fill("#case-search", "no such case")
    wait_count(page, "#case-list .case-button", 0)
    page.fill("#case-search", "NUCLEI-B")  # name search ignores case
    wait_count(page, "#case-list .case-button", 1)
    assert errors == []
    context.close()


def test_accepted_case_is_locked_until_a_reviewer_reopens_it(browser, live_server, artifacts) -> None:
    """An accepted case shows Reopen to reviewers and admins only; reopening puts it back in review with a
    'reopened' version on top of the list, and the server has the same."""
    case_id = live_server.cases["brain-b"]
    with live_server.api() as api:
        detail = api.get(f"/api/cases/{case_id}").json()
        if not detail["locked"]:
            answer = api.post(f"/api/cases/{case_id}/accept", json={"version_id": detail["latest_version"]["id"]})
            assert answer.status_code == 200, answer.text
    context, page, errors = new_page(browser, live_server)
    page.goto(f"{live_server.url}/")
    page.wait_for_url("**/login?next=**")
    page.fill("#username", "bob")  # an annotator: no Reopen button (the server would answer 403)
    page.fill("#password", live_server.password)
    page.click("#login-button")
    page.locator("body[data-state=idle]").wait_for(state="attached", timeout=60_000)
    choose_project(page, live_server.projects["brain"])
    open_case(page, case_id)
    assert page.locator("#reopen-button").is_hidden()
    context.close()
    context, page, errors = new_page(browser, live_server)
    login(page, live_server)
    choose_project(page, live_server.projects["brain"])
    open_case(page, case_id)
    page.locator("#reopen-button").wait_for(state="visible")
    page.click("#reopen-button")
    wait_text(page, "#case-status", "review")
    page.locator("#version-list li[data-kind=reopened]").first.wait_for(timeout=10_000)
    assert page.locator("#reopen-button").is_hidden()
    artifacts(page, "reopened")
    with live_server.api() as api:
        versions = api.get(f"/api/cases/{case_id}/versions").json()
        assert versions[0]["kind"] == "reopened" and versions[0]["author"] == "alice"
        assert api.get(f"/api/cases/{case_id}").json()["status"] == "in_review"
    assert errors == []
    context.close()
