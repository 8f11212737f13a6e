"""Fixtures of the browser tests of the review page: a real server with real cases, and Debian's Chromium.

The server is the real app (``create_app`` with its worker thread, SQLite in a temporary folder) served by
uvicorn in a thread on a free loopback port. Cases are uploaded through the API and annotated by the bundled
models (brain-mri, nuclei) before any test runs, so every page test starts from real model proposals.
"""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "server_e2e"
"""Screenshots are also copied here (ignored by git) so they can be looked at after a run."""
PASSWORD = "correct horse battery"

BRAIN_BOXES = {"brain-a": (slice(50, 130), slice(70, 166), slice(70, 126)),
               "brain-b": (slice(60, 140), slice(80, 176), slice(44, 100))}
"""Voxel boxes of the MNI152 2009a T1 (1 mm) uploaded as brain cases (80 x 96 x 56 voxels each)."""
FLIPPED_BRAINS = {"brain-a"}
"""Brain cases stored in LPS voxel order (not RAS): the page must give masks back in the file's own order."""
NUCLEI_BOXES = {"nuclei-a": (slice(0, 160), slice(256, 416)), "nuclei-b": (slice(300, 460), slice(330, 490))}
"""Pixel boxes of the stardist nuclei sample (right half: not seen by the nuclei model in training)."""


@dataclass
class LiveServer:
    """A running server: its URL, database, and the ids of what the fixture created."""

    url: str
    data_dir: Path
    app: object
    password: str = PASSWORD
    projects: dict[str, int] = field(default_factory=dict)
    cases: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, user: str = "alice") -> httpx.Client:
        """An HTTP client logged in as ``user``."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[user]}"}, timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _brain_crops() -> dict[str, bytes]:
    from medannot import samples
    from medannot.data import Geometry, Image
    from medannot.server.imaging import to_nifti_bytes

    t1 = samples.mni152_t1()
    assert np.allclose(t1.geometry.direction, np.eye(3)), "the MNI152 sample is stored RAS"
    out = {}
    for name, box in BRAIN_BOXES.items():
        pixels = t1.array[(slice(None), *box)]
        if name in FLIPPED_BRAINS:  # stored LPS: voxel order reversed along x and y, same world positions
            origin = t1.geometry.index_to_world([box[0].stop - 1, box[1].stop - 1, box[2].start])
            pixels, direction = pixels[:, ::-1, ::-1], np.diag([-1.0, -1.0, 1.0])
        else:
            origin, direction = t1.geometry.index_to_world([s.start for s in box]), np.eye(3)
        crop = Image(np.ascontiguousarray(pixels), Geometry(spacing=t1.geometry.spacing, origin=tuple(origin),
                                                            direction=direction), t1.kind)
        out[name] = to_nifti_bytes(crop)
    return out


def _nuclei_crops() -> dict[str, bytes]:
    """16-bit PNGs (a 2D format: the case is 2D) of crops of the nuclei sample."""
    from PIL import Image as PILImage

    from medannot import samples

    pixels = samples.nuclei_image().scalar()
    out = {}
    for name, box in NUCLEI_BOXES.items():
        buffer = io.BytesIO()
        PILImage.fromarray(np.ascontiguousarray(pixels[box])).save(buffer, format="PNG")
        out[name] = buffer.getvalue()
    return out


def _seed(app: object) -> dict[str, int]:
    """Users alice (admin of both projects) and bob (annotator), projects brain (brain-mri) and nuclei."""
    from medannot.server import store

    ids = {}
    with app.state.ctx.db.write() as s:
        alice = store.add_user(s, "alice", PASSWORD)
        bob = store.add_user(s, "bob", PASSWORD)
        for name, model in (("brain", "brain-mri"), ("nuclei", "nuclei")):
            project = store.add_project(s, name, model)
            store.set_member(s, project, alice, "admin")
            store.set_member(s, project, bob, "annotator")
            s.flush()
            ids[name] = project.id
    return ids


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory):
    """The review server with two projects and four annotated cases; stopped after the module."""
    import uvicorn

    from medannot.server.app import create_app
    from medannot.server.settings import ServerSettings

    data_dir = tmp_path_factory.mktemp("e2e-server")
    settings = ServerSettings(data_dir=data_dir, poll_seconds=0.2, heartbeat_seconds=1.0)
    app = create_app(settings, start_worker=True)
    projects = _seed(app)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    live = LiveServer(url=f"http://127.0.0.1:{port}", data_dir=data_dir, app=app, projects=projects)
    try:
        for user in ("alice", "bob"):
            answer = httpx.post(f"{live.url}/api/login", json={"username": user, "password": PASSWORD})
            answer.raise_for_status()
            live.tokens[user] = answer.json()["token"]
        uploads = [("brain", ".nii.gz", _brain_crops()), ("nuclei", ".png", _nuclei_crops())]
        with live.api() as api:
            for project, suffix, crops in uploads:
                for name, data in crops.items():
                    answer = api.post(f"/api/projects/{projects[project]}/cases",
                                      files={"file": (f"{name}{suffix}", data, "application/octet-stream")})
                    assert answer.status_code == 201, answer.text
                    live.cases[name] = answer.json()["cases"][0]["id"]
            _wait_for_proposals(api, live.cases.values())
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _wait_for_proposals(api: httpx.Client, case_ids: object, timeout: float = 300.0) -> None:
    """Wait until every case has the model's proposal (the worker thread annotates them)."""
    deadline = time.monotonic() + timeout
    pending = set(case_ids)
    while pending:
        for cid in sorted(pending):
            detail = api.get(f"/api/cases/{cid}").json()
            job = detail.get("job") or {}
            assert job.get("state") != "failed", f"annotation job of case {cid} failed: {job}"
            if detail["latest_version"] is not None:
                pending.discard(cid)
        assert time.monotonic() < deadline, f"cases {sorted(pending)} got no proposal in {timeout} s"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless (WebGL 2 by software rendering). Missing chromium is a failure, not a skip."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install chromium (listed in scripts/system_deps.txt)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts(tmp_path: Path, request: pytest.FixtureRequest):
    """``save(page, name)``: a screenshot under the test's tmp dir, copied to test-artifacts/server_e2e/."""

    def save(page: object, name: str) -> Path:
        path = tmp_path / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, ARTIFACTS / path.name)
        return path

    return save
