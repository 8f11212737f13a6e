"""DICOM inputs for the corpus: single CT/MR slices with every pixel-describing and geometry attribute set to
hostile values, truncations, compressed files cut short, deep sequences, random header bytes, and series
folders with missing, duplicate, damaged or special members."""

from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path

import numpy as np

IMAGE_DEID = ("otsu", "nuclei", "deid")
STUDY_UID = "1.2.826.0.1.3680043.8.498.77"
NAN, INF = float("nan"), float("inf")


@contextlib.contextmanager
def lenient():
    """Let pydicom write invalid values (the corpus is made of them)."""
    import pydicom.config as config

    old = config.settings.writing_validation_mode, config.settings.reading_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    config.settings.reading_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.writing_validation_mode, config.settings.reading_validation_mode = old


def slice_pixels(k: int = 0, rows: int = 32, cols: int = 28) -> np.ndarray:
    y, x = np.mgrid[:rows, :cols]
    disc = ((y - rows / 2) ** 2 + (x - cols / 2) ** 2) < (rows / 3.5) ** 2
    rng = np.random.default_rng(k)
    return (disc * 900 + rng.integers(0, 120, disc.shape) + 24).astype(np.int16)


def ct_slice(k: int = 0, series_uid: str = "1.2.826.0.1.3680043.8.498.77.1", rows: int = 32, cols: int = 28):
    """A valid CT slice (int16 stored, RescaleIntercept -1024), slice ``k`` of an axial series (2 mm apart)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"{series_uid}.{k + 1}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = "FUZZ-1", "Fuzz^Patient", "19700101"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = STUDY_UID, series_uid, STUDY_UID + ".9"
    ds.StudyDate, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "20260101", "CT", 1, k + 1
    ds.SeriesDescription = "fuzz series"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-20.0, -22.0, 2.0 * k]
    ds.PixelSpacing = [0.8, 0.8]
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = slice_pixels(k, rows, cols).tobytes()
    return ds


def to_bytes(ds) -> bytes:
    buf = io.BytesIO()
    with lenient():
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _set(ds, keyword: str, value):
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    with lenient():
        if value is None:
            if keyword in ds:
                del ds[keyword]
        else:
            tag = tag_for_keyword(keyword)
            ds.add_new(tag, dictionary_VR(tag), value)
    return ds


def raw_replace(blob: bytes, keyword: str, value: bytes) -> bytes:
    """Replace the value of a short-VR element (explicit VR little endian) in written bytes: any text, valid or not."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + dictionary_VR(tag).encode()
    at = blob.find(head)
    value = value + b" " * (len(value) % 2)
    if at >= 0:
        (length,) = struct.unpack("<H", blob[at + 6 : at + 8])
        return blob[:at + 6] + struct.pack("<H", len(value)) + value + blob[at + 8 + length:]
    at = blob.find(head[:4], 132 + 12)  # implicit VR: tag, 4-byte length
    if at < 0:
        raise ValueError(f"{keyword} not found")
    (length,) = struct.unpack("<I", blob[at + 4 : at + 8])
    return blob[:at + 4] + struct.pack("<I", len(value)) + value + blob[at + 8 + length:]


def _parses(value) -> bool:
    try:
        [float(v) for v in (value if isinstance(value, list) else [value])]
        return True
    except (TypeError, ValueError):
        return False


def _vn(v) -> str:
    return str(v).replace("\\", "_").replace(" ", "").replace("'", "").replace("[", "").replace("]", "").replace(",", "_")[:24]


def pixel_offset(blob: bytes) -> int:
    at = blob.rfind(struct.pack("<HH", 0x7FE0, 0x0010))
    return at + 12


def generate(w) -> None:
    good = to_bytes(ct_slice())
    w.file("dicom/valid", "dicom/valid.dcm", good, "dicom", IMAGE_DEID, "accept", "a valid CT slice: the control")

    # pixel description that disagrees with the pixel data
    cases = [
        ("Rows", 31, "refuse"), ("Rows", 33, "refuse"), ("Rows", 1, "refuse"), ("Rows", 0, "refuse"), ("Rows", 65535, "refuse"),
        ("Columns", 14, "refuse"), ("Columns", 56, "refuse"), ("Columns", 1, "refuse"), ("Columns", 0, "refuse"),
        ("BitsAllocated", 8, "refuse"), ("BitsAllocated", 32, "refuse"), ("BitsAllocated", 12, "refuse"), ("BitsAllocated", 0, "refuse"),
        ("BitsAllocated", 1, "refuse"), ("BitsStored", 0, "any"), ("BitsStored", 17, "any"), ("BitsStored", 12, "any"),
        ("HighBit", 31, "any"), ("PixelRepresentation", 2, "any"), ("PixelRepresentation", 0, "any"),
        ("SamplesPerPixel", 3, "refuse"), ("SamplesPerPixel", 0, "refuse"), ("SamplesPerPixel", 2, "refuse"),
        ("NumberOfFrames", 2, "refuse"), ("NumberOfFrames", 0, "refuse"), ("NumberOfFrames", 1000000, "refuse"),
        ("PhotometricInterpretation", "RGB", "refuse"), ("PhotometricInterpretation", "PALETTE COLOR", "refuse"),
        ("PhotometricInterpretation", "YBR_FULL", "refuse"), ("PhotometricInterpretation", "MONOCHROME1", "accept"),
        ("PhotometricInterpretation", "", "any"), ("PhotometricInterpretation", "XYZ", "any"),
        ("PlanarConfiguration", 1, "any"),
        ("RescaleSlope", 0, "refuse"), ("RescaleSlope", "nan", "refuse"), ("RescaleSlope", "inf", "refuse"),
        ("RescaleSlope", "-inf", "refuse"), ("RescaleSlope", "1e300", "refuse"), ("RescaleSlope", "abc", "any"),
        ("RescaleSlope", -1, "any"), ("RescaleSlope", "1e-300", "any"), ("RescaleIntercept", "nan", "refuse"),
        ("RescaleIntercept", "inf", "refuse"), ("RescaleIntercept", "1e308", "refuse"),
        ("PixelSpacing", [0, 0], "any"), ("PixelSpacing", [-1, 1], "any"), ("PixelSpacing", ["nan", "nan"], "refuse"),
        ("PixelSpacing", ["inf", 1], "refuse"), ("PixelSpacing", ["1e30", "1e30"], "refuse"), ("PixelSpacing", [1], "any"),
        ("PixelSpacing", ["a", "b"], "any"), ("PixelSpacing", None, "any"),
        ("ImageOrientationPatient", [0, 0, 0, 0, 0, 0], "refuse"), ("ImageOrientationPatient", [1, 0, 0, 1, 0, 0], "refuse"),
        ("ImageOrientationPatient", ["nan"] * 6, "refuse"), ("ImageOrientationPatient", [1, 0, 0, 0.5, 0.5, 0], "refuse"),
        ("ImageOrientationPatient", [1, 0, 0, 0, 1], "refuse"), ("ImageOrientationPatient", [2, 0, 0, 0, 2, 0], "any"),
        ("ImageOrientationPatient", None, "any"),
        ("ImagePositionPatient", ["nan", 0, 0], "refuse"), ("ImagePositionPatient", ["inf", 0, 0], "refuse"),
        ("ImagePositionPatient", [0, 0], "refuse"), ("ImagePositionPatient", ["1e300", 0, 0], "refuse"),
        ("ImagePositionPatient", None, "any"),
        ("SliceThickness", "nan", "any"), ("SliceThickness", -5, "any"), ("SliceThickness", "1e300", "any"),
        ("TransferSyntaxUID", "1.2.840.10008.1.2.4.50", "refuse"), ("TransferSyntaxUID", "1.2.840.10008.1.2.2", "any"),
        ("TransferSyntaxUID", "1.2.840.10008.1.2.1.99", "refuse"), ("TransferSyntaxUID", "1.2.3.4", "any"),
        ("TransferSyntaxUID", "1.2.840.10008.1.2.5", "refuse"), ("SOPClassUID", None, "any"), ("Modality", None, "any"),
        ("SeriesInstanceUID", None, "any"), ("PatientID", "x" * 10000, "any"),
        ("WindowCenter", "nan", "any"), ("WindowWidth", 0, "any"), ("PresentationLUTShape", "INVERSE", "accept"),
        ("PixelPaddingValue", 32000, "any"), ("LargestImagePixelValue", -5, "any"),
    ]  # fmt: skip
    for keyword, value, expect in cases:
        ds = ct_slice()
        raw = None
        if keyword == "TransferSyntaxUID":
            raw = value.encode() + b"\0" * (len(value) % 2)
        elif keyword in ("RescaleSlope", "PixelSpacing") and value is not None and not _parses(value):
            _set(ds, keyword, [1] * len(value) if isinstance(value, list) else 1)
            raw = "\\".join(value if isinstance(value, list) else [value]).encode()
        else:
            _set(ds, keyword, value)
        deid = "any"
        if keyword in ("SOPClassUID",):
            deid = "refuse"
        blob = to_bytes(ds) if raw is None else raw_replace(to_bytes(ds), keyword, raw)
        w.file(f"dicom/{keyword}={_vn(value)}", f"dicom/attr_{keyword}_{_vn(value)}.dcm", blob, "dicom", IMAGE_DEID, expect,
               f"{keyword} = {value!r}", overrides={"deid": deid})

    # pixel data longer or shorter than Rows x Columns
    for tag, pixels, expect in (
        ("rows-1", slice_pixels()[:-1], "refuse"), ("half-columns", slice_pixels()[:, :14], "refuse"),
        ("1x1", slice_pixels()[:1, :1], "refuse"), ("extra-row", np.vstack([slice_pixels(), slice_pixels()[:1]]), "refuse"),
        ("8bit-bytes", slice_pixels().astype(np.uint8), "refuse"), ("odd-extra-byte", None, "refuse"),
    ):
        ds = ct_slice()
        raw = pixels.tobytes() if pixels is not None else slice_pixels().tobytes() + b"\x00\x01"
        ds.PixelData = raw
        w.file(f"dicom/pixels-{tag}", f"dicom/pixels_{tag}.dcm", to_bytes(ds), "dicom", IMAGE_DEID, expect,
               "pixel data size disagrees with Rows x Columns", overrides={"deid": "any"})

    # truncations: header, before the pixels, inside the pixels
    px = pixel_offset(good)
    cuts = {"0": 0, "preamble": 100, "meta": 200, "header": px - 300, "before-pixels": px - 12, "pixel-tag": px - 6,
            "pixels-1": px + 1, "pixels-25pc": px + (len(good) - px) // 4, "pixels-half": (px + len(good)) // 2, "last-byte": len(good) - 1}
    for tag, cut in cuts.items():
        w.file(f"dicom/truncated-{tag}", f"dicom/trunc_{tag}.dcm", good[:cut], "dicom", IMAGE_DEID, "refuse", f"truncated at {cut}")

    # compressed files cut short or damaged (pydicom's own test files)
    from pydicom.data import get_testdata_file

    for name in ("JPEG2000.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm", "JPEG-lossy.dcm",
                 "MR_small.dcm", "CT_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "examples_palette.dcm", "rtdose.dcm",
                 "SC_rgb_rle_2frame.dcm"):
        src = Path(get_testdata_file(name))
        data = src.read_bytes()
        stem = name[:-4]
        w.file(f"dicom/real-{stem}", f"dicom/real_{stem}.dcm", data, "dicom", IMAGE_DEID, "any", f"pydicom's {name} as is")
        for frac in (0.5, 0.9, 0.999) if name != "image_dfl.dcm" else (0.5, 0.9):  # (its deflate stream ends before the file)
            cut = int(len(data) * frac) - 3  # (not on an element boundary: a file cut there is a valid shorter file)
            padding = data.rfind(b"\xfc\xff\xfc\xff")  # (FFFC,FFFC) Data Set Trailing Padding, after the pixel data
            inside_padding = 0 < padding < cut
            w.file(f"dicom/real-{stem}-cut{frac}", f"dicom/real_{stem}_cut{int(frac * 1000)}.dcm", data[:cut], "dicom", IMAGE_DEID,
                   "refuse", f"{name} truncated at {frac:.1%}" + (" (inside its trailing padding)" if inside_padding else ""),
                   # pixels complete, only the padding after them cut: an image read may use them; deid copies whole files
                   {"otsu": "any", "nuclei": "any"} if inside_padding else None)
        if stem in ("JPEG2000", "MR_small_RLE", "SC_rgb_jpeg_dcmtk"):
            blob = bytearray(data)
            for k in range(int(len(data) * 0.7), int(len(data) * 0.7) + 40, 4):
                blob[k] ^= 0xFF
            w.file(f"dicom/real-{stem}-flipped", f"dicom/real_{stem}_flipped.dcm", bytes(blob), "dicom", IMAGE_DEID, "any",
                   f"{name} with changed compressed bytes")

    # lying element lengths and deep sequences
    blob = bytearray(good)
    at = good.find(struct.pack("<HH", 0x0010, 0x0010))
    struct.pack_into("<H", blob, at + 6, 0xFFF0)
    w.file("dicom/length-PatientName-huge", "dicom/len_patientname.dcm", bytes(blob), "dicom", IMAGE_DEID, "refuse",
           "an element longer than the file")
    blob = bytearray(good)
    struct.pack_into("<I", blob, px - 4, 0x7FFFFFF0)
    w.file("dicom/length-PixelData-huge", "dicom/len_pixeldata.dcm", bytes(blob), "dicom", IMAGE_DEID, "refuse",
           "Pixel Data declares 2 GiB (the declared image complete)",
           {"otsu": "any", "nuclei": "any"})  # an image read uses the complete pixels (tests/io: corrupt pixel element length)
    blob = bytearray(good)
    struct.pack_into("<I", blob, px - 4, 0xFFFFFFFF)
    w.file("dicom/length-PixelData-undefined", "dicom/len_pixeldata_undef.dcm", bytes(blob), "dicom", IMAGE_DEID, "refuse",
           "native Pixel Data of undefined length")
    for depth in (200, 5000):
        tag = struct.pack("<HH", 0x0008, 0x1115) + b"SQ\x00\x00"
        opening = tag + struct.pack("<I", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        w.file(f"dicom/nested-{depth}", f"dicom/nested_{depth}.dcm", good[:at] + opening * depth + closing * depth + good[at:], "dicom",
               IMAGE_DEID, "any", f"sequences nested {depth} deep")
    w.file("dicom/no-preamble", "dicom/no_preamble.dcm", good[132:], "dicom", IMAGE_DEID, "any", "no preamble")
    w.file("dicom/preamble-only", "dicom/preamble_only.dcm", good[:132], "dicom", IMAGE_DEID, "refuse", "the preamble and nothing else")
    w.file("dicom/no-suffix", "dicom/IM000017", good, "dicom", IMAGE_DEID, "accept", "a DICOM file without a suffix")

    # multi-frame with frames that lie
    ds = ct_slice()
    ds.NumberOfFrames = 3
    ds.PixelData = np.stack([slice_pixels(i) for i in range(3)]).tobytes()
    w.file("dicom/multiframe-no-positions", "dicom/mf_nopos.dcm", to_bytes(ds), "dicom", IMAGE_DEID, "any", "3 frames, no positions")
    ds.PixelData = np.stack([slice_pixels(i) for i in range(2)]).tobytes()
    w.file("dicom/multiframe-short", "dicom/mf_short.dcm", to_bytes(ds), "dicom", IMAGE_DEID, "refuse", "3 frames declared, 2 stored",
           overrides={"deid": "any"})

    # seeded random header bytes
    rng = w.rng
    for i in range(120):
        blob = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            blob[rng.randrange(132, px)] = rng.randrange(256)
        w.file(f"dicom/random-header-{i}", f"dicom/rnd_hdr_{i:03d}.dcm", bytes(blob), "dicom", ("otsu", "deid"), "any",
               "random header bytes")
    for i in range(30):
        blob = bytearray(good)
        keep = rng.randrange(px, len(good))
        w.file(f"dicom/random-cut-{i}", f"dicom/rnd_cut_{i:03d}.dcm", bytes(blob[:keep]), "dicom", ("otsu", "deid"), "refuse",
               "truncated inside the pixel data")

    _series(w)


def _write_series(folder: Path, n: int = 6, **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    uid = kw.pop("series_uid", "1.2.826.0.1.3680043.8.498.77.2")
    paths = []
    for k in range(n):
        p = folder / f"IM{k:04d}.dcm"
        p.write_bytes(to_bytes(ct_slice(k, uid)))
        paths.append(p)
    return paths


def generate_series(w, tag: str, expect: str, note: str, mutate=None, overrides=None) -> None:
    folder = w.path(f"series/{tag}/x").parent
    paths = _write_series(folder)
    if mutate is not None:
        mutate(folder, paths)
    w.add(f"dicom-series/{tag}", f"series/{tag}", "dicom-series", IMAGE_DEID, expect, note, overrides)


def _rewrite(path: Path, **changes) -> None:
    import pydicom

    with lenient():
        ds = pydicom.dcmread(path)
    for k, v in changes.items():
        if k == "PixelData":
            ds.PixelData = v
        else:
            _set(ds, k, v)
    path.write_bytes(to_bytes(ds))


def _series(w) -> None:
    generate_series(w, "valid", "accept", "a valid 6-slice CT series")
    generate_series(w, "missing-slice", "refuse", "slice 3 of 6 missing", lambda f, p: p[3].unlink(), {"deid": "any"})
    generate_series(w, "duplicate-slice", "refuse", "slice 2 twice with other pixels",
                    lambda f, p: (f / "IM9999.dcm").write_bytes(to_bytes(_dup(2))), {"deid": "any"})
    generate_series(w, "truncated-middle", "refuse", "the middle slice truncated inside its pixels",
                    lambda f, p: p[3].write_bytes(p[3].read_bytes()[:-300]))
    generate_series(w, "truncated-header", "refuse", "the middle slice truncated inside its header",
                    lambda f, p: p[3].write_bytes(p[3].read_bytes()[:400]))
    generate_series(w, "rows-differ", "refuse", "one slice of another size",
                    lambda f, p: p[2].write_bytes(to_bytes(ct_slice(2, "1.2.826.0.1.3680043.8.498.77.2", rows=30))), {"deid": "any"})
    generate_series(w, "slope-zero", "refuse", "one slice with RescaleSlope 0", lambda f, p: _rewrite(p[1], RescaleSlope=0),
                    {"deid": "any"})
    generate_series(w, "ipp-nan", "refuse", "one slice with a NaN position", lambda f, p: _rewrite(p[4], ImagePositionPatient=["nan", 0, 0]),
                    {"deid": "any"})
    generate_series(w, "iop-mixed", "refuse", "one slice turned 90 degrees",
                    lambda f, p: _rewrite(p[2], ImageOrientationPatient=[0, 1, 0, 1, 0, 0]), {"deid": "any"})
    generate_series(w, "spacing-nan", "refuse", "PixelSpacing NaN in all slices",
                    lambda f, p: [_rewrite(x, PixelSpacing=["nan", "nan"]) for x in p], {"deid": "any"})
    generate_series(w, "spacing-huge", "refuse", "PixelSpacing 1e30 in all slices",
                    lambda f, p: [_rewrite(x, PixelSpacing=["1e30", "1e30"]) for x in p], {"deid": "any"})
    generate_series(w, "uneven", "refuse", "uneven slice positions",
                    lambda f, p: _rewrite(p[5], ImagePositionPatient=[-20.0, -22.0, 13.7]), {"deid": "any"})
    generate_series(w, "bits8-over-16", "refuse", "one slice declares 8 bits over 16-bit data",
                    lambda f, p: _rewrite(p[2], BitsAllocated=8, BitsStored=8, HighBit=7), {"deid": "any"})
    generate_series(w, "junk-file", "any", "a text file among the slices", lambda f, p: (f / "notes.txt").write_text("hello"))
    generate_series(w, "empty-file", "any", "an empty file among the slices", lambda f, p: (f / "IM0099.dcm").write_bytes(b""))
    generate_series(w, "fifo", "any", "a FIFO among the slices", lambda f, p: os.mkfifo(f / "IM0100.dcm"))
    generate_series(w, "link-dev-zero", "any", "a link to /dev/zero among the slices",
                    lambda f, p: os.symlink("/dev/zero", f / "IM0101.dcm"))
    generate_series(w, "link-loop", "any", "a symbolic link loop among the slices",
                    lambda f, p: (os.symlink(f / "loop_b", f / "loop_a"), os.symlink(f / "loop_a", f / "loop_b")))
    generate_series(w, "dir-loop", "any", "a link to its own folder", lambda f, p: os.symlink(f, f / "again"))
    generate_series(w, "two-series", "any", "two series in one folder", lambda f, p: [
        (f / f"B{k}.dcm").write_bytes(to_bytes(ct_slice(k, "1.2.826.0.1.3680043.8.498.77.3"))) for k in range(3)])


def _dup(k: int):
    ds = ct_slice(k, "1.2.826.0.1.3680043.8.498.77.2")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.77.2.999"
    ds.PixelData = (slice_pixels(k) + 7).astype(np.int16).tobytes()
    return ds
