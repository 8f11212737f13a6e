"""Benchmark: the review server (uvicorn + SQLite, loopback) on a synthetic 256^3 case.

1. Case page: the time to fetch what the review page needs to open a case - the case JSON, the image
   (gzipped NIfTI) and the latest mask - over HTTP, median of ``--repeat`` opens (target < 1 s), next to
   reading the same two files straight from disk (the floor any server sits on).
2. Saves: ``--reviewers`` concurrent reviewers (threads, one HTTP connection each) save edited masks for
   ``--seconds`` (default 60) on ``--cases`` cases (several reviewers per case, so conflicts happen): each
   save is ``POST /versions?base_version=<latest>``; on 409 the reviewer takes the latest from the answer
   and saves again. Reports requests/s, p50/p95 latency, 409s, errors (anything else), then checks that no
   acknowledged write was lost: every version answered 201 is in the database with exactly the bytes sent,
   and version numbers per case have no gap. Baseline: the same threads writing the same masks as plain
   files (temporary file + fsync + rename) with no server, and the ratio.

All data are synthetic (spheres + noise, named synthetic); nothing here measures annotation accuracy.

Usage: ``python benchmarks/server.py [--seconds 60] [--reviewers 50] [--cases 10] [--size 256] [--repeat 5]``
"""

from __future__ import annotations

import argparse
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
    acknowledged: list[tuple[int, int, str]] = []  # (case, version id, sha256 of the bytes sent)
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
                        acknowledged.append((cid, r.json()["id"], hashlib.sha256(body).hexdigest()))
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


def verify(data: Path, acknowledged: list[tuple[int, int, str]]) -> tuple[int, int]:
    """(lost writes, cases whose version numbers have a gap or duplicate)."""
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
            if v is None or v.case_id != cid or v.mask_sha256 != sha or not blobs.path(sha).is_file():
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="Duration of the save load (s).")
    ap.add_argument("--reviewers", type=int, default=50)
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--size", type=int, default=256, help="Edge of the synthetic cubic volume (voxels).")
    ap.add_argument("--repeat", type=int, default=5, help="Case-page opens to take the median of.")
    args = ap.parse_args()
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
