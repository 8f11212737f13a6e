"""Benchmark: a similar-case query over 10,000 indexed images, medannot vs brute-force NumPy vs scikit-learn.

The index rows are real feature vectors (bundled ``modality`` embedding + intensity histogram + HOG + text block,
:mod:`medannot.retrieval.features`) of the real images that ship with medannot (nuclei crops, MNI152 T1 slabs),
repeated with small Gaussian jitter and re-normalised to reach 10,000 rows: the cost of a search does not depend
on the values, only on the matrix size (10,000 x D float32). Timed in one run, after a warm-up:

* medannot ``search``: one matrix-vector product and a partial sort (``argpartition``) of the scores;
* NumPy brute force: the same product and a full ``argsort``;
* scikit-learn 1.9 ``NearestNeighbors(metric="cosine", algorithm="brute").kneighbors``, fitted beforehand;
* the whole query as ``medannot similar`` runs it: read the image, compute its feature vector, search
  (2D PNG and a 3D NIfTI volume).

The three searches must return the same neighbours. Prints milliseconds per query (median of repeats) and ratios;
the target is < 100 ms per query over 10,000 images.

Usage::

    .venv/bin/python benchmarks/retrieval.py [--rows 10000] [--repeats 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def median_ms(fn, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` after one warm-up call (also used by benchmarks/classification.py)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()

    import nibabel as nib
    import torch
    from PIL import Image as PILImage
    from sklearn.neighbors import NearestNeighbors

    from medannot import samples
    from medannot.io import read_image
    from medannot.retrieval.features import FeatureExtractor
    from medannot.retrieval.index import Index, search

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench_retrieval_"))
    img = samples.nuclei_image().scalar().astype(np.float32)
    files = []
    for i, (r, c) in enumerate([(r, c) for r in (0, 128, 256, 384) for c in (0, 128, 256, 384)]):
        a = img[r : r + 128, c : c + 128]
        PILImage.fromarray((255 * (a - a.min()) / (np.ptp(a) or 1)).astype(np.uint8)).save(tmp / f"nuclei_{i}.png")
        files.append(tmp / f"nuclei_{i}.png")
    t1 = nib.load(samples.mni152_path("t1"))
    vol = np.asarray(t1.dataobj, dtype=np.float32)
    for i, z in enumerate(range(30, 160, 16)):
        nib.save(nib.Nifti1Image(vol[20:180, 20:210, z : z + 24], t1.affine), tmp / f"t1_{i}.nii.gz")
        files.append(tmp / f"t1_{i}.nii.gz")

    ext = FeatureExtractor(model="modality")
    t = time.perf_counter()
    real = np.stack([ext.vector(read_image(f)) for f in files])
    per_image = (time.perf_counter() - t) / len(files)
    rng = np.random.default_rng(0)
    reps = -(-args.rows // len(real))
    feats = np.tile(real, (reps, 1))[: args.rows] + rng.normal(0, 0.01, (args.rows, real.shape[1])).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    feats = feats.astype(np.float32)
    index = Index(feats, [{"id": str(i)} for i in range(len(feats))], {})
    query = ext.vector(read_image(files[3]))

    def ours() -> list:
        return search(index, query, args.k)

    def numpy_brute() -> np.ndarray:
        return np.argsort(-(feats @ query), kind="stable")[: args.k]

    nn = NearestNeighbors(n_neighbors=args.k, metric="cosine", algorithm="brute").fit(feats)

    def sklearn_nn() -> np.ndarray:
        return nn.kneighbors(query[None], return_distance=False)[0]

    same = [r for r, _ in ours()] == numpy_brute().tolist()
    overlap = len({r for r, _ in ours()} & set(sklearn_nn().tolist()))
    t_ours = median_ms(ours, args.repeats)
    t_np = median_ms(numpy_brute, args.repeats)
    t_sk = median_ms(sklearn_nn, args.repeats)

    def full_query(path: Path) -> None:
        search(index, ext.vector(read_image(path)), args.k)

    reps_full = max(3, args.repeats // 10)
    t_full_2d = median_ms(lambda: full_query(files[3]), reps_full)
    t_full_3d = median_ms(lambda: full_query(files[-1]), reps_full)

    print(f"index: {feats.shape[0]:,} rows x {feats.shape[1]} features (float32, {feats.nbytes / 2**20:.1f} MiB); "
          f"built from {len(files)} real images ({1000 * per_image:.0f} ms each to featurise), k = {args.k}")
    print(f"search, medannot (matvec + argpartition): {t_ours:8.3f} ms/query")
    print(f"search, NumPy brute force (full argsort): {t_np:8.3f} ms/query   ratio medannot/numpy   = {t_ours / t_np:.2f}")
    print(f"search, scikit-learn NearestNeighbors   : {t_sk:8.3f} ms/query   ratio medannot/sklearn = {t_ours / t_sk:.2f}")
    print(f"same neighbours as NumPy: {same}; as scikit-learn: {overlap}/{args.k}")
    print(f"whole query (read + features + search), 2D 128x128 PNG       : {t_full_2d:8.1f} ms")
    print(f"whole query (read + features + search), 3D 160x190x24 NIfTI  : {t_full_3d:8.1f} ms")
    ok = t_ours < 100 and same and overlap == args.k
    print(("PASS" if ok else "FAIL") + f": search over {feats.shape[0]:,} images {'<' if t_ours < 100 else '>='} 100 ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
