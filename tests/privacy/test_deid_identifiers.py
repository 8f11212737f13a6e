"""No identifier of the real deid-data files survives, in any element or in the file bytes; output stays valid DICOM."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from deid_helpers import CAT, COOKIES, CT_BRAINS, copy_inputs, dciodvfy_errors, identifying_values, leaks

from medannot.privacy import Deidentifier, DeidOptions, UidMap
from medannot.privacy.batch import DeidStatus, deidentify_tree

ORIGINALS = COOKIES + CT_BRAINS + [CAT]


@pytest.fixture(scope="module", params=["basic", "all-options"])
def batch(request, tmp_path_factory):
    """The real files de-identified in one batch: plain Basic Profile, or with every option."""
    tmp = tmp_path_factory.mktemp(f"deid-{request.param}")
    source = copy_inputs(ORIGINALS, tmp / "in")
    options = (
        DeidOptions(assume_no_burned_in=True)
        if request.param == "basic"
        else DeidOptions(shift_dates=True, clean_descriptors=True, assume_no_burned_in=True)
    )
    with UidMap(tmp / "map.sqlite") as uid_map:
        results = deidentify_tree(source, tmp / "out", Deidentifier(options, uid_map))
    return request.param, results


def test_every_real_file_is_written(batch):
    _, results = batch
    assert [r.status for r in results] == [DeidStatus.WRITTEN] * len(ORIGINALS)


def test_the_originals_do_hold_identifiers():
    """Guard against a vacuous test: the scan finds the known fake identifiers in the originals."""
    ct = pydicom.dcmread(CT_BRAINS[0])
    found = identifying_values(ct)
    for expected in ("SIMPSON", "HOMER", "00007041776", "20200704", "HIBBARD", "RIVERIA", "SGH SPRINGFIELD GENERAL HOSPITAL",
                     "Evergreen Terrace Springfield", "999887722", "M1212121", ct.StudyInstanceUID, ct.SOPInstanceUID):
        assert expected in found
    assert leaks(found, CT_BRAINS[0])  # and the scan sees them in the original file
    cookie = identifying_values(pydicom.dcmread(COOKIES[0]))
    assert {"nameless waterfall", "cookie-47", "STANFORD", "Dr. dry breeze", "fragrant pond", "20131210"} <= cookie


def test_no_identifier_left_anywhere(batch):
    _, results = batch
    for result in results:
        identifiers = identifying_values(pydicom.dcmread(result.source))
        assert identifiers, result.source
        assert leaks(identifiers, result.output) == [], result.source


def test_identity_removed_and_method_recorded(batch):
    name, results = batch
    ds = pydicom.dcmread(results[0].output)
    assert ds.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == (["113100"] if name == "basic" else ["113100", "113107", "113105"])
    assert all(item.CodingSchemeDesignator == "DCM" for item in ds.DeidentificationMethodCodeSequence)
    assert ds.LongitudinalTemporalInformationModified == ("REMOVED" if name == "basic" else "MODIFIED")
    assert ds.PatientID.startswith("ANON") and str(ds.PatientName) == ds.PatientID


def test_private_attributes_are_gone(batch):
    _, results = batch
    original = pydicom.dcmread(CT_BRAINS[0])
    assert any(e.tag.is_private for e in original)
    for result in results:
        ds = pydicom.dcmread(result.output)
        assert not [e.tag for e in ds.iterall() if e.tag.is_private]


def test_pixel_data_unchanged_and_readable(batch):
    _, results = batch
    for result in results:
        before, after = pydicom.dcmread(result.source), pydicom.dcmread(result.output)
        assert after.PixelData == before.PixelData
        assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    cat_result = next(r for r in results if r.source.name == CAT.name)
    np.testing.assert_array_equal(pydicom.dcmread(cat_result.output).pixel_array, pydicom.dcmread(CAT).pixel_array)


@pytest.mark.slow
def test_dciodvfy_reports_no_new_errors(batch):
    """The validator finds no error in the output that it did not already find in the original."""
    _, results = batch
    checked = [r for r in results if r.source.name in {COOKIES[0].name, CT_BRAINS[0].name, CAT.name}]
    assert len(checked) == 3
    for result in checked:
        new = dciodvfy_errors(result.output) - dciodvfy_errors(result.source)
        assert new == set(), (result.source.name, sorted(new))
