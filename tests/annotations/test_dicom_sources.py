"""The source series of DICOM outputs is chosen by the reader's own rules (io.dicom.series_headers): the same files
skipped, the same slice order, so a SEG references exactly the slices the labels were made on."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from dicomread_helpers import real_slice_series, with_nested_sequence
from medannot.annotations.dicom_grid import load_source_datasets, series_grid
from medannot.annotations.dicom_seg import read_dicom_seg, write_dicom_seg
from medannot.errors import InputError
from medannot.io import read_image
from medannot.io.dicom_geometry import frame_planes, frame_slice_indices

STEPS = [0.0, 5.0, 10.0, 15.0, 20.0]


def _truncate_pixels(path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 128 * 128])


def test_damaged_files_the_reader_skips_are_left_out_of_the_sources(tmp_path):
    paths = real_slice_series(tmp_path / "s", "CT_small.dcm", STEPS, reverse_names=True)
    shutil.copy(paths[2], tmp_path / "s" / "IM002_copy.dcm")  # a damaged copy of a slice that is present
    _truncate_pixels(tmp_path / "s" / "IM002_copy.dcm")
    with_nested_sequence(paths[0], tmp_path / "s" / "deep.dcm", 5000)  # header unparsable: position unknown
    image = read_image(tmp_path / "s")
    skipped = sorted(p.split("/")[-1] for p, _ in image.meta["skipped"])
    assert skipped == ["IM002_copy.dcm", "deep.dcm"]
    sources = load_source_datasets(tmp_path / "s")
    assert len(sources) == image.spatial_shape[2] == 5
    assert "IM002_copy.dcm" not in {str(getattr(ds, "filename", "")) for ds in sources}
    # dataset n is slice k = n of the image
    ks = frame_slice_indices(frame_planes(sources), image.geometry, image.spatial_shape)
    np.testing.assert_array_equal(ks, np.arange(5))
    geometry, shape = series_grid(sources)
    assert shape == image.spatial_shape and geometry.isclose(image.geometry)
    labels = image.with_array((image.array > 0).astype(np.uint8), kind="label")
    write_dicom_seg(labels, sources, {1: "body"}, "test", "1", tmp_path / "seg.dcm")
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    refs = {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == {str(ds.SOPInstanceUID) for ds in sources}
    back = read_dicom_seg(tmp_path / "seg.dcm", image.geometry, image.spatial_shape)
    np.testing.assert_array_equal(back.array, labels.array)


def test_a_damaged_slice_that_leaves_a_hole_refuses_the_sources_as_it_refuses_the_image(tmp_path):
    paths = real_slice_series(tmp_path / "s", "CT_small.dcm", STEPS)
    _truncate_pixels(paths[2])
    for read in (read_image, load_source_datasets):
        with pytest.raises(InputError, match="IM002.dcm|shorter than declared"):
            read(tmp_path / "s")
