"""RTSTRUCT written by medannot: valid for dciodvfy, contours on their slices, rasterised back voxel for voxel.

Series are built from a real volume (a block of the MNI152 T1); the structures are the template's own
grey/white-matter maps (grey matter rings white matter, so many slices need inner contours: holes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomout_helpers import ORIENTATIONS, dciodvfy, mni_tissue_block, write_clinical_series
from medannot.annotations.dicom_grid import load_source_datasets, series_grid
from medannot.annotations.rtstruct import read_rtstruct, write_rtstruct
from medannot.data import Geometry, Image
from medannot.errors import GeometryError, InputError
from medannot.evaluation import dice
from medannot.io import read_image

LABELS = {1: {"name": "grey matter", "color": [255, 128, 0]}, 2: {"name": "white matter", "color": [40, 90, 255]},
          3: {"name": "liver", "color": [200, 0, 0]}}  # fmt: skip
SERIES_OPTS = dict(pixel_spacing=(0.8, 0.55), slice_step=2.5, origin=(-30.5, 12.25, 40.0))


def _series(tmp_path: Path, name: str) -> tuple[Image, Path]:
    t1, tissue = mni_tissue_block()
    crop = (slice(4, 30), slice(6, 36), slice(8, 18))
    opts = dict(SERIES_OPTS)
    opts.update(ORIENTATIONS[name])
    folder = tmp_path / name
    write_clinical_series(folder, t1[crop], **opts)
    frame_uid = pydicom.dcmread(next(folder.iterdir())).FrameOfReferenceUID
    write_clinical_series(tmp_path / f"{name}_labels", tissue[crop].astype(np.int16), frame_uid, **opts)
    labels = read_image(tmp_path / f"{name}_labels", kind="label")
    assert labels.same_grid(read_image(folder))
    return labels, folder


@pytest.mark.parametrize("name", ["axial", "sagittal", "coronal", "oblique", "axial_reversed_files", "oblique_descending"])
def test_rtstruct_valid_and_round_trip_exact(tmp_path, name):
    labels, folder = _series(tmp_path, name)
    sources = load_source_datasets(folder)
    path = write_rtstruct(labels, sources, LABELS, "brain-mri", "1.2.0", tmp_path / "rt.dcm")
    errors, _ = dciodvfy(path)
    assert errors == []
    back = read_rtstruct(path, *series_grid(sources))
    assert back.same_grid(labels)
    for value in (1, 2):
        assert dice(back.array[0] == value, labels.array[0] == value) == 1.0
    np.testing.assert_array_equal(back.array, labels.array)  # contours through pixel-edge midpoints: exact
    assert back.meta["segments"] == {1: "grey matter", 2: "white matter", 3: "liver"}


def test_rtstruct_structure_references_and_contour_planes(tmp_path):
    labels, folder = _series(tmp_path, "oblique")
    sources = load_source_datasets(folder)
    ds = pydicom.dcmread(write_rtstruct(labels, sources, LABELS, "brain-mri", "1.2.0", tmp_path / "rt.dcm"))
    assert ds.Modality == "RTSTRUCT" and ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert ds.PatientID == sources[0].PatientID and ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ContourImageSequence} == {s.SOPInstanceUID for s in sources}
    rois = {int(r.ROINumber): r for r in ds.StructureSetROISequence}
    assert {n: r.ROIName for n, r in rois.items()} == {1: "grey matter", 2: "white matter", 3: "liver"}
    assert all(r.ROIGenerationAlgorithm == "AUTOMATIC" and "brain-mri 1.2.0" in r.ROIGenerationDescription for r in rois.values())
    colours = {int(c.ReferencedROINumber): [int(v) for v in c.ROIDisplayColor] for c in ds.ROIContourSequence}
    assert colours == {n: LABELS[n]["color"] for n in LABELS}
    interpreted = {int(o.ReferencedROINumber): o.RTROIInterpretedType for o in ds.RTROIObservationsSequence}
    assert interpreted[3] == "ORGAN"
    by_uid = {s.SOPInstanceUID: s for s in sources}
    holes = 0
    for roi_contour in ds.ROIContourSequence:
        per_slice: dict[str, int] = {}
        for contour in roi_contour.get("ContourSequence", []):
            src = by_uid[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            iop = np.asarray(src.ImageOrientationPatient, float)
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            assert len(points) == contour.NumberOfContourPoints and contour.ContourGeometricType == "CLOSED_PLANAR"
            offsets = (points - np.asarray(src.ImagePositionPatient, float)) @ np.cross(iop[:3], iop[3:])
            assert np.abs(offsets).max() < 1e-4  # every point lies in its image's plane (mm)
            per_slice[src.SOPInstanceUID] = per_slice.get(src.SOPInstanceUID, 0) + 1
        holes += sum(n > 1 for n in per_slice.values())
    assert holes > 0  # several contours of one ROI on one slice: islands and holes were exercised
    assert "ContourSequence" not in ds.ROIContourSequence[2]  # the liver has no voxels here: ROI without contours


def test_rtstruct_on_the_wrong_series_is_refused(tmp_path):
    labels, folder = _series(tmp_path, "axial")
    sources = load_source_datasets(folder)
    path = write_rtstruct(labels, sources, LABELS, "brain-mri", "1.2.0", tmp_path / "rt.dcm")
    g, shape = series_grid(sources)
    half_slice = Geometry(g.spacing, tuple(np.add(g.origin, (0.0, 0.0, 1.25))), g.direction)
    with pytest.raises(GeometryError, match="does not lie on a slice"):
        read_rtstruct(path, half_slice, shape)
    with pytest.raises(InputError, match="not an RTSTRUCT"):
        read_rtstruct(next(folder.iterdir()), g, shape)


def test_real_rtstruct_from_pydicom_rasterises_like_matplotlib():
    """pydicom's sample RTSTRUCT (no preamble; ROI 'patient' drawn on three axial planes, two POINT isocentres),
    rasterised on a synthetic axial grid (2 mm pixels, centres never on the contour edges, 10 mm slices).
    Peer: matplotlib's point-in-polygon test on the same pixel centres."""
    from matplotlib.path import Path as PolygonPath

    path = Path(pydicom.__file__).parent / "data" / "test_files" / "rtstruct.dcm"
    shape = (250, 200, 4)  # columns, rows, slices
    origin_lps = np.array([-249.5, -199.5, -200.0])  # first pixel centre; slices at z = -200, -190, -180, -170
    geometry = Geometry(spacing=(2.0, 2.0, 10.0), origin=tuple(origin_lps * [-1, -1, 1]), direction=np.diag([-1.0, -1.0, 1.0]))
    image = read_rtstruct(path, geometry, shape)
    assert image.meta["segments"] == {1: "patient", 2: "Isocenter 1", 3: "Isocenter 2"}
    assert set(np.unique(image.array).tolist()) == {0, 1}  # POINT ROIs are listed but draw nothing
    ds = pydicom.dcmread(path, force=True)
    expected = np.zeros(shape, bool)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    x, y = origin_lps[0] + 2.0 * ii, origin_lps[1] + 2.0 * jj  # LPS mm of the pixel centres
    for contour in ds.ROIContourSequence[0].ContourSequence:
        points = np.asarray(contour.ContourData, float).reshape(-1, 3)
        k = int(round((points[0, 2] - origin_lps[2]) / 10.0))
        inside = PolygonPath(points[:, :2]).contains_points(np.c_[x.ravel(), y.ravel()]).reshape(x.shape)
        expected[:, :, k] ^= inside
    assert expected[:, :, :3].all(axis=(0, 1)).sum() == 0 and expected[:, :, :3].any(axis=(0, 1)).all()
    assert not expected[:, :, 3].any()
    np.testing.assert_array_equal(image.array[0] == 1, expected)
