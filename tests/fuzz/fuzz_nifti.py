"""NIfTI-1 inputs for the corpus: every header field set to hostile values, truncations, non-finite voxels,
degenerate shapes, gzip bombs and damaged gzip streams, and seeded random byte changes."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

IMAGE = ("otsu", "nuclei")

#: (name, byte offset, struct format) of NIfTI-1 header fields (little endian).
FIELDS = {
    "sizeof_hdr": (0, "i"), "dim_info": (39, "B"), "dim0": (40, "h"), "dim1": (42, "h"), "dim2": (44, "h"), "dim3": (46, "h"),
    "dim4": (48, "h"), "dim5": (50, "h"), "dim6": (52, "h"), "dim7": (54, "h"), "intent_p1": (56, "f"), "intent_code": (68, "h"),
    "datatype": (70, "h"), "bitpix": (72, "h"), "slice_start": (74, "h"), "qfac": (76, "f"), "pixdim1": (80, "f"),
    "pixdim2": (84, "f"), "pixdim3": (88, "f"), "pixdim4": (92, "f"), "vox_offset": (108, "f"), "scl_slope": (112, "f"),
    "scl_inter": (116, "f"), "slice_end": (120, "h"), "slice_code": (122, "B"), "xyzt_units": (123, "B"), "cal_max": (124, "f"),
    "cal_min": (128, "f"), "slice_duration": (132, "f"), "toffset": (136, "f"), "qform_code": (252, "h"), "sform_code": (254, "h"),
    "quatern_b": (256, "f"), "quatern_c": (260, "f"), "quatern_d": (264, "f"), "qoffset_x": (268, "f"), "qoffset_y": (272, "f"),
    "qoffset_z": (276, "f"), "srow_x0": (280, "f"), "srow_x1": (284, "f"), "srow_x3": (292, "f"), "srow_y1": (300, "f"),
    "srow_z2": (320, "f"), "srow_z3": (324, "f"),
}  # fmt: skip
NAN, INF = float("nan"), float("inf")
FLOATS = [0.0, -1.0, NAN, INF, -INF, 1e30, 3.4e38, 1e-30]
INTS16 = [0, -1, 1, 2, 7, 8, 255, 32767, -32768]


def base_volume() -> np.ndarray:
    """A small int16 volume with a bright ball (so Otsu finds something), 20 x 16 x 10."""
    x, y, z = np.mgrid[:20, :16, :10]
    ball = ((x - 10) ** 2 + (y - 8) ** 2 + ((z - 5) * 1.5) ** 2) < 30
    rng = np.random.default_rng(0)
    return (ball * 800 + rng.integers(0, 100, ball.shape)).astype(np.int16)


def nifti_bytes(data: np.ndarray, qform_only: bool = False, spacing=(1.5, 1.5, 2.0)) -> bytes:
    """A valid single-file NIfTI-1 (sform and qform set, or the qform alone)."""
    import nibabel as nib

    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = [-15.0, -12.0, -10.0]
    img = nib.Nifti1Image(data, aff, dtype=data.dtype if data.dtype.kind in "iu" and data.dtype.itemsize == 8 else None)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=0 if qform_only else 1)
    img.header.set_xyzt_units("mm", "sec")
    return img.to_bytes()


def patch(blob: bytes, name: str, value) -> bytes:
    offset, fmt = FIELDS[name]
    out = bytearray(blob)
    if fmt in "hiB" and isinstance(value, float):
        value = int(value)
    struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def zero_members(total: int, member: int = 64 << 20) -> bytes:
    """A multi-member gzip stream of ``total`` zero bytes (one compressed member repeated: cheap to make)."""
    one = gzip.compress(bytes(member), compresslevel=9, mtime=0)
    n, rest = divmod(total, member)
    return one * n + (gzip.compress(bytes(rest), mtime=0) if rest else b"")


def _value_name(v) -> str:
    return str(v).replace("-", "m").replace("+", "").replace(".", "p")


def generate(w) -> None:
    vol = base_volume()
    good = nifti_bytes(vol)
    good_q = nifti_bytes(vol, qform_only=True)
    w.file("nifti/valid", "nifti/valid.nii", good, "nifti", IMAGE, "accept", "a valid image: the control")
    w.file("nifti-gz/valid", "nifti/valid_gz.nii.gz", gz(good), "nifti-gz", IMAGE, "accept", "a valid gzipped image")

    # every header field set to hostile values (sform+qform and qform-only bases)
    for name, (_, fmt) in FIELDS.items():
        values = FLOATS if fmt == "f" else INTS16 if fmt == "h" else [0, 255] if fmt == "B" else [0, -1, 347, 540, 1 << 30]
        for v in values:
            for base, tag in ((good, ""), (good_q, "q")) if name.startswith(("pixdim", "quatern", "qoffset", "qfac")) else ((good, ""),):
                rel = f"nifti/hdr_{name}{tag}_{_value_name(v)}.nii"
                expect = "any"
                if name.startswith(("pixdim1", "pixdim2", "pixdim3", "quatern", "qoffset")) and tag == "q" and v != v:
                    expect = "refuse"  # NaN geometry of the affine in use (qfac: any value other than -1 means 1; pixdim4+: time)
                if name.startswith(("pixdim1", "pixdim2", "pixdim3")) and tag == "q" and v in (INF, -INF, 1e30, 3.4e38):
                    expect = "refuse"  # "huge qform pixdim"
                if name.startswith("srow") and (v != v or v in (INF, -INF)):
                    expect = "refuse"
                if name in ("scl_slope", "scl_inter") and (v != v or v in (INF, -INF)) and not (name == "scl_slope" and v != v):
                    expect = "refuse"  # infinite values after scaling (a NaN slope means "no scaling")
                if name == "scl_slope" and v == 3.4e38:
                    expect = "refuse"  # stored values above 1 overflow float32 (an intercept of 3.4e38 alone stays finite)
                if name in ("dim1", "dim2", "dim3") and isinstance(v, int) and v > 20:
                    expect = "refuse"  # declares more voxels than the file holds
                w.file(f"nifti/{name}{tag}={v}", rel, patch(base, name, v), "nifti", IMAGE, expect, f"header {name} = {v}")

    # more voxels declared than held, or fewer
    for dims in ((20, 16, 11), (20, 16, 1000), (32767, 32767, 32767), (1, 1, 32767), (20, 16, 10, 2), (20, 16, 10, 1, 3)):
        blob = good
        for i, d in enumerate(dims, start=1):
            blob = patch(blob, f"dim{i}", d)
        blob = patch(blob, "dim0", len(dims))
        size = int(np.prod(dims)) * 2
        expect = "refuse" if size > vol.nbytes else "any"
        w.file(f"nifti/dims={'x'.join(map(str, dims))}", f"nifti/dims_{'x'.join(map(str, dims))}.nii", blob, "nifti", IMAGE, expect,
               "declared shape differs from the voxels stored")

    # truncations
    for cut in (0, 4, 100, 347, 348, 351, 352, 353, 600, len(good) // 2, len(good) - 1):
        expect = "refuse"
        w.file(f"nifti/truncated@{cut}", f"nifti/trunc_{cut}.nii", good[:cut], "nifti", IMAGE, expect, "truncated file")

    # voxels: non-finite, constant, extremes, datatypes
    f = vol.astype(np.float32)
    for tag, arr, expect in (
        ("nan1", np.where(vol > 850, np.nan, f).astype(np.float32), "refuse"),
        ("inf1", np.where(vol > 850, np.inf, f).astype(np.float32), "refuse"),
        ("ninf", np.where(vol > 850, -np.inf, f).astype(np.float32), "refuse"),
        ("allnan", np.full(vol.shape, np.nan, np.float32), "refuse"),
        ("const", np.full(vol.shape, 7, np.int16), "any"),
        ("zeros", np.zeros(vol.shape, np.uint8), "any"),
        ("f64huge", f.astype(np.float64) * 1e300, "any"),
        ("f32max", np.where(vol > 850, np.float32(3.4e38), f).astype(np.float32), "any"),
        ("u64", vol.astype(np.uint64) * np.uint64(2**40), "any"),
        ("i8", (vol // 8).astype(np.int8), "any"),
        ("u8bin", (vol > 500).astype(np.uint8), "any"),
        ("complex", f.astype(np.complex64), "any"),
        ("thin1x1x32767", (np.arange(32767) % 300).astype(np.int16).reshape(1, 1, 32767), "any"),
        ("thin1x5000x1", (np.arange(5000) % 300).astype(np.int16).reshape(1, 5000, 1), "any"),
        ("onevox", np.ones((1, 1, 1), np.int16), "any"),
        ("4d3", np.stack([vol] * 3, -1), "any"),
        ("4d60", np.stack([vol] * 60, -1), "any"),
        ("2d", vol[:, :, 0], "any"),
    ):
        blob = nifti_bytes(arr)
        w.file(f"nifti/data-{tag}", f"nifti/data_{tag}.nii", blob, "nifti", IMAGE, expect, f"voxels: {tag}")
        if tag in ("nan1", "inf1", "thin1x1x32767", "4d3"):
            w.file(f"nifti-gz/data-{tag}", f"nifti/data_{tag}.nii.gz", gz(blob), "nifti-gz", IMAGE, expect, f"voxels: {tag}")

    # RGB / vector datatypes written by nibabel
    rgb = np.zeros(vol.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = vol // 4
    w.file("nifti/data-rgb24", "nifti/data_rgb24.nii", nifti_bytes(rgb), "nifti", IMAGE, "any", "RGB24 voxels")

    # header extensions with bad sizes
    for esize in (-16, 0, 7, 16, 1 << 30, (1 << 31) - 1, 24):
        blob = bytearray(good[:348]) + struct.pack("<4B", 1, 0, 0, 0) + struct.pack("<ii", esize, 6) + bytes(8) + good[352:]
        blob = patch(bytes(blob), "vox_offset", float(352 + 16))
        expect = "any" if esize == 16 else "refuse"
        w.file(f"nifti/ext-esize={esize}", f"nifti/ext_esize_{_value_name(esize)}.nii", blob, "nifti", IMAGE, expect,
               "header extension of a wrong size")
    w.file("nifti/ext-flag-noext", "nifti/ext_flag_noext.nii", bytes(good[:348]) + b"\x01\0\0\0" + good[352:], "nifti", IMAGE, "any",
           "extension flag set, voxels straight after")

    # magic and byte order
    for magic in (b"XXXX", b"ni1\x00", b"n+2\x00", b"\x00\x00\x00\x00"):
        blob = bytearray(good)
        blob[344:348] = magic
        w.file(f"nifti/magic={magic!r}", f"nifti/magic_{magic[:3].hex()}.nii", bytes(blob), "nifti", IMAGE, "any", "bad magic")
    big = np.ascontiguousarray(vol.astype(">i2"))
    w.file("nifti/big-endian", "nifti/big_endian.nii", nifti_bytes(big), "nifti", IMAGE, "accept", "big-endian file")

    # gzip: bombs, damaged streams, lying sizes
    header_big = patch(patch(patch(patch(good[:352], "dim1", 2048), "dim2", 2048), "dim3", 600), "datatype", 16)
    header_big = patch(header_big, "bitpix", 32)
    w.file("nifti-gz/bomb-9GiB", "nifti/bomb_9gib.nii.gz", gz(header_big) + zero_members(256 << 20), "nifti-gz", IMAGE, "refuse",
           "declares 9.4 GiB, holds zeros")
    for total, tag in ((2500 << 20, "2.5GB"), (4200 << 20, "4.2GB")):
        side = int(round((total / 2) ** (1 / 3)))
        hdr = patch(patch(patch(good[:352], "dim1", side), "dim2", side), "dim3", side)
        w.file(f"nifti-gz/bomb-{tag}", f"nifti/bomb_{tag}.nii.gz", gz(hdr) + zero_members(side**3 * 2), "nifti-gz", IMAGE, "refuse",
               f"a gzip bomb inflating to {tag}")
    hdr = patch(patch(patch(good[:352], "dim1", 512), "dim2", 512), "dim3", 300)
    w.file("nifti-gz/bomb-150MB", "nifti/bomb_150mb.nii.gz", gz(hdr) + zero_members(512 * 512 * 300 * 2), "nifti-gz", IMAGE, "refuse",
           "150 MB of zeros in 150 KB: a ratio no image has")
    w.file("nifti-gz/trailing-zeros-1GB", "nifti/trailing_1gb.nii.gz", gz(good) + zero_members(1 << 30), "nifti-gz", IMAGE, "refuse",
           "a valid image followed by 1 GiB of zeros")
    w.file("nifti-gz/not-gzip", "nifti/not_gzip.nii.gz", good, "nifti-gz", IMAGE, "any", "named .nii.gz, not gzipped")
    comp = gz(good)
    for where in (10, 11, 20, len(comp) // 3, len(comp) // 2, len(comp) - 12, len(comp) - 8, len(comp) - 5, len(comp) - 1):
        blob = bytearray(comp)
        blob[where] ^= 0x5A
        w.file(f"nifti-gz/byte@{where}", f"nifti/gzbyte_{where}.nii.gz", bytes(blob), "nifti-gz", IMAGE, "refuse",
               "one stored byte of the gzip stream changed")
    for cut in (2, 10, 30, len(comp) // 2, len(comp) - 8, len(comp) - 1):
        w.file(f"nifti-gz/truncated@{cut}", f"nifti/gztrunc_{cut}.nii.gz", comp[:cut], "nifti-gz", IMAGE, "refuse", "truncated gzip")
    w.file("nifti-gz/garbage-after", "nifti/gz_garbage_after.nii.gz", comp + b"GARBAGE" * 10, "nifti-gz", IMAGE, "refuse",
           "bytes after the gzip stream")
    w.file("nifti-gz/two-members", "nifti/gz_two_members.nii.gz", gz(good[:1000]) + gz(good[1000:]), "nifti-gz", IMAGE, "accept",
           "two gzip members (valid)")
    w.file("nifti-gz/raw-deflate", "nifti/raw_deflate.nii.gz", zlib.compress(good), "nifti-gz", IMAGE, "any", "zlib, not gzip")
    w.file("nifti-gz/fewer-voxels", "nifti/gz_fewer_voxels.nii.gz", gz(good[:-200]), "nifti-gz", IMAGE, "refuse",
           "the stream ends before the declared voxels")
    for name, v in (("dim3", 1000), ("scl_slope", INF), ("pixdim1", NAN), ("vox_offset", 1e12), ("datatype", 999)):
        base = good_q if name.startswith("pixdim") else good
        expect = "any" if name == "datatype" else "refuse"
        w.file(f"nifti-gz/{name}={v}", f"nifti/gz_{name}_{_value_name(v)}.nii.gz", gz(patch(base, name, v)), "nifti-gz", IMAGE, expect,
               f"gzipped, header {name} = {v}")

    # seeded random changes: header bytes, any bytes, gzip bytes
    rng = w.rng
    for i in range(120):
        blob = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            blob[rng.randrange(0, 352)] = rng.randrange(256)
        w.file(f"nifti/random-header-{i}", f"nifti/rnd_hdr_{i:03d}.nii", bytes(blob), "nifti", ("otsu",), "any", "random header bytes")
    for i in range(40):
        blob = bytearray(good_q)
        for _ in range(rng.randint(1, 3)):
            off = rng.choice([40, 42, 44, 46, 70, 72, 76, 80, 84, 88, 108, 112, 116, 252, 254, 256, 260, 264, 268, 272, 276])
            blob[off + rng.randrange(0, 4 if off >= 76 and off not in (252, 254) else 2)] = rng.randrange(256)
        w.file(f"nifti/random-field-{i}", f"nifti/rnd_field_{i:03d}.nii", bytes(blob), "nifti", ("otsu",), "any", "random field bytes")
    for i in range(40):
        blob = bytearray(comp)
        pos = rng.randrange(10, len(comp))
        blob[pos] = (blob[pos] + rng.randrange(1, 256)) % 256
        w.file(f"nifti-gz/random-byte-{i}", f"nifti/rnd_gz_{i:03d}.nii.gz", bytes(blob), "nifti-gz", ("otsu",), "refuse",
               "one random byte of the gzip stream changed")
