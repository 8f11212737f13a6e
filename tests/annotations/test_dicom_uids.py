"""Deterministic UIDs of the SEG and SR: the same source series and model give the same objects (so a PACS sees a
re-run as what it already holds), anything that changes the output gives new ones; the files stay dciodvfy-clean."""

from __future__ import annotations

import re
from dataclasses import replace

import highdicom as hd
import pydicom
import pytest

from dicomout_helpers import dciodvfy, mni_tissue_block, write_clinical_series
from medannot.annotations import LabelMap, Provenance
from medannot.annotations.dicom_grid import load_source_datasets
from medannot.annotations.dicom_outputs import case_writers, parse_formats
from medannot.annotations.dicom_uids import derived_uid, fresh_output_uids, output_uids
from medannot.errors import InputError
from medannot.io import read_image

MODEL = Provenance(source="model", name="brain-mri", version="1.2.0", sha256="ab" * 32, parameters={"tta": False})
UID = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


def test_uids_depend_on_source_and_model_only():
    a = output_uids("1.2.3.4", MODEL)
    assert a == output_uids("1.2.3.4", replace(MODEL, input={"path": "elsewhere"}, created="2030-01-01"))
    assert all(UID.match(u) and len(u) <= 64 for u in (a.seg.series, a.seg.instance, a.sr.series, a.sr.instance, a.device))
    assert len({a.seg.series, a.seg.instance, a.sr.series, a.sr.instance, a.device}) == 5
    for other in (replace(MODEL, version="1.2.1"), replace(MODEL, sha256="cd" * 32), replace(MODEL, name="other"),
                  replace(MODEL, parameters={"tta": True})):
        assert output_uids("1.2.3.4", other).seg.series != a.seg.series
    assert output_uids("1.2.3.5", MODEL).seg.series != a.seg.series
    assert output_uids("1.2.3.5", MODEL).device == a.device  # the model, whatever the series
    fresh = fresh_output_uids(MODEL)
    assert fresh.seg.series != a.seg.series and fresh.seg.series != fresh_output_uids(MODEL).seg.series and not fresh.seg.deterministic
    assert derived_uid("a", "bc") != derived_uid("ab", "c")
    with pytest.raises(InputError):
        output_uids("", MODEL)


def test_local_seg_and_sr_are_the_same_objects_each_run(tmp_path):
    t1, tissue = mni_tissue_block()
    write_clinical_series(tmp_path / "series", t1, row_cos=(1, 0, 0), col_cos=(0, 1, 0), pixel_spacing=(0.8, 0.55), slice_step=2.5,
                          origin=(-30.5, 12.25, 40.0))
    image = read_image(tmp_path / "series")
    labels = image.with_array(tissue[None], kind="label")
    sources = load_source_datasets(tmp_path / "series")
    label_map = LabelMap.parse({1: "grey matter", 2: "white matter"})
    made = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        for write in case_writers(parse_formats(["dicom-sr"]), image, labels, sources, label_map, MODEL):
            write(folder)
        made.append((pydicom.dcmread(folder / "seg.dcm"), hd.sr.srread(folder / "sr.dcm")))
    (seg_a, sr_a), (seg_b, sr_b) = made
    expected = output_uids(str(sources[0].SeriesInstanceUID), MODEL)
    assert (seg_a.SeriesInstanceUID, seg_a.SOPInstanceUID) == (seg_b.SeriesInstanceUID, seg_b.SOPInstanceUID) == (
        expected.seg.series, expected.seg.instance)
    assert (sr_a.SeriesInstanceUID, sr_a.SOPInstanceUID) == (sr_b.SeriesInstanceUID, sr_b.SOPInstanceUID) == (
        expected.sr.series, expected.sr.instance)
    groups_a = sr_a.content.get_volumetric_roi_measurement_groups()
    groups_b = sr_b.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_uid for g in groups_a] == [g.tracking_uid for g in groups_b]
    assert len({g.tracking_uid for g in groups_a}) == 2
    assert dciodvfy(tmp_path / "a" / "seg.dcm")[0] == [] and dciodvfy(tmp_path / "a" / "sr.dcm")[0] == []
