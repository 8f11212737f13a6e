"""Hypothesis properties of the readers: any header field set to any value, or any bytes changed, gives either a
clean refusal (a :class:`medannot.errors.MedannotError` with one line naming the file) or a correct read (the
declared shape, finite intensities, a finite geometry with sane voxel sizes, and the stored voxels when the
field changed does not describe them).

Examples are derandomized (the same every run). ``make test`` runs :data:`EXAMPLES` per property; ``make fuzz``
(``-m fuzz``) runs ``MEDANNOT_FUZZ_EXAMPLES`` (default 2000) per property.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np
import pytest
from fuzz_dicom import ct_slice, lenient, slice_pixels, to_bytes
from fuzz_nifti import FIELDS, base_volume, gz, nifti_bytes
from fuzz_raster import picture, pil_bytes, tiff_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medannot.errors import MedannotError
from medannot.io import read_image

EXAMPLES = 40
FUZZ_EXAMPLES = int(os.environ.get("MEDANNOT_FUZZ_EXAMPLES", "2000"))
_SETTINGS = dict(derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

VOLUME = base_volume()
NIFTI = nifti_bytes(VOLUME)
NIFTI_Q = nifti_bytes(VOLUME, qform_only=True)
NIFTI_GZ = gz(NIFTI)
DICOM = to_bytes(ct_slice())
PNG = pil_bytes(picture(), "PNG")
TIFF = tiff_bytes(picture().astype(np.uint16) * 100, resolution=(40.0, 40.0), resolutionunit="CENTIMETER")

#: NIfTI fields that describe the voxels (their shape, type, scaling); whatever any other field holds, a read gives
#: the stored voxels exactly.
VOXEL_FIELDS = {"dim0", "dim1", "dim2", "dim3", "dim4", "dim5", "dim6", "dim7", "datatype", "scl_slope", "scl_inter"}


def _value(fmt: str):
    if fmt == "f":
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                         st.sampled_from([0.0, -0.0, 1e-38, 1e38, -1.0, 352.0, 1e12]))  # fmt: skip
    if fmt == "h":
        return st.one_of(st.integers(-32768, 32767), st.sampled_from([0, -1, 1, 2, 4, 7, 8, 16, 64, 128, 2304]))
    if fmt == "i":
        return st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 348, 540, -1]))
    return st.integers(0, 255)


def _field_and_value():
    return st.sampled_from(sorted(FIELDS)).flatmap(lambda name: st.tuples(st.just(name), _value(FIELDS[name][1])))


def _set(blob: bytes, name: str, value) -> bytes:
    offset, fmt = FIELDS[name]
    out = bytearray(blob)
    struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


def _clean_refusal(exc: MedannotError, name: str) -> None:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    assert text.startswith(name + ":"), text


def _sane(image) -> None:
    arr = image.array
    if arr.dtype.kind == "f":
        assert np.all(np.isfinite(arr)), "non-finite intensities read without a word"
    aff = image.geometry.affine
    assert np.all(np.isfinite(aff))
    spacing = np.asarray(image.spacing, dtype=float)
    assert np.all(spacing > 0) and np.all(np.isfinite(spacing)), spacing


def _read(data: bytes, name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a library warning escaping a reader is a failure (pytest makes it one too)
        return read_image(data, name=name)


def _nifti_property(data: bytes, name: str, field: str, value) -> None:
    try:
        image = _read(data, name)
    except MedannotError as exc:
        _clean_refusal(exc, name)
        return
    _sane(image)
    if field not in VOXEL_FIELDS:
        assert image.array.shape == (1, *VOLUME.shape), image.array.shape
        np.testing.assert_array_equal(image.array[0], VOLUME)


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(_field_and_value())
def test_nifti_any_header_field_is_refused_cleanly_or_read_correctly(field_value):
    field, value = field_value
    _nifti_property(_set(NIFTI, field, value), "case.nii", field, value)


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(_field_and_value())
def test_nifti_qform_only_any_header_field(field_value):
    field, value = field_value
    _nifti_property(_set(NIFTI_Q, field, value), "case.nii", field, value)


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(st.integers(0, len(NIFTI_GZ) - 1), st.integers(1, 255))
def test_nifti_gz_any_changed_byte_is_refused_or_identical(position, delta):
    blob = bytearray(NIFTI_GZ)
    blob[position] = (blob[position] + delta) % 256
    try:
        image = _read(bytes(blob), "case.nii.gz")
    except MedannotError as exc:
        _clean_refusal(exc, "case.nii.gz")
        return
    # only bytes gzip does not check (header flags, name, mtime, OS) may change and still read: the voxels are intact
    assert position < 10, f"byte {position} of the gzip stream changed and the file was read"
    np.testing.assert_array_equal(image.array[0], VOLUME)


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(st.integers(0, len(NIFTI) - 1))
def test_nifti_any_truncation_is_refused(cut):
    with pytest.raises(MedannotError) as err:
        _read(NIFTI[:cut], "case.nii")
    _clean_refusal(err.value, "case.nii")


DICOM_KEYWORDS = ["Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
                  "NumberOfFrames", "PhotometricInterpretation", "PlanarConfiguration", "RescaleSlope", "RescaleIntercept",
                  "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness", "WindowCenter",
                  "PresentationLUTShape", "Modality", "SOPClassUID"]  # fmt: skip
_DICOM_VALUES = st.one_of(
    st.integers(-70000, 70000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "MONOCHROME1", "RGB", "PALETTE COLOR", "YBR_FULL", "INVERSE", "abc", "1e308", "-0"]),
    st.lists(st.one_of(st.floats(min_value=-1e6, max_value=1e6), st.sampled_from([float("nan"), float("inf"), 1e300])),
             min_size=1, max_size=7),
)


def _dicom_with(keyword: str, value) -> bytes | None:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    ds = ct_slice()
    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag)
    if vr in ("US", "UL", "SS", "SL", "IS") and not isinstance(value, int):
        return None  # pydicom cannot write it; other draws cover the field
    if vr == "US" and not 0 <= value <= 65535 or vr == "SS" and not -32768 <= value <= 32767:
        return None
    if isinstance(value, float) or (isinstance(value, list) and vr in ("US", "SS", "IS", "CS", "UI")):
        if vr not in ("DS", "FD", "FL"):
            return None
        value = f"{value!r}"[:16] if isinstance(value, float) else [f"{v!r}"[:16] for v in value]
    if isinstance(value, str) and vr in ("US", "UL", "SS", "SL"):
        return None
    try:
        with lenient(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # writing the hostile value; reading it back is what is tested
            ds.add_new(tag, vr, value)
            return to_bytes(ds)
    except (ValueError, TypeError, OverflowError, OSError, struct.error):
        return None


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(st.sampled_from(DICOM_KEYWORDS), _DICOM_VALUES)
def test_dicom_any_attribute_is_refused_cleanly_or_read_correctly(keyword, value):
    data = _dicom_with(keyword, value)
    if data is None:
        return
    try:
        image = _read(data, "slice.dcm")
    except MedannotError as exc:
        _clean_refusal(exc, "slice.dcm")
        return
    _sane(image)
    assert image.array.shape[-2:] == (32, 28) or image.ndim == 3, image.array.shape
    if keyword in ("SliceThickness", "WindowCenter", "Modality", "SOPClassUID", "ImagePositionPatient", "PixelSpacing",
                   "ImageOrientationPatient", "BitsStored", "HighBit"):  # fmt: skip
        if image.array.shape == (1, 32, 28) and keyword not in ("BitsStored", "HighBit"):
            np.testing.assert_array_equal(image.array[0], slice_pixels().astype(np.int32) - 1024)


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(st.integers(132, len(DICOM) - 1), st.integers(1, 255), st.booleans())
def test_dicom_any_changed_byte_or_cut_is_refused_cleanly_or_read(position, delta, cut):
    blob = DICOM[:position] if cut else bytes(DICOM[:position]) + bytes([(DICOM[position] + delta) % 256]) + DICOM[position + 1 :]
    try:
        image = _read(blob, "slice.dcm")
    except MedannotError as exc:
        _clean_refusal(exc, "slice.dcm")
        return
    assert not cut or position >= len(DICOM) - 1, f"a file cut at {position} of {len(DICOM)} bytes was read"
    _sane(image)


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(st.sampled_from([PNG, TIFF]), st.integers(8, 400), st.integers(1, 255))
def test_pictures_any_changed_header_byte_is_refused_cleanly_or_read(blob, position, delta):
    name = "pic.png" if blob is PNG else "pic.tif"
    data = bytearray(blob)
    position = min(position, len(data) - 1)
    data[position] = (data[position] + delta) % 256
    try:
        image = _read(bytes(data), name)
    except MedannotError as exc:
        _clean_refusal(exc, name)
        return
    _sane(image)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, **_SETTINGS)
@given(_field_and_value(), st.booleans())
def test_fuzz_nifti_header_fields(field_value, qform_only):
    field, value = field_value
    _nifti_property(_set(NIFTI_Q if qform_only else NIFTI, field, value), "case.nii", field, value)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, **_SETTINGS)
@given(st.sampled_from(DICOM_KEYWORDS), _DICOM_VALUES)
def test_fuzz_dicom_attributes(keyword, value):
    test_dicom_any_attribute_is_refused_cleanly_or_read_correctly.hypothesis.inner_test(keyword, value)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, **_SETTINGS)
@given(st.binary(min_size=0, max_size=600), st.sampled_from(["x.nii", "x.nii.gz", "x.dcm", "x.png", "x.tif", "x.zip", "x"]))
def test_fuzz_any_bytes_are_refused_cleanly_or_read(data, name):
    try:
        image = _read(bytes(data), name)
    except MedannotError as exc:
        _clean_refusal(exc, name)
        return
    _sane(image)

