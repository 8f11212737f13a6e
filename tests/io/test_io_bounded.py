"""Bounded decompression (medannot.io.bounded): gzip bombs stop at the cap (measured with tracemalloc),
declared sizes are checked before allocating, and zip members that lie, are encrypted, use an unknown
method or nest archives are refused with one line."""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
import zipfile
import zlib

import pytest

from medannot.errors import InputError
from medannot.io.bounded import (
    BoundedGzipReader,
    InflateBudget,
    InflateLimits,
    ZipLimits,
    check_declared,
    check_zip,
    declared_nbytes,
    extract_member,
    gunzip_bytes,
    gunzip_to_file,
    open_zip,
    read_exactly,
    read_member_bytes,
)

MiB = 1 << 20


def zeros_gz(n: int, prefix: bytes = b"") -> bytes:
    """gzip of ``prefix`` + ``n`` zero bytes, compressed chunk by chunk (never holds ``n`` bytes)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(prefix)]
    block = b"\0" * (4 * MiB)
    while n > 0:
        k = min(n, len(block))
        out.append(c.compress(block[:k]))
        n -= k
    out.append(c.flush())
    return b"".join(out)


def test_round_trip_within_the_cap():
    data = bytes(range(256)) * 1000
    assert gunzip_bytes(gzip.compress(data), InflateLimits(max_bytes=len(data))) == data


def test_concatenated_members_and_zero_padding_are_one_stream():
    blob = gzip.compress(b"abc") + gzip.compress(b"def") + b"\0" * 100
    assert gunzip_bytes(blob, InflateLimits(max_bytes=100)) == b"abcdef"


def test_gzip_bomb_stops_at_the_cap_without_inflating_it_all():
    bomb = zeros_gz(1 << 30)  # 1 GiB of zeros in ~1 MiB
    assert len(bomb) < 2 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="inflates to more than 64.0 MiB"):
            gunzip_bytes(bomb, InflateLimits(max_bytes=64 * MiB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * MiB, f"peak {peak / MiB:.0f} MiB while refusing a bomb capped at 64 MiB"


def test_ratio_cap_uses_the_compressed_size():
    bomb = zeros_gz(50 * MiB)
    with pytest.raises(InputError, match="inflates to more than"):
        gunzip_bytes(bomb, InflateLimits(max_bytes=1 << 30, max_ratio=100))
    # the same stream read without a known size: ratio of bytes inflated so far to bytes read
    with pytest.raises(InputError, match="inflates more than 100:1"):
        BoundedGzipReader(io.BytesIO(bomb), InflateLimits(max_bytes=1 << 30, max_ratio=100)).read_all()
    small = gzip.compress(b"\0" * 1000)  # tiny inputs are never refused for their ratio (grace)
    assert gunzip_bytes(small, InflateLimits(max_bytes=1 << 30, max_ratio=2)) == b"\0" * 1000


def test_a_prefix_can_be_read_from_a_bomb_without_error():
    header = b"H" * 348
    reader = BoundedGzipReader(io.BytesIO(zeros_gz(1 << 30, header)), InflateLimits(max_bytes=1000))
    assert read_exactly(reader, 348) == header
    with pytest.raises(InputError, match="inflates to more than"):
        reader.read_all()


@pytest.mark.parametrize("damage,match", [
    (lambda b: b[: len(b) // 2], "ends early"),
    (lambda b: b[:-8] + b"\0" * 8, "damaged"),  # CRC and length zeroed
    (lambda b: b + b"garbage", "after the end"),
    (lambda b: b"", "empty"),
])
def test_damaged_streams_are_one_line_errors(damage, match):
    blob = damage(gzip.compress(bytes(range(256)) * 400))
    with pytest.raises(InputError, match=match) as info:
        BoundedGzipReader(io.BytesIO(blob), InflateLimits(max_bytes=MiB), what="x.nii.gz").read_all()
    assert "\n" not in str(info.value) and str(info.value).startswith("x.nii.gz: ")


def test_not_gzip_and_read_exactly_short():
    with pytest.raises(InputError, match="not gzip"):
        gunzip_bytes(b"plain", InflateLimits(max_bytes=10))
    with pytest.raises(InputError, match="ends after 3 bytes but 10"):
        read_exactly(io.BytesIO(b"abc"), 10)


def test_gunzip_to_file_streams(tmp_path):
    data = b"x" * (3 * MiB)
    assert gunzip_to_file(io.BytesIO(gzip.compress(data)), tmp_path / "o", InflateLimits(max_bytes=4 * MiB)) == len(data)
    assert (tmp_path / "o").read_bytes() == data
    with pytest.raises(InputError):
        gunzip_to_file(io.BytesIO(gzip.compress(data)), tmp_path / "o", InflateLimits(max_bytes=MiB))


def test_declared_sizes_are_checked_before_allocating():
    assert declared_nbytes((512, 512, 512), 2) == 2 * 512**3
    assert declared_nbytes((2**40, 2**40), 8) == 2**83  # Python ints: no overflow to a small number
    with pytest.raises(InputError, match="negative dimension"):
        declared_nbytes((10, -1), 1)
    check_declared(100, 100)
    with pytest.raises(InputError, match="more than the 1.0 GiB allowed"):
        check_declared(declared_nbytes((2**40, 2**40), 8), 1 << 30, what="x")
    with pytest.raises(InputError, match="ratio 2048:1"):  # 127 KiB declaring 256 MiB of voxels
        check_declared(2 * 512**3, 1 << 30, compressed_size=2 * 512**3 // 2048, max_ratio=200)
    check_declared(2 * 512**3, 1 << 30, compressed_size=2 * 512**3 // 100, max_ratio=200)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _patch_central(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Change a field of the (first) central directory entry and the matching local header field."""
    out = bytearray(raw)
    cd = out.rfind(b"PK\x01\x02")
    struct.pack_into(fmt, out, cd + offset, value)
    local = {8: 6, 10: 8, 20: 18, 24: 22}.get(offset)  # flags, method, compressed size, size
    if local is not None:
        struct.pack_into(fmt, out, local, value)
    return bytes(out)


def test_zip_members_checked_and_extracted(tmp_path):
    raw = _zip({"a/b.nii": b"v" * 5000, "c.txt": b"hello", "d/": b""})
    zf = open_zip(io.BytesIO(raw))
    members = check_zip(zf, ZipLimits(max_members=5, max_total_bytes=10_000))
    assert [m.filename for m in members] == ["a/b.nii", "c.txt"]
    assert extract_member(zf, members[0], tmp_path / "b.nii") == 5000
    assert read_member_bytes(zf, members[1]) == b"hello"
    with pytest.raises(InputError, match="2 files, more than the 1 allowed"):
        check_zip(zf, ZipLimits(max_members=1))
    with pytest.raises(InputError, match="more than the 4.9 KiB allowed"):
        check_zip(zf, ZipLimits(max_total_bytes=5004))
    budget = InflateBudget(limit=4000)
    with pytest.raises(InputError, match="in all"):
        extract_member(zf, members[0], io.BytesIO(), "z", budget)


@pytest.mark.parametrize("field_offset,fmt,value,match", [
    (24, "<I", 100, "is damaged .Bad CRC"),  # declared size smaller: zipfile stops there, the CRC fails
    (24, "<I", 9000, "holds 5000 bytes but declares 9000"),     # declared size larger
    (8, "<H", 0x1, "encrypted"),                                  # encrypted flag
    (10, "<H", 99, "compression method 99"),                      # AES (method 99)
])
def test_lying_encrypted_and_unknown_method_members(field_offset, fmt, value, match):
    raw = _patch_central(_zip({"m.nii": bytes(range(250)) * 20}), field_offset, fmt, value)
    zf = open_zip(io.BytesIO(raw), "up.zip")
    with pytest.raises(InputError, match=match) as info:
        for m in check_zip(zf, ZipLimits(), "up.zip"):
            extract_member(zf, m, io.BytesIO(), "up.zip")
    assert "\n" not in str(info.value) and str(info.value).startswith("up.zip: member 'm.nii'")


def test_extract_refuses_unchecked_encrypted_or_unknown_method_members_too():
    for offset, value, match in ((8, 0x1, "without a password"), (10, 99, "method 99")):
        raw = _patch_central(_zip({"m.nii": b"q" * 3000}), offset, "<H", value)
        zf = open_zip(io.BytesIO(raw))
        with pytest.raises(InputError, match=match):
            extract_member(zf, zf.infolist()[0], io.BytesIO())


def test_ratio_nesting_stored_size_and_not_a_zip():
    bomb = _zip({"z.nii": b"\0" * (20 * MiB)})
    with pytest.raises(InputError, match="decompression bomb"):
        check_zip(open_zip(io.BytesIO(bomb)), ZipLimits(max_ratio=100))
    inner = _zip({"x.nii": b"x"})
    nested = _zip({"inner.zip": inner, "disguised.nii": inner})
    zf = open_zip(io.BytesIO(nested))
    with pytest.raises(InputError, match="archive inside the archive"):
        check_zip(zf, ZipLimits())
    assert len(check_zip(zf, ZipLimits(max_depth=1))) == 2
    disguised = zf.getinfo("disguised.nii")
    with pytest.raises(InputError, match="archive inside the archive"):
        extract_member(zf, disguised, io.BytesIO(), limits=ZipLimits())
    stored = _patch_central(_zip({"s.nii": b"s" * 100}, zipfile.ZIP_STORED), 24, "<I", 5000)
    with pytest.raises(InputError, match="stored uncompressed but declares 5000"):
        check_zip(open_zip(io.BytesIO(stored)), ZipLimits())
    with pytest.raises(InputError, match="not a readable zip"):
        open_zip(io.BytesIO(b"PK\x03\x04 not really"), "fake.zip")
