"""References still resolve, UIDs stay consistent within a study and across runs, dates keep their intervals."""

from __future__ import annotations

import datetime as dt
import itertools
import warnings

import pydicom
import pytest
from deid_helpers import COOKIES, CT_BRAINS, identifying_values, leaks
from pydicom import Dataset, Sequence

from medannot.errors import InputError
from medannot.privacy import Deidentifier, DeidOptions, UidMap
from medannot.privacy.batch import deidentify_tree

UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID")


def _referencing_copy(target, source_path, tmp_path):
    """Synthetic reference: a real cookie file edited to cite ``target`` in nested sequences."""
    ds = pydicom.dcmread(source_path)
    ref = Dataset()
    ref.ReferencedSOPClassUID = target.SOPClassUID
    ref.ReferencedSOPInstanceUID = target.SOPInstanceUID
    ds.SourceImageSequence = Sequence([ref])
    series = Dataset()
    series.SeriesInstanceUID = target.SeriesInstanceUID
    series.ReferencedInstanceSequence = Sequence([ref])
    evidence = Dataset()
    evidence.StudyInstanceUID = target.StudyInstanceUID
    evidence.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    path = tmp_path / "referencing.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_references_resolve_to_the_new_uids(tmp_path):
    target = pydicom.dcmread(COOKIES[0])
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "target.dcm").write_bytes(COOKIES[0].read_bytes())
    _referencing_copy(target, COOKIES[1], folder)
    results = deidentify_tree(folder, tmp_path / "out", Deidentifier(DeidOptions(assume_no_burned_in=True)))
    by_name = {r.source.name: pydicom.dcmread(r.output) for r in results}
    new_target, citing = by_name["target.dcm"], by_name["referencing.dcm"]
    assert citing.SourceImageSequence[0].ReferencedSOPInstanceUID == new_target.SOPInstanceUID
    evidence = citing.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == new_target.StudyInstanceUID
    series = evidence.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == new_target.SeriesInstanceUID
    assert series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == new_target.SOPInstanceUID
    assert new_target.SOPInstanceUID != target.SOPInstanceUID


def test_uids_consistent_within_study_and_across_runs(tmp_path):
    """Equal original UIDs map to equal new ones, different to different; a second run with the map agrees."""
    files = COOKIES + CT_BRAINS
    originals = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    runs = []
    for _ in range(2):  # two separate runs sharing only the map file
        with UidMap(tmp_path / "map.sqlite") as uid_map:
            deid = Deidentifier(DeidOptions(assume_no_burned_in=True), uid_map)
            runs.append([deid.deidentify(ds) for ds in originals])
    for keyword in UID_KEYWORDS:
        for (a, a_new), (b, b_new) in itertools.combinations(zip(originals, runs[0]), 2):
            if keyword in a and keyword in b:
                assert (a[keyword].value == b[keyword].value) == (a_new[keyword].value == b_new[keyword].value), keyword
        assert [d.get(keyword) for d in runs[0]] == [d.get(keyword) for d in runs[1]]
    # the two CT slices share study, series and frame of reference, and keep sharing them
    ct1, ct2 = runs[0][-2:]
    assert (ct1.StudyInstanceUID, ct1.SeriesInstanceUID, ct1.FrameOfReferenceUID) == (
        ct2.StudyInstanceUID, ct2.SeriesInstanceUID, ct2.FrameOfReferenceUID)
    with UidMap(tmp_path / "other.sqlite") as other_map:  # a different project gets different UIDs
        other = Deidentifier(DeidOptions(assume_no_burned_in=True), other_map).deidentify(originals[-1])
    assert other.StudyInstanceUID != ct2.StudyInstanceUID


def _dates(ds) -> dict[str, dt.date]:
    out = {}
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "AcquisitionDateTime", "DateOfLastCalibration",
                    "PerformedProcedureStepStartDate"):
        value = str(ds.get(keyword, "") or "")
        if value:
            out[keyword] = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    return out


def test_date_shift_keeps_intervals_per_patient(tmp_path):
    original = pydicom.dcmread(CT_BRAINS[0])
    with UidMap(tmp_path / "map.sqlite") as uid_map:
        deid = Deidentifier(DeidOptions(shift_dates=True, assume_no_burned_in=True), uid_map)
        shifted = deid.deidentify(original)
        shift = uid_map.patient("id:00007041776|CCHS").date_shift_days
    before, after = _dates(original), _dates(shifted)
    assert len(before) >= 4 and before.keys() == after.keys()
    assert {(after[k] - before[k]).days for k in before} == {shift}
    assert shift != 0
    assert str(shifted.AcquisitionDateTime)[8:] == str(original.AcquisitionDateTime)[8:]  # time of day kept
    assert shifted.StudyTime == original.StudyTime
    assert not shifted.get("PatientBirthDate")  # birth date is removed, not shifted
    with UidMap(tmp_path / "map.sqlite") as uid_map:  # a later run shifts the same patient the same way
        again = Deidentifier(DeidOptions(shift_dates=True, assume_no_burned_in=True), uid_map).deidentify(
            pydicom.dcmread(CT_BRAINS[1]))
    assert _dates(again)["StudyDate"] == after["StudyDate"]
    assert str(original.StudyDate) not in str(shifted)


def test_nested_sequences_are_cleaned(tmp_path):
    """Synthetic SR-like content three levels deep: names, dates, text, UIDs and private data inside items."""
    ds = pydicom.dcmread(CT_BRAINS[0])
    leaf = Dataset()
    leaf.PersonName = "DOE^JANE"
    leaf.DateTime = "20220304101010"
    leaf.TextValue = "seen by Dr DOE on 2022-03-04"
    leaf.UID = "1.2.3.4.5.6.7.8.99"
    leaf.add_new(0x00510010, "LO", "ACME PRIVATE")
    leaf.add_new(0x00511001, "LO", "SECRET-LEAF-ID")
    middle = Dataset()
    middle.ContentSequence = Sequence([leaf])
    middle.InstitutionName = "NESTED GENERAL HOSPITAL"
    top = Dataset()
    top.ContentSequence = Sequence([middle])
    top.OperatorsName = "NESTED^OPERATOR"
    ds.ReferencedSeriesSequence = Sequence([top])  # not in the table: kept, but walked
    path = tmp_path / "nested.dcm"
    ds.save_as(path, enforce_file_format=True)
    identifiers = identifying_values(pydicom.dcmread(path)) | {"seen by Dr", "SECRET-LEAF-ID", "ACME PRIVATE"}
    assert {"DOE^JANE", "1.2.3.4.5.6.7.8.99", "20220304101010", "NESTED GENERAL HOSPITAL"} <= identifiers
    out = Deidentifier(DeidOptions(assume_no_burned_in=True)).deidentify(pydicom.dcmread(path))
    out_path = tmp_path / "nested-out.dcm"
    out.save_as(out_path, enforce_file_format=True)
    assert leaks(identifiers, out_path) == []
    new_leaf = out.ReferencedSeriesSequence[0].ContentSequence[0].ContentSequence[0]
    assert new_leaf.UID.startswith("2.25.") and new_leaf.TextValue == "ANONYMIZED"  # TEXT items stay valid


def test_input_dataset_untouched_and_burned_in_refused():
    from medannot.privacy import BurnedInAnnotationError

    ds = pydicom.dcmread(COOKIES[0])
    name = str(ds.PatientName)
    with pytest.raises(BurnedInAnnotationError, match="Secondary Capture"):
        Deidentifier().deidentify(ds)
    out = Deidentifier().deidentify(ds, allow_burned_in=True)
    assert str(ds.PatientName) == name and str(out.PatientName) != name
    assert isinstance(BurnedInAnnotationError("x"), InputError)


@pytest.mark.parametrize(
    ("value", "shiftable"),
    [("20230101", True), ("20230301101010.5+0100", True), ("2023", False), ("20230101-20231231", False)],
)
def test_dates_that_cannot_be_shifted_are_emptied(value, shiftable):
    """A partial date or a range cannot keep its interval: its value goes rather than leak."""
    ds = pydicom.dcmread(CT_BRAINS[0])
    with warnings.catch_warnings():  # a range is invalid outside queries: bad input on purpose
        warnings.simplefilter("ignore", UserWarning)
        ds.AcquisitionDateTime = value
    with UidMap(secret="fixed") as uid_map:
        deid = Deidentifier(DeidOptions(shift_dates=True, assume_no_burned_in=True), uid_map)
        key = "id:00007041776|CCHS"
        shift = uid_map.patient(key).date_shift_days
        out = deid.deidentify(ds)
    moved = str(out.AcquisitionDateTime or "")
    if shiftable:
        day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8])) + dt.timedelta(days=shift)
        assert moved == day.strftime("%Y%m%d") + value[8:]
    else:
        assert moved == ""


def test_clean_descriptors_keeps_text_without_identifiers():
    ds = pydicom.dcmread(CT_BRAINS[0])
    ds.StudyDescription = "CT for Simpson, Homer 2023-01-01 MRN 00007041776 SPRINGFIELD"
    ds.ImageComments = "HIBBARD^JULIUS asked; call 555-0199 ext 12345"
    plain = Deidentifier(DeidOptions(assume_no_burned_in=True)).deidentify(ds)
    assert "StudyDescription" not in plain and "ImageComments" not in plain  # Basic Profile: removed
    cleaned = Deidentifier(DeidOptions(clean_descriptors=True, assume_no_burned_in=True)).deidentify(ds)
    assert cleaned.StudyDescription == "CT for MRN"
    assert cleaned.ImageComments == "asked; call 555-0199 ext"
