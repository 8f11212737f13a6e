"""Benchmark: reading a SYNTHETIC 300-slice uncompressed CT series, medannot vs SimpleITK, in one run.

The series is synthetic (an elliptical "body" of soft tissue with a "spine" of bone and noise, drawn
procedurally; no real anatomy): 300 single-frame CT files, 512 x 512, Explicit VR Little Endian,
BitsAllocated 16 / BitsStored 12 unsigned, RescaleIntercept -1024 (HU), 0.7 x 0.7 mm pixels, 1.25 mm slices,
files named in random order. It is written to a temporary folder, then read from the warm page cache by

* medannot: ``read_dicom_series(folder)`` (finds the files, parses each header once, copies the pixels
  straight into one preallocated int16 array on 2 threads, applies the rescale in place);
* SimpleITK: ``ImageSeriesReader.GetGDCMSeriesFileNames(folder)`` + ``ImageSeriesReader.Execute()``
  + ``GetArrayViewFromImage`` (no copy), i.e. what a user does to read a folder; ``Execute`` alone, with the
  file names already known, is printed too.

Each reader runs ``--repeats`` times, alternating; best-of and median wall times and their ratio are printed.
Peak extra resident memory is measured in separate runs (psutil sampled every 5 ms; the sampler thread is kept out
of the timed runs because it competes for the GIL). The voxels must be identical and the affines equal within 1e-4 mm.

Usage::

    .venv/bin/python benchmarks/dicom.py                # 300 slices, 7 repeats
    .venv/bin/python benchmarks/dicom.py --slices 100 --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medannot.testing.memory import PeakRSS

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def synthetic_ct(slices: int, size: int = 512, seed: int = 0) -> np.ndarray:
    """Stored values (uint16, 12 bits used) of a SYNTHETIC CT, shape (slices, rows, columns)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size].astype(np.float32)
    c = size / 2
    body = ((x - c) / (0.42 * size)) ** 2 + ((y - c) / (0.32 * size)) ** 2 < 1
    spine = (x - c) ** 2 + (y - c - 0.18 * size) ** 2 < (0.05 * size) ** 2
    base = np.where(body, 1024 + 40, 0).astype(np.float32) + np.where(spine, 700, 0)
    out = np.empty((slices, size, size), np.uint16)
    for k in range(slices):
        noise = rng.normal(0, 20, size=(size, size)).astype(np.float32) * body
        out[k] = np.clip(base * (1 + 0.1 * np.sin(k / 15)) + noise, 0, 4095).astype(np.uint16)
    return out


def write_series(folder: Path, stored: np.ndarray) -> None:
    """Write ``stored`` as single-frame CT files (axial, LPS), in random file-name order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    order = np.random.default_rng(1).permutation(stored.shape[0])
    for k in range(stored.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.PatientName, ds.Modality = "SYNTHETIC", "Synthetic^Phantom", "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesDescription = study_uid, series_uid, "synthetic CT"
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-179.0, -179.0, f"{-300.0 + 1.25 * k:.2f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1.25
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"CT{order[k]:05d}.dcm", enforce_file_format=True)


def read_ours(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """medannot: array (columns, rows, slices) and RAS affine."""
    from medannot.io.dicom import read_dicom_series

    image = read_dicom_series(folder)
    return image.array[0], image.affine


def read_sitk(folder: Path, names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, Any]:
    """SimpleITK: array (columns, rows, slices) (a view, no copy), RAS affine and the image the view lives in."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names if names is not None else sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    aff = np.eye(4)
    aff[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())[None, :]
    aff[:3, 3] = img.GetOrigin()
    return sitk.GetArrayViewFromImage(img).transpose(2, 1, 0), LPS_TO_RAS @ aff, img


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t
    del result
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory(prefix="medannot-bench-dicom-") as tmp:
        folder = Path(tmp) / "synthetic_ct"
        t = time.perf_counter()
        write_series(folder, synthetic_ct(args.slices))
        size_mib = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        print(f"SYNTHETIC CT series: {args.slices} files of 512x512 uint16 (12 bits), {size_mib:.0f} MiB, written in "
              f"{time.perf_counter() - t:.1f} s to {folder}")  # fmt: skip

        ours_arr, ours_aff = read_ours(folder)  # warm-up: imports, page cache
        peer_arr, peer_aff, peer_img = read_sitk(folder)
        same_voxels = ours_arr.shape == peer_arr.shape and np.array_equal(ours_arr, peer_arr)
        affine_err = float(np.abs(ours_aff - peer_aff).max())
        print(f"voxels identical: {same_voxels} (medannot {ours_arr.dtype}, SimpleITK {peer_arr.dtype}, shape {ours_arr.shape}); "
              f"max affine difference {affine_err:.2e} mm")  # fmt: skip
        del ours_arr, peer_arr, peer_img
        names = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))

        times: dict[str, list[float]] = {"medannot": [], "SimpleITK": [], "SimpleITK Execute only": []}
        for _ in range(args.repeats):
            times["medannot"].append(timed(lambda: read_ours(folder)))
            times["SimpleITK"].append(timed(lambda: read_sitk(folder)))
            times["SimpleITK Execute only"].append(timed(lambda: read_sitk(folder, names)))
        peaks = {}
        for name, fn in (("medannot", lambda: read_ours(folder)), ("SimpleITK", lambda: read_sitk(folder))):
            gc.collect()
            with PeakRSS() as mem:
                result = fn()
            del result
            peaks[name] = mem.extra_mib
        peaks["SimpleITK Execute only"] = float("nan")

    print(f"\n{'reader':<24}{'best s':>9}{'median s':>10}{'peak extra MiB':>16}")
    for name, values in times.items():
        print(f"{name:<24}{min(values):>9.3f}{statistics.median(values):>10.3f}{peaks[name]:>16.0f}")
    ours, peer = times["medannot"], times["SimpleITK"]
    best_ratio, median_ratio = min(ours) / min(peer), statistics.median(ours) / statistics.median(peer)
    print(f"\nratio medannot / SimpleITK (folder in, array out): best-of {best_ratio:.2f}x, median {median_ratio:.2f}x "
          f"(target <= 1.0x); vs Execute only: best-of {min(ours) / min(times['SimpleITK Execute only']):.2f}x")  # fmt: skip
    if not same_voxels or affine_err > 1e-4:
        print("FAILED: medannot and SimpleITK disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
