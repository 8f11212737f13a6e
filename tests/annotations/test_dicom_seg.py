"""DICOM SEG written by medannot: valid for dciodvfy, voxel-exact round trip, references and metadata right.

Series are built from a real volume (a block of the MNI152 T1) in several orientations; the labels
are the template's own grey/white-matter maps, written as a second series on the same grid.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from dicomout_helpers import ORIENTATIONS, dciodvfy, mni_tissue_block, write_clinical_series
from medannot.annotations import LabelMap
from medannot.annotations.dicom_grid import load_source_datasets, series_grid
from medannot.annotations.dicom_seg import read_dicom_seg, write_dicom_seg
from medannot.data import Image
from medannot.errors import GeometryError, InputError
from medannot.io import read_image, write_image

LABELS = {1: {"name": "grey matter", "color": [255, 128, 0]}, 2: {"name": "white matter", "color": [40, 90, 255]}}
SERIES_OPTS = dict(pixel_spacing=(0.8, 0.55), slice_step=2.5, origin=(-30.5, 12.25, 40.0))


def _series(tmp_path: Path, name: str, crop=(slice(4, 28), slice(6, 34), slice(8, 20))) -> tuple[Image, Image, Path]:
    """Write the real T1 block and its tissue labels as two series on one grid; read both back."""
    t1, tissue = mni_tissue_block()
    opts = dict(SERIES_OPTS)
    opts.update(ORIENTATIONS[name])
    folder = tmp_path / name
    write_clinical_series(folder, t1[crop], **opts)
    frame_uid = pydicom.dcmread(next(folder.iterdir())).FrameOfReferenceUID
    write_clinical_series(tmp_path / f"{name}_labels", tissue[crop].astype(np.int16), frame_uid, **opts)
    image = read_image(folder)
    labels = read_image(tmp_path / f"{name}_labels", kind="label")
    assert labels.same_grid(image)
    assert set(np.unique(labels.array).tolist()) == {0, 1, 2}
    return image, labels, folder


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_seg_round_trip_is_voxel_exact_and_valid(tmp_path, name):
    image, labels, folder = _series(tmp_path, name)
    write_image(labels, tmp_path / "labels.nii.gz")
    nifti = read_image(tmp_path / "labels.nii.gz", kind="label")
    sources = load_source_datasets(folder)
    seg_path = write_dicom_seg(nifti, sources, LABELS, "brain-mri", "1.2.0", tmp_path / "seg.dcm")

    errors, _ = dciodvfy(seg_path)
    assert errors == []
    # on the reference grid (the series' headers alone): every voxel as the NIfTI
    geometry, shape = series_grid(sources)
    assert geometry == image.geometry and shape == image.spatial_shape
    back = read_dicom_seg(seg_path, geometry, shape)
    assert back.same_grid(nifti)
    np.testing.assert_array_equal(back.array, nifti.array)
    # without a reference: the SEG's own frames span the labelled slices, same voxels there
    alone = read_dicom_seg(seg_path)
    np.testing.assert_allclose(alone.geometry.direction, image.geometry.direction, atol=1e-5)
    ks = np.flatnonzero(nifti.array[0].any(axis=(0, 1)))
    k0 = int(np.rint(image.geometry.world_to_index(alone.geometry.origin)[2]))
    assert k0 == ks[0] and alone.spatial_shape == (*image.spatial_shape[:2], ks[-1] - ks[0] + 1)
    np.testing.assert_array_equal(alone.array[0], nifti.array[0][:, :, ks[0] : ks[-1] + 1])


def test_seg_metadata_names_colours_codes_algorithm_and_references(tmp_path):
    _, labels, folder = _series(tmp_path, "axial")
    sources = load_source_datasets(folder)
    path = write_dicom_seg(labels, sources, LABELS, "brain-mri", "1.2.0", tmp_path / "seg.dcm")
    ds = pydicom.dcmread(path)
    seg = hd.seg.segread(path)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID and ds.PatientID == sources[0].PatientID
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert ds.SeriesInstanceUID != sources[0].SeriesInstanceUID
    names = [s.SegmentLabel for s in ds.SegmentSequence]
    assert names == ["grey matter", "white matter"]
    for number, item in enumerate(ds.SegmentSequence, start=1):
        assert item.SegmentNumber == number
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        algo = item.SegmentationAlgorithmIdentificationSequence[0]
        assert algo.AlgorithmName == "brain-mri" and algo.AlgorithmVersion == "1.2.0"
        assert algo.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
        rgb = hd.color.CIELabColor.from_dicom_value(tuple(item.RecommendedDisplayCIELabValue)).to_rgb()
        assert np.abs(np.subtract(rgb, LABELS[number]["color"])).max() <= 2
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Tissue"
    types = [item.SegmentedPropertyTypeCodeSequence[0].CodeValue for item in ds.SegmentSequence]
    assert types == ["389081007", "389080008"]  # SNOMED CT grey matter, white matter
    # every source instance is referenced, and every frame points at the source image it covers
    referenced = {i.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    by_uid = {s.SOPInstanceUID: k for k, s in enumerate(sources)}
    lab = labels.array[0]
    for f, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        segment = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        np.testing.assert_array_equal(seg.get_frame(f + 1), (lab[:, :, by_uid[uid]].T == segment).astype(np.uint8))


def test_empty_labels_give_a_valid_seg_that_reads_back_empty(tmp_path):
    _, labels, folder = _series(tmp_path, "sagittal")
    sources = load_source_datasets(folder)
    zeros = np.zeros(labels.array.shape[::-1], np.uint8).T  # a transposed view, as the DICOM reader returns
    empty = labels.with_array(zeros)
    path = write_dicom_seg(empty, sources, LABELS, "brain-mri", "1.2.0", tmp_path / "seg.dcm")
    assert not zeros.any()  # the writer's placeholder frame never touches the caller's array
    errors, _ = dciodvfy(path)
    assert errors == []
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == 1 and [s.SegmentLabel for s in ds.SegmentSequence] == ["grey matter", "white matter"]
    back = read_dicom_seg(path, *series_grid(sources))
    assert back.spatial_shape == labels.spatial_shape and not back.array.any()


def test_sparse_label_values_come_back_through_the_label_map(tmp_path):
    _, labels, folder = _series(tmp_path, "coronal")
    sources = load_source_datasets(folder)
    lab = labels.array.copy()
    lab[lab == 2] = 7  # label values 1 and 7: segments 1 and 2
    sparse = labels.with_array(lab)
    label_map = LabelMap.parse({1: "grey matter", 7: "white matter"})
    path = write_dicom_seg(sparse, sources, label_map, "brain-mri", "1.2.0", tmp_path / "seg.dcm")
    plain = read_dicom_seg(path, *series_grid(sources))
    assert set(np.unique(plain.array).tolist()) == {0, 1, 2}  # without a map: segment numbers
    named = read_dicom_seg(path, *series_grid(sources), label_map=label_map)
    np.testing.assert_array_equal(named.array, lab)
    assert named.meta["segments"] == {1: "grey matter", 7: "white matter"}


def test_labels_off_the_source_grid_are_refused(tmp_path):
    _, labels, folder = _series(tmp_path, "axial")
    sources = load_source_datasets(folder)
    g = labels.geometry
    shifted = Image(labels.array, type(g)(g.spacing, tuple(np.add(g.origin, (0.0, 0.0, 1.0))), g.direction), labels.kind)
    with pytest.raises(GeometryError, match="not a slice of the labels' grid"):
        write_dicom_seg(shifted, sources, LABELS, "m", "1", tmp_path / "seg.dcm")
    mirrored = np.array(g.direction)
    mirrored[:, 0] *= -1  # same shape, columns running the other way
    with pytest.raises(GeometryError, match="pixel axes"):
        write_dicom_seg(Image(labels.array, type(g)(g.spacing, g.origin, mirrored), labels.kind), sources, LABELS, "m", "1",
                        tmp_path / "seg.dcm")  # fmt: skip
    assert not (tmp_path / "seg.dcm").exists()


def test_reading_a_non_seg_is_a_one_line_input_error(tmp_path):
    _, _, folder = _series(tmp_path, "axial")
    with pytest.raises(InputError, match="not a DICOM SEG"):
        read_dicom_seg(next(folder.iterdir()))


def test_real_liver_seg_from_pydicom_data_reads_like_its_frames():
    import data_store

    path = Path(data_store.__file__).parent / "data" / "liver.dcm"
    ds = pydicom.dcmread(path)
    image = read_dicom_seg(path)
    assert image.meta["segments"] == {1: "Liver"}
    assert image.spatial_shape == (512, 512, 3)
    # peer: the raw frames (pydicom), stacked by their positions along the normal, columns first
    frames = ds.pixel_array
    iop = np.asarray(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    pos = [np.asarray(f.PlanePositionSequence[0].ImagePositionPatient, float) for f in ds.PerFrameFunctionalGroupsSequence]
    order = np.argsort([p @ normal for p in pos])
    np.testing.assert_array_equal(image.array[0], frames[order].transpose(2, 1, 0))
    first = pos[order[0]]
    np.testing.assert_allclose(image.geometry.origin, (-first[0], -first[1], first[2]), atol=1e-4)
    spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    np.testing.assert_allclose(image.spacing[:2], (float(spacing[1]), float(spacing[0])), atol=1e-6)


def test_seg_on_a_real_enhanced_multiframe_source():
    """nibabel's real Philips Enhanced MR header (176 oblique frames, measures given per frame): a SEG on its grid."""
    import tempfile

    from dicomread_helpers import philips_enhanced_mr

    with tempfile.TemporaryDirectory() as tmp:
        source = philips_enhanced_mr(Path(tmp))
        header = pydicom.dcmread(source, stop_before_pixels=True)
        geometry, shape = series_grid([header])  # the grid read_image gives it (tests/io check that against SimpleITK)
        lab = np.zeros(shape, np.uint8)
        i, j, k = np.ogrid[: lab.shape[0], : lab.shape[1], : lab.shape[2]]
        lab[(i - 60) ** 2 + (j - 80) ** 2 + (k - 40) ** 2 < 20**2] = 1  # two balls, off-centre: flips would show
        lab[(i - 150) ** 2 + (j - 170) ** 2 + (k - 120) ** 2 < 30**2] = 2
        labels = Image(lab[None], geometry, "label")
        path = write_dicom_seg(labels, [header], LABELS, "brain-mri", "1.2.0", Path(tmp) / "seg.dcm")
        assert "PixelMeasuresSequence" not in header.SharedFunctionalGroupsSequence[0]  # the caller's header untouched
        assert dciodvfy(path)[0] == []
        back = read_dicom_seg(path, geometry, shape)
        np.testing.assert_array_equal(back.array, labels.array)
        ds = pydicom.dcmread(path)
        refs = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
        assert [r.ReferencedSOPInstanceUID for r in refs] == [header.SOPInstanceUID]
