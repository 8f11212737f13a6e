"""Benchmark: the review server (uvicorn + SQLite, loopback) on a synthetic 256^3 case.

1. Case page: the time to fetch what the review page needs to open a case - the case JSON, the image
   (gzipped NIfTI) and the latest mask - over HTTP, median of ``--repeat`` opens (target < 1 s), next to
   reading the same two files straight from disk (the floor any server sits on).
2. Saves: ``--reviewers`` concurrent reviewers (threads, one HTTP connection each) save edited masks for
   ``--seconds`` (default 60) on ``--cases`` cases (several reviewers per case, so conflicts happen): each
   save is ``POST /versions?base_version=<latest>``; on 409 the reviewer takes the latest from the answer
   and saves again. Reports requests/s, p50/p95 latency, 409s, errors (anything else), then checks that no
   acknowledged write was lost: every version answered 201 is in the database with exactly the voxels sent,
   and version numbers per case have no gap. Baseline: the same threads writing the same masks as plain
   files (temporary file + fsync + rename) with no server, and the ratio.

All data are synthetic (spheres + noise, named synthetic); nothing here measures annotation accuracy.

3. ``--hostile`` (instead of 1 and 2): the hostile requests of issue 14 - gzip bombs as masks, drafts and uploads,
   300 MiB of JSON to the login - each against a fresh server: status, time, and the server's RSS (psutil) before
   and at its peak, and the size of a stored mask.

Usage: ``python benchmarks/server.py [--seconds 60] [--reviewers 50] [--cases 10] [--size 256] [--repeat 5] [--hostile]``
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np

PASSWORD = "bench-password"


def synthetic_case(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic int16 volume (two spheres on a smooth background with noise) and its 2-label mask."""
    rng = np.random.default_rng(seed)
    g = np.indices((size,) * 3, dtype=np.float32) - size / 2
    r = np.sqrt((g**2).sum(0))
    inner = r < size * 0.18
    outer = (r < size * 0.35) & ~inner
    image = (200 + 300 * inner + 150 * outer + rng.normal(0, 20, r.shape)).astype(np.int16)
    mask = (inner * 1 + outer * 2).astype(np.uint8)
    return image, mask


def nifti_gz(array: np.ndarray) -> bytes:
    return gzip.compress(nib.Nifti1Image(array, np.eye(4)).to_bytes(), compresslevel=1)


def edited_masks(mask: np.ndarray, count: int, seed: int) -> list[bytes]:
    """``count`` different edits of ``mask`` (a painted cube and an erased slab each), as gzipped NIfTI."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        m = mask.copy()
        x, y, z = rng.integers(0, mask.shape[0] - 20, 3)
        m[x : x + 16, y : y + 16, z : z + 16] = rng.integers(1, 3)
        m[:, :, rng.integers(0, mask.shape[2])] = 0
        out.append(nifti_gz(m))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(data: Path, size: int, cases: int, reviewers: int) -> tuple[list[int], np.ndarray]:
    """Users, a project, ``cases`` synthetic cases each with a first version (through the store, not HTTP)."""
    from medannot.server import store
    from medannot.server.db import Database
    from medannot.server.files import BlobStore
    from medannot.server.models import AnnotationVersion, CaseRecord
    from medannot.server.settings import ServerSettings

    db = Database(ServerSettings(data_dir=data).database_url)
    db.migrate()
    blobs = BlobStore(data)
    image, mask = synthetic_case(size)
    image_sha, mask_sha = blobs.put(nifti_gz(image)), blobs.put(nifti_gz(mask))
    with db.write() as s:
        project = store.add_project(s, "synthetic-bench", "otsu", "1=inner sphere (synthetic),2=outer shell (synthetic)")
        for i in range(reviewers):
            store.set_member(s, project, store.add_user(s, f"r{i}", PASSWORD), "reviewer")
        ids = []
        for c in range(cases):
            case = CaseRecord(project_id=project.id, name=f"synthetic-{size}-{c}", image_sha256=image_sha, source_format="nifti",
                        spatial_dims=3, shape=[size] * 3, affine=np.eye(4).tolist())
            s.add(case)
            s.flush()
            s.add(AnnotationVersion(case_id=case.id, number=1, kind="proposal", mask_sha256=mask_sha, model_name="synthetic"))
            ids.append(case.id)
    db.dispose()
    return ids, mask


def start_server(data: Path, port: int) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("medannot"))
    proc = subprocess.Popen([exe, "serve", "--port", str(port), "--data", str(data), "--no-worker"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def login(url: str, user: str) -> str:
    return httpx.post(url + "/api/login", json={"username": user, "password": PASSWORD}, timeout=60).json()["token"]


def open_case(client: httpx.Client, cid: int) -> float:
    t0 = time.perf_counter()
    case = client.get(f"/api/cases/{cid}").json()
    image = client.get(case["image_url"])
    mask = client.get(case["latest_version"]["mask_url"])
    assert image.status_code == mask.status_code == 200 and len(image.content) > 0
    return time.perf_counter() - t0


def bench_open(url: str, token: str, cid: int, data: Path, repeat: int) -> tuple[float, float]:
    from medannot.server.db import Database
    from medannot.server.files import BlobStore
    from medannot.server.models import CaseRecord
    from medannot.server.settings import ServerSettings

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
        times = [open_case(c, cid) for _ in range(repeat)]
    db = Database(ServerSettings(data_dir=data).database_url)
    from medannot.server import store

    with db.read() as s:
        case = s.get(CaseRecord, cid)
        files = [BlobStore(data).path(case.image_sha256), BlobStore(data).path(store.latest_version(s, cid).mask_sha256)]
    db.dispose()
    disk = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for f in files:
            f.read_bytes()
        disk.append(time.perf_counter() - t0)
    return statistics.median(times), statistics.median(disk)


def bench_saves(url: str, tokens: list[str], cases: list[int], masks: dict[int, list[bytes]], seconds: float) -> dict:
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    acknowledged: list[tuple[int, int, str]] = []  # (case, version id, sha256 of the voxels sent)
    counts = {"201": 0, "409": 0, "errors": 0}

    def reviewer(i: int) -> None:
        cid = cases[i % len(cases)]
        variants = masks[cid]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens[i]}"}, timeout=120) as c:
            base = c.get(f"/api/cases/{cid}").json()["latest_version"]["id"]
            n = i
            while time.monotonic() < stop:
                body = variants[n % len(variants)]
                n += 1
                t0 = time.perf_counter()
                try:
                    r = c.post(f"/api/cases/{cid}/versions", params={"base_version": base}, content=body)
                except httpx.HTTPError:
                    with lock:
                        counts["errors"] += 1
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r.status_code == 201:
                        counts["201"] += 1
                        acknowledged.append((cid, r.json()["id"], voxel_digest(body)))
                    elif r.status_code == 409:
                        counts["409"] += 1
                    else:
                        counts["errors"] += 1
                if r.status_code == 201:
                    base = r.json()["id"]
                elif r.status_code == 409:
                    base = r.json()["latest"]["id"]

    threads = [threading.Thread(target=reviewer, args=(i,)) for i in range(len(tokens))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies)
    return {"wall": wall, "requests": len(lat), "rps": len(lat) / wall, "p50": float(np.percentile(lat, 50)) if len(lat) else 0,
            "p95": float(np.percentile(lat, 95)) if len(lat) else 0, "acknowledged": acknowledged, **counts}


@functools.lru_cache(maxsize=256)
def voxel_digest(nifti_gz_bytes: bytes) -> str:
    """sha256 of a mask's voxels (the server stores masks re-encoded, so the voxels are compared, not the bytes)."""
    array = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(nifti_gz_bytes)).dataobj, dtype=np.uint8)
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify(data: Path, acknowledged: list[tuple[int, int, str]]) -> tuple[int, int]:
    """(lost writes: missing or holding other voxels than were sent, cases whose version numbers have a gap or duplicate)."""
    from sqlalchemy import select

    from medannot.server.db import Database
    from medannot.server.files import BlobStore
    from medannot.server.models import AnnotationVersion
    from medannot.server.settings import ServerSettings

    db = Database(ServerSettings(data_dir=data).database_url)
    blobs = BlobStore(data)
    lost = 0
    with db.read() as s:
        stored = {v.id: v for v in s.scalars(select(AnnotationVersion))}
        for cid, vid, sha in acknowledged:
            v = stored.get(vid)
            if v is None or v.case_id != cid or not blobs.path(v.mask_sha256).is_file():
                lost += 1
            elif voxel_digest(blobs.path(v.mask_sha256).read_bytes()) != sha:
                lost += 1
        by_case: dict[int, list[int]] = {}
        for v in stored.values():
            by_case.setdefault(v.case_id, []).append(v.number)
    db.dispose()
    gaps = sum(1 for nums in by_case.values() if sorted(nums) != list(range(1, len(nums) + 1)))
    return lost, gaps


def baseline_files(folder: Path, masks: dict[int, list[bytes]], reviewers: int, seconds: float) -> float:
    """Writes/s of the same masks as plain files (temp + fsync + rename), same threads, no server."""
    from medannot.io.atomic import atomic_write_bytes

    stop = time.monotonic() + seconds
    done = [0] * reviewers
    cases = sorted(masks)

    def writer(i: int) -> None:
        cid = cases[i % len(cases)]
        n = i
        while time.monotonic() < stop:
            atomic_write_bytes(folder / f"case{cid}-r{i}-{n % 4}.nii.gz", masks[cid][n % len(masks[cid])])
            n += 1
            done[i] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(reviewers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- hostile requests (--hostile)

HOSTILE_SHAPE = (24, 20, 12)


def gz_stream(*parts: bytes | int) -> bytes:
    """gzip of the parts in order; an int part is that many zero bytes (compressed without holding them)."""
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out, block = [], b"\0" * (16 << 20)
    for part in parts:
        if isinstance(part, int):
            for start in range(0, part, len(block)):
                out.append(c.compress(block[: min(len(block), part - start)]))
        else:
            out.append(c.compress(part))
    out.append(c.flush())
    return b"".join(out)


def nifti_header(shape: tuple[int, ...], dtype: type) -> bytes:
    """A 352-byte NIfTI-1 header (identity affine) declaring ``shape`` and ``dtype``, no voxels."""
    h = nib.Nifti1Header()
    h.set_data_shape(shape)
    h.set_data_dtype(dtype)
    h.set_sform(np.eye(4), code=2)
    h["vox_offset"] = 352
    return h.binaryblock + b"\0" * 4


def hostile_requests() -> dict[str, tuple[str, bytes]]:
    """The gzip bombs and the huge JSON of issue 14: name -> (route kind, body)."""
    mask = np.zeros(HOSTILE_SHAPE, np.uint8)
    mask[2:5, 2:5, 2:5] = 1
    return {
        "mask: uint8 header + 1 GiB of zeros": ("mask", gz_stream(nifti_header(HOSTILE_SHAPE, np.uint8), 1 << 30)),
        "mask: int16 512^3 declared": ("mask", gz_stream(nifti_header((512, 512, 512), np.int16), 2 * 512**3)),
        "mask: valid mask + 1 GiB of zeros": ("mask", gz_stream(nib.Nifti1Image(mask, np.eye(4)).to_bytes(), 1 << 30)),
        "draft: uint8 header + 1 GiB of zeros": ("draft", gz_stream(nifti_header(HOSTILE_SHAPE, np.uint8), 1 << 30)),
        "upload: .nii.gz of 512^3 int16 zeros": ("upload", gz_stream(nifti_header((512, 512, 512), np.int16), 2 * 512**3)),
        "login: 300 MiB of JSON": ("login", b'{"username": "x", "password": "' + b"a" * (300 << 20) + b'"}'),
    }


def bench_hostile(root: Path) -> None:
    """Each hostile request against a fresh `medannot serve`: status, time, RSS of the server before and at its peak."""
    import psutil

    from medannot.server import store
    from medannot.server.db import Database
    from medannot.server.settings import ServerSettings

    print(f"{'request':42s}{'body MiB':>9s}{'status':>7s}{'s':>6s}{'RSS GiB':>9s}{'peak GiB':>9s}  stored mask")
    for name, (kind, body) in hostile_requests().items():
        data = root / f"hostile-{len(list(root.iterdir()))}"
        data.mkdir()
        db = Database(ServerSettings(data_dir=data).database_url)
        db.migrate()
        with db.write() as s:
            user = store.add_user(s, "h", PASSWORD, is_admin=True)
            store.set_member(s, store.add_project(s, "hostile", "otsu"), user, "admin")
        db.dispose()
        port = free_port()
        proc = start_server(data, port)
        url = f"http://127.0.0.1:{port}"
        try:
            headers = {"Authorization": f"Bearer {login(url, 'h')}"}
            volume = (np.random.default_rng(0).random(HOSTILE_SHAPE) * 100).astype(np.int16)
            r = httpx.post(url + "/api/projects/1/cases", headers=headers, timeout=60,
                           files={"file": ("v.nii.gz", nifti_gz(volume), "application/octet-stream")})
            cid = r.json()["cases"][0]["id"]
            server = psutil.Process(proc.pid)
            time.sleep(0.5)
            base = server.memory_info().rss
            peak, stop = [base], threading.Event()

            def sample(server=server, peak=peak, stop=stop) -> None:  # noqa: ANN001 - bound to this request
                while not stop.is_set():
                    try:
                        peak[0] = max(peak[0], server.memory_info().rss)
                    except psutil.Error:
                        return
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample)
            sampler.start()
            t0 = time.perf_counter()
            if kind == "mask":
                r = httpx.post(f"{url}/api/cases/{cid}/versions", headers=headers, content=body, timeout=600)
            elif kind == "draft":
                r = httpx.put(f"{url}/api/cases/{cid}/draft", headers=headers, content=body, timeout=600)
            elif kind == "upload":
                r = httpx.post(url + "/api/projects/1/cases", headers=headers, files={"file": ("bomb.nii.gz", body)}, timeout=600)
            else:
                r = httpx.post(url + "/api/login", content=body, headers={"Content-Type": "application/json"}, timeout=600)
            seconds = time.perf_counter() - t0
            time.sleep(0.2)
            stop.set()
            sampler.join()
            stored = ""
            if kind == "mask" and r.status_code == 201:
                stored = f"{len(httpx.get(url + r.json()['mask_url'], headers=headers).content)} B (sent {len(body)} B)"
            print(f"{name:42s}{len(body) / 2**20:9.2f}{r.status_code:7d}{seconds:6.1f}{base / 2**30:9.2f}{peak[0] / 2**30:9.2f}  {stored}",
                  flush=True)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="Duration of the save load (s).")
    ap.add_argument("--reviewers", type=int, default=50)
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--size", type=int, default=256, help="Edge of the synthetic cubic volume (voxels).")
    ap.add_argument("--repeat", type=int, default=5, help="Case-page opens to take the median of.")
    ap.add_argument("--hostile", action="store_true", help="Only the hostile requests of issue 14 (gzip bombs, huge JSON): "
                    "status and server RSS of each against a fresh server.")
    args = ap.parse_args()
    if args.hostile:
        with tempfile.TemporaryDirectory(prefix="medannot-bench-") as tmp:
            bench_hostile(Path(tmp))
        return
    with tempfile.TemporaryDirectory(prefix="medannot-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        print(f"synthetic {args.size}^3 int16 case, {args.cases} cases, {args.reviewers} reviewers; seeding ...", flush=True)
        cases, mask = seed(data, args.size, args.cases, args.reviewers)
        masks = {cid: edited_masks(mask, 4, cid) for cid in cases}
        port = free_port()
        proc = start_server(data, port)
        url = f"http://127.0.0.1:{port}"
        try:
            tokens = [login(url, f"r{i}") for i in range(args.reviewers)]
            page, disk = bench_open(url, tokens[0], cases[0], data, args.repeat)
            print(f"case page (JSON + image + mask over HTTP), median of {args.repeat}: {page:.3f} s (target < 1 s: "
                  f"{'ok' if page < 1 else 'MISSED'}); same files read from disk: {disk:.3f} s; ratio {page / max(disk, 1e-9):.1f}x",
                  flush=True)
            result = bench_saves(url, tokens, cases, masks, args.seconds)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        lost, gaps = verify(data, result["acknowledged"])
        base = baseline_files(Path(tmp), masks, args.reviewers, min(args.seconds, 20.0))
    print(f"saves: {result['requests']} requests in {result['wall']:.1f} s = {result['rps']:.1f} req/s; "
          f"p50 {result['p50'] * 1000:.0f} ms, p95 {result['p95'] * 1000:.0f} ms; 201: {result['201']}, 409 (stale base, retried): "
          f"{result['409']}, errors: {result['errors']}")
    print(f"no lost write: {len(result['acknowledged'])} acknowledged versions checked, lost {lost}, cases with numbering gaps {gaps}")
    print(f"{'':28s}{'writes/s':>10s}{'ratio':>8s}")
    print(f"{'server (HTTP + SQLite)':28s}{result['rps']:10.1f}{result['rps'] / base:8.2f}")
    print(f"{'plain files (atomic write)':28s}{base:10.1f}{1.0:8.2f}")
    if result["errors"] or lost or gaps:
        raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
