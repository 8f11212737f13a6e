"""labels.seg.nrrd: a 3D Slicer segmentation that SimpleITK reads with the labels' geometry and Slicer's segment fields."""

import numpy as np
import SimpleITK as sitk

from iohelpers import rotation
from medannot.annotations import LabelMap
from medannot.annotations.slicer_seg import write_slicer_segmentation
from medannot.data import Geometry, Image, ImageKind


def test_simpleitk_reads_the_geometry_and_slicer_fields(tmp_path):
    aff = np.eye(4)
    aff[:3, :3] = rotation(10.0, -20.0, 5.0) * np.array([0.8, 0.9, 2.5])[None, :]
    aff[:3, 3] = (-30.0, 12.5, 40.0)
    lab = np.zeros((1, 20, 16, 9), np.uint8)
    lab[0, 3:7, 2:5, 1:4] = 1
    lab[0, 10, 11, 8] = 3  # present but not in the label map
    labels = Image(lab, Geometry.from_affine(aff), ImageKind.LABEL)
    label_map = LabelMap.parse({1: {"name": "liver", "color": [255, 0, 0]}, 2: "tumour"})
    out = write_slicer_segmentation(labels, label_map, tmp_path / "labels.seg.nrrd")
    ref = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ref).transpose(2, 1, 0), lab[0])
    for idx in ((0, 0, 0), (19, 15, 8), (3, 2, 1)):
        lps = np.array(ref.TransformIndexToPhysicalPoint(idx))
        np.testing.assert_allclose(lps * [-1, -1, 1], labels.geometry.index_to_world(np.array(idx)), atol=1e-9)
    fields = {k: ref.GetMetaData(k) for k in ref.GetMetaDataKeys()}
    assert fields["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert (fields["Segment0_Name"], fields["Segment0_LabelValue"], fields["Segment0_Color"]) == ("liver", "1", "1 0 0")
    assert fields["Segment0_Extent"] == "3 6 2 4 1 3"
    assert (fields["Segment1_Name"], fields["Segment1_Extent"]) == ("tumour", "0 -1 0 -1 0 -1")
    assert (fields["Segment2_Name"], fields["Segment2_LabelValue"], fields["Segment2_Extent"]) == ("label_3", "3", "10 10 11 11 8 8")
    assert "Segment3_Name" not in fields
    assert out.read_bytes().startswith(b"NRRD000") and b"Segment0_Name:=liver" in out.read_bytes()[:4000]


def test_2d_labels_become_one_slice(tmp_path):
    lab = np.zeros((1, 5, 7), np.uint8)
    lab[0, 1:3, 2:6] = 2
    out = write_slicer_segmentation(Image(lab, Geometry((0.5, 0.25)), ImageKind.LABEL), None, tmp_path / "x.seg.nrrd")
    ref = sitk.ReadImage(str(out))
    assert ref.GetSize() == (5, 7, 1) and ref.GetMetaData("Segment0_Name") == "label_2"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ref)[0].T, lab[0])
