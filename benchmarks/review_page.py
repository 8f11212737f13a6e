"""Benchmark: opening a 256^3 case in the review page (headless Chromium, software WebGL, loopback server).

Ours: from navigating to ``/#project=P&case=C`` (page, scripts, login token already in sessionStorage) until the page
says it is ready: case JSON, versions, draft check, image and mask fetched with the token, both handed to NiiVue,
drawn. Peer: bare NiiVue (the same vendored file) on a blank page of the same origin loading the same image and mask
by URL with the same token (``NVImage.loadFromUrl`` with headers + ``loadDrawing``) - what any NiiVue page pays.
Median of ``--repeat`` opens each, and the ratio. Data are SYNTHETIC (spheres + noise); this says nothing about
accuracy. The issue's target (< 1 s) is for the server's part; see benchmarks/server.py for that.

Usage: ``python benchmarks/review_page.py [--size 256] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import gzip
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PASSWORD = "bench-password"

PEER_SCRIPT = """async ([token, imageUrl, maskUrl]) => {
  const t0 = performance.now();
  const { Niivue, NVImage } = await import("/static/vendor/niivue/niivue.js");
  document.body.innerHTML = '<canvas id="c" style="width:880px;height:680px"></canvas>';
  const nv = new Niivue({ logLevel: "warn" });
  await nv.attachToCanvas(document.getElementById("c"));
  const headers = { Authorization: `Bearer ${token}` };
  const image = await NVImage.loadFromUrl({ url: imageUrl, headers, name: "image.nii.gz", colormap: "gray" });
  nv.addVolume(image);
  const mask = await NVImage.loadFromUrl({ url: maskUrl, headers, name: "mask.nii.gz" });
  nv.loadDrawing(mask);
  nv.drawScene();
  return performance.now() - t0;
}"""


def synthetic_case(size: int) -> tuple[bytes, bytes]:
    """SYNTHETIC image (spheres + noise, int16) and a two-label mask of it, both gzipped NIfTI, 1 mm grid."""
    rng = np.random.default_rng(0)
    grid = np.indices((size,) * 3, dtype=np.float32) - size / 2
    radius = np.sqrt((grid**2).sum(axis=0))
    labels = np.zeros((size,) * 3, dtype=np.uint8)
    labels[radius < size * 0.35] = 1
    labels[radius < size * 0.2] = 2
    image = (labels.astype(np.float32) * 400 + rng.normal(0, 60, labels.shape)).astype(np.int16)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    return (gzip.compress(nib.Nifti1Image(image, affine).to_bytes(), 1),
            gzip.compress(nib.Nifti1Image(labels, affine).to_bytes(), 1))


def start_server(data_dir: Path) -> tuple[str, object, threading.Thread]:
    import uvicorn

    from medannot.server import store
    from medannot.server.app import create_app
    from medannot.server.settings import ServerSettings

    app = create_app(ServerSettings(data_dir=data_dir), start_worker=False)
    with app.state.ctx.db.write() as s:
        user = store.add_user(s, "bench", PASSWORD)
        project = store.add_project(s, "bench", "otsu", labels="1=outer,2=inner")
        store.set_member(s, project, user, "admin")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="voxels per side of the synthetic cube")
    parser.add_argument("--repeat", type=int, default=3, help="opens per side (median reported)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        url, server, thread = start_server(Path(tmp))
        try:
            token = httpx.post(f"{url}/api/login", json={"username": "bench", "password": PASSWORD}).json()["token"]
            api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
            image, mask = synthetic_case(args.size)
            project = api.get("/api/projects").json()[0]["id"]
            case = api.post(f"/api/projects/{project}/cases",
                            files={"file": ("synthetic.nii.gz", image, "application/gzip")}).json()["cases"][0]["id"]
            version = api.post(f"/api/cases/{case}/versions", content=mask,
                               headers={"Content-Type": "application/octet-stream"}).json()
            print(f"SYNTHETIC {args.size}^3 case: image {len(image) / 1e6:.1f} MB, mask {len(mask) / 1e6:.2f} MB (gz)")
            ours, peer = [], []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for _ in range(args.repeat):
                    page = browser.new_page(viewport={"width": 1400, "height": 850})
                    page.goto(f"{url}/login")
                    page.evaluate("([t]) => sessionStorage.setItem('medannot.token', t)", [token])
                    t0 = time.perf_counter()
                    page.goto(f"{url}/#project={project}&case={case}")
                    page.locator(f"body[data-state=ready][data-case-id='{case}']").wait_for(state="attached", timeout=300_000)
                    ours.append(time.perf_counter() - t0)
                    page.close()
                    context = browser.new_context(bypass_csp=True, viewport={"width": 1400, "height": 850})
                    bare = context.new_page()
                    bare.goto(f"{url}/static/vendor/niivue/VENDORED.md")
                    t0 = time.perf_counter()
                    bare.evaluate(PEER_SCRIPT, [token, f"/api/cases/{case}/image", version["mask_url"]])
                    peer.append(time.perf_counter() - t0)
                    context.close()
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    o, p = statistics.median(ours), statistics.median(peer)
    print(f"{'open a case':<44}{'ours (review page)':>20}{'peer (bare NiiVue)':>20}{'ratio':>8}")
    print(f"{'median of ' + str(args.repeat) + ' (s)':<44}{o:>20.2f}{p:>20.2f}{o / p:>8.2f}")


if __name__ == "__main__":
    main()
