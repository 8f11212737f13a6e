"""DICOM SR (TID 1500) written by medannot: dciodvfy-clean, read back by highdicom, numbers and references right.

The series is a real volume (a block of the MNI152 T1); the labels are the template's grey/white-matter maps plus
a "tumour" label with two lesions painted on the same grid.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from dicomout_helpers import ORIENTATIONS, dciodvfy, mni_tissue_block, write_clinical_series
from medannot.annotations import LabelMap
from medannot.annotations.dicom_grid import load_source_datasets
from medannot.annotations.dicom_seg import write_dicom_seg
from medannot.annotations.dicom_sr import write_dicom_sr
from medannot.annotations.measurements import lesion_labels, measure
from medannot.data import Geometry, Image
from medannot.errors import InputError
from medannot.io import read_image

LABELS = LabelMap.parse({1: "grey matter", 2: "white matter", 3: "tumour"})
LESIONS = ((slice(5, 12), slice(5, 9), slice(3, 6)), (slice(20, 30), slice(30, 33), slice(20, 21)))


def _texts(item, code: str) -> list[str]:
    """TEXT values of every content item below ``item`` whose concept name is ``code`` (DCM)."""
    out = []
    for child in item.get("ContentSequence", []):
        if child.ConceptNameCodeSequence[0].CodeValue == code and "TextValue" in child:
            out.append(str(child.TextValue))
        out += _texts(child, code)
    return out


def _case(tmp_path: Path, orientation: str):
    t1, tissue = mni_tissue_block()
    opts = dict(pixel_spacing=(0.8, 0.55), slice_step=2.5, origin=(-30.5, 12.25, 40.0), modality="CT")
    opts.update(ORIENTATIONS[orientation])
    write_clinical_series(tmp_path / "series", t1, **opts)
    image = read_image(tmp_path / "series")
    lab = tissue.copy()
    for box in LESIONS:
        lab[box] = 3
    labels = image.with_array(lab[None], kind="label")
    sources = load_source_datasets(tmp_path / "series")
    seg_path = write_dicom_seg(labels, sources, LABELS, "brain-mri", "1.2.0", tmp_path / "seg.dcm")
    measurements = measure(labels, LABELS, lesion_labels(LABELS))
    sr_path = write_dicom_sr(seg_path, sources, measurements, "brain-mri", "1.2.0", tmp_path / "sr.dcm")
    return image, labels, sources, seg_path, sr_path, measurements


@pytest.mark.parametrize("orientation", ["axial", "oblique"])
def test_sr_is_valid_and_holds_volumes_per_segment_and_diameters_per_lesion(tmp_path, orientation):
    image, labels, sources, seg_path, sr_path, measurements = _case(tmp_path, orientation)
    errors, warnings = dciodvfy(sr_path)
    assert errors == [] and warnings == []
    seg = pydicom.dcmread(seg_path)
    sr = hd.sr.srread(sr_path)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and sr.Modality == "SR"
    assert sr.StudyInstanceUID == sources[0].StudyInstanceUID and sr.PatientID == sources[0].PatientID
    assert str(sr.ContentTemplateSequence[0].TemplateIdentifier) == "1500"
    evidence = {str(i.ReferencedSOPInstanceUID) for s in sr.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert str(seg.SOPInstanceUID) in evidence and {str(d.SOPInstanceUID) for d in sources} <= evidence

    lab = labels.array[0]
    volumes = sr.content.get_volumetric_roi_measurement_groups()
    assert [str(g.tracking_identifier) for g in volumes] == ["grey matter (segment 1)", "white matter (segment 2)", "tumour (segment 3)"]
    for number, group in enumerate(volumes, start=1):
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID and ref.referenced_segment_numbers == [number]
        assert ref.source_series_for_segmentation.value == sources[0].SeriesInstanceUID
        (volume,) = group.get_measurements()
        assert volume.name.meaning == "Volume" and volume.unit.value == "mm3"
        assert volume.value == pytest.approx((lab == number).sum() * image.geometry.voxel_volume, rel=1e-6)
        assert set(_texts(group[0], "111001")) == {"brain-mri"} and set(_texts(group[0], "111003")) == {"1.2.0"}  # algorithm name, version
    assert volumes[2].finding_category.meaning == "Morphologically Altered Structure"

    planar = sr.content.get_planar_roi_measurement_groups()
    tumour = next(m for m in measurements.labels if m.name == "tumour")
    assert [str(g.tracking_identifier) for g in planar] == ["tumour lesion 1", "tumour lesion 2"]
    for group, lesion in zip(planar, tumour.lesions, strict=True):
        (diameter,) = group.get_measurements()
        assert diameter.name.value == "103339001" and diameter.unit.value == "mm"
        assert diameter.value == pytest.approx(lesion.long_axis_mm, rel=1e-6)
        region = group.roi
        assert region.GraphicType == "POLYLINE" and region.ReferencedFrameOfReferenceUID == sources[0].FrameOfReferenceUID
        lps = np.asarray(region.GraphicData, dtype=np.float64).reshape(2, 3)
        ras = lps * np.array([-1.0, -1.0, 1.0])  # SCOORD3D is in patient LPS; medannot's world is RAS
        assert np.linalg.norm(ras[0] - ras[1]) == pytest.approx(diameter.value, abs=1e-3)
        idx = np.rint(image.geometry.world_to_index(ras)).astype(int)
        assert all(lab[tuple(i)] == 3 for i in idx)  # both ends lie on the lesion
    # the painted blocks, in plane: 7 x 4 voxels of 0.55 x 0.8 mm and 10 x 3 voxels
    assert sorted(les.long_axis_mm for les in tumour.lesions) == pytest.approx(sorted([np.hypot(6 * 0.55, 3 * 0.8), np.hypot(9 * 0.55, 2 * 0.8)]))


def test_sr_refuses_a_seg_of_other_labels_and_2d_cases(tmp_path):
    image, labels, sources, seg_path, _, measurements = _case(tmp_path, "axial")
    other = measure(labels, LabelMap.parse({1: "grey matter", 2: "white matter", 3: "oedema"}))
    with pytest.raises(InputError, match="not the measured labels"):
        write_dicom_sr(seg_path, sources, other, "brain-mri", "1.2.0", tmp_path / "bad.dcm")
    with pytest.raises(InputError, match="needs the DICOM SEG"):
        write_dicom_sr(sources[0], sources, measurements, "brain-mri", "1.2.0", tmp_path / "bad.dcm")
    flat = measure(Image.from_spatial(labels.array[0, :, :, 0], Geometry(spacing=(0.55, 0.8)), kind="label"), LABELS)
    with pytest.raises(InputError, match="2D"):
        write_dicom_sr(seg_path, sources, flat, "brain-mri", "1.2.0", tmp_path / "bad.dcm")
    assert not (tmp_path / "bad.dcm").exists()


def test_sr_of_empty_labels_is_valid(tmp_path):
    image, labels, sources, _, _, _ = _case(tmp_path, "axial")
    empty = labels.with_array(np.zeros_like(labels.array), kind="label")
    seg_path = write_dicom_seg(empty, sources, None, "otsu", "1.0", tmp_path / "empty_seg.dcm")
    sr_path = write_dicom_sr(seg_path, sources, measure(empty, LabelMap()), "otsu", "1.0", tmp_path / "empty_sr.dcm")
    errors, _ = dciodvfy(sr_path)
    assert errors == []
    (group,) = hd.sr.srread(sr_path).content.get_volumetric_roi_measurement_groups()
    assert str(group.tracking_identifier) == "label_1 (segment 1)" and group.get_measurements()[0].value == 0.0
