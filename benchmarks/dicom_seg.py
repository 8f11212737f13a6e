"""Benchmark: write a 300-slice DICOM SEG with 10 segments (synthetic data), ours next to a plain highdicom call.

Data (synthetic, made here): a CT-like series of 300 axial slices of 512 x 512 int16 pixels
(0.7 x 0.7 mm, 1.25 mm slices; a water cylinder at 0 HU in air at -1000 HU with noise), written
to a temporary folder as single-frame CT files, and a label map with 10 ellipsoids of different
sizes (labels 1..10, about 5 % of the voxels).

Timed, best of ``--repeat``:

- headers: :func:`load_source_datasets` (read and sort the 300 headers, no pixels);
- ours: :func:`write_dicom_seg` (frame matching by position, segment descriptions, highdicom, atomic save);
- plain highdicom: ``hd.seg.Segmentation(...)`` on the same frames and descriptions, then ``save_as``;
- the ratio ours / plain highdicom (ours adds the geometry checks and the atomic write).

Target: ours < 10 s. Usage: ``python benchmarks/dicom_seg.py [--repeat 2] [--workers 0]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from medannot.annotations import LabelMap
from medannot.annotations.dicom_grid import load_source_datasets
from medannot.annotations.dicom_seg import _segment_descriptions, write_dicom_seg
from medannot.data import Geometry, Image

SLICES, ROWS, COLS = 300, 512, 512
SPACING = (0.7, 0.7, 1.25)  # mm: columns, rows, slices
TARGET_S = 10.0


def write_synthetic_ct(folder: Path) -> None:
    """300 single-frame CT files (synthetic water cylinder in air), axial, LPS origin (-179.2, -179.2, 0)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:ROWS, :COLS]
    body = (yy - ROWS / 2) ** 2 + (xx - COLS / 2) ** 2 < (0.42 * ROWS) ** 2
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(SLICES):
        hu = np.where(body, 0, -1000) + rng.normal(0, 15, (ROWS, COLS))
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Synthetic^Phantom", "SYN-1", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20260101", "120000", "1", "", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.PositionReferenceIndicator = "CT", 1, k + 1, ""
        ds.ImagePositionPatient = [-179.2, -179.2, k * SPACING[2]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [SPACING[1], SPACING[0]]
        ds.SliceThickness = SPACING[2]
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLS, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"CT{k:04d}.dcm", enforce_file_format=True)


def synthetic_labels(geometry: Geometry) -> Image:
    """10 ellipsoids (labels 1..10) inside the cylinder, on the series grid (columns, rows, slices)."""
    rng = np.random.default_rng(1)
    lab = np.zeros((COLS, ROWS, SLICES), np.uint8)
    i, j, k = np.ogrid[:COLS, :ROWS, :SLICES]
    for value in range(1, 11):
        c = rng.uniform([170, 170, 40], [340, 340, 260])
        r = rng.uniform([15, 15, 10], [60, 60, 40])
        lab[((i - c[0]) / r[0]) ** 2 + ((j - c[1]) / r[1]) ** 2 + ((k - c[2]) / r[2]) ** 2 <= 1] = value
    return Image(lab[None], geometry, "label")


def plain_highdicom(labels: Image, sources, label_map: LabelMap, out: Path, workers: int) -> None:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    frames = np.ascontiguousarray(labels.array[0].transpose(2, 1, 0))  # sources sorted like the slices: frame k = slice k
    descriptions = _segment_descriptions(label_map.foreground, "synthetic", "1", codes.cid7162.ArtificialIntelligence, "AUTOMATIC")
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=frames, segmentation_type="BINARY", segment_descriptions=descriptions,
        series_instance_uid=generate_uid(), series_number=900, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="medannot", manufacturer_model_name="synthetic", software_versions="1", device_serial_number="none",
        omit_empty_frames=True, workers=workers,
    )  # fmt: skip
    seg.save_as(out, enforce_file_format=True)


def best_of(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="highdicom frame-encoding workers (both sides)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medannot-bench-seg-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_synthetic_ct(root / "ct")
        print(f"synthetic CT series: {SLICES} x {ROWS} x {COLS} written in {time.perf_counter() - start:.1f} s")
        t_headers = best_of(args.repeat, lambda: load_source_datasets(root / "ct"))
        sources = load_source_datasets(root / "ct")
        from medannot.annotations.dicom_grid import series_grid

        geometry, shape = series_grid(sources)
        assert shape == (COLS, ROWS, SLICES)
        labels = synthetic_labels(geometry)
        label_map = LabelMap.parse({v: f"synthetic structure {v}" for v in range(1, 11)})
        print(f"labels: 10 segments, {np.count_nonzero(labels.array) / labels.array.size:.1%} of the voxels labelled")
        t_ours = best_of(args.repeat, lambda: write_dicom_seg(labels, sources, label_map, "synthetic", "1", root / "ours.dcm",
                                                              workers=args.workers))  # fmt: skip
        t_plain = best_of(args.repeat, lambda: plain_highdicom(labels, sources, label_map, root / "plain.dcm", args.workers))
        size = (root / "ours.dcm").stat().st_size / 2**20
        import pydicom

        frames = int(pydicom.dcmread(root / "ours.dcm", stop_before_pixels=True).NumberOfFrames)
    print(f"read + sort 300 headers:       {t_headers:6.2f} s")
    print(f"write_dicom_seg (ours):        {t_ours:6.2f} s   ({frames} frames, {size:.1f} MiB)   target < {TARGET_S:.0f} s: "
          f"{'met' if t_ours < TARGET_S else 'NOT met'}")  # fmt: skip
    print(f"plain highdicom Segmentation:  {t_plain:6.2f} s")
    print(f"ratio ours / highdicom:        {t_ours / t_plain:6.2f}x")


if __name__ == "__main__":
    main()
