"""PNG / JPEG / TIFF / BMP inputs for the corpus: crafted chunks (palette indices out of range, wrong CRCs,
huge or zero sizes, text bombs), colour layouts a user means as grey (RGBA, planar RGB TIFF), TIFF resolutions
near 0, non-finite float pixels, lying strip sizes, truncations and seeded random byte changes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

IMAGE = ("otsu", "nuclei")
#: What a grey method must do with a colour picture (channels that differ): read it, or refuse it with one line saying
#: how to make it grey (medannot reads a picture stored as colour with equal channels as grey: those are "accept").
COLOUR = "any"


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) if crc is None else crc)


def png(width: int, height: int, depth: int, colour: int, rows: bytes, extra: list[bytes] | None = None, ihdr_crc: int | None = None,
        interlace: int = 0, level: int = 9) -> bytes:
    """A PNG from raw filtered scanlines (``rows`` already carries a filter byte per row)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", ihdr, ihdr_crc)]
    parts += extra or []
    parts += [chunk(b"IDAT", zlib.compress(rows, level)), chunk(b"IEND", b"")]
    return b"".join(parts)


def zlib_zeros(n: int) -> bytes:
    """A zlib stream of ``n`` zero bytes (multiple of 16 MiB), one full-flushed block repeated."""
    chunk = 16 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    adler = ((chunk * (n // chunk) % 65521) << 16) | 1
    return b"\x78\xda" + one * (n // chunk) + end + struct.pack(">I", adler)


def scanlines(arr: np.ndarray, filter_type: int = 0) -> bytes:
    """Rows of ``arr`` (H, W[, C]) in big-endian sample order with a filter byte each (0: none, 2: up, rows equal)."""
    a = arr if arr.dtype.itemsize == 1 else arr.astype(arr.dtype.newbyteorder(">"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    out = io.BytesIO()
    prev = None
    for r in rows:
        if filter_type == 2 and prev is not None:
            out.write(b"\x02" + (r.astype(np.int16) - prev.astype(np.int16)).astype(np.uint8).tobytes())
        else:
            out.write(b"\x00" + r.tobytes())
        prev = r
    return out.getvalue()


def picture(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    blobs = (((y - h / 3) ** 2 + (x - w / 3) ** 2) < (h / 6) ** 2) | (((y - 2 * h / 3) ** 2 + (x - 2 * w / 3) ** 2) < (h / 7) ** 2)
    rng = np.random.default_rng(seed)
    return (blobs * 170 + rng.integers(0, 60, blobs.shape)).astype(np.uint8)


def pil_bytes(arr: np.ndarray, fmt: str, mode: str | None = None, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt, **kw) if mode else Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def tiff_bytes(arr: np.ndarray, **kw) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def generate(w) -> None:
    g = picture()
    rgb = np.stack([g, np.roll(g, 5, 1), 255 - g], -1)
    w.file("raster/png-grey", "raster/grey.png", pil_bytes(g, "PNG"), "raster", IMAGE, "accept", "valid grey PNG")
    w.file("raster/png-grey16", "raster/grey16.png", png(64, 48, 16, 0, scanlines(g.astype(np.uint16) * 200)), "raster", IMAGE, "accept",
           "16-bit grey PNG")
    w.file("raster/png-rgb", "raster/rgb.png", pil_bytes(rgb, "PNG"), "raster", IMAGE, COLOUR, "RGB PNG (colour)")
    rgba = np.dstack([rgb, np.full(g.shape, 255, np.uint8)])
    w.file("raster/png-rgba", "raster/rgba.png", pil_bytes(rgba, "PNG"), "raster", IMAGE, COLOUR, "RGBA PNG, colour")
    grey_rgba = np.dstack([g, g, g, np.full(g.shape, 255, np.uint8)])
    w.file("raster/png-rgba-grey", "raster/rgba_grey.png", pil_bytes(grey_rgba, "PNG"), "raster", IMAGE, "accept",
           "RGBA PNG whose channels are equal (a grey picture saved as RGBA)")
    w.file("raster/png-la", "raster/la.png", pil_bytes(np.dstack([g, np.full(g.shape, 200, np.uint8)]), "PNG", mode="LA"), "raster",
           IMAGE, "accept", "grey + alpha")
    w.file("raster/png-rgb16", "raster/rgb16.png", png(64, 48, 16, 2, scanlines(rgb.astype(np.uint16) * 250)), "raster", IMAGE, "any",
           "16-bit RGB")
    w.file("raster/png-1bit", "raster/onebit.png", pil_bytes(g > 100, "PNG"), "raster", IMAGE, "any", "1-bit PNG")

    # palettes
    pal_grey = b"".join(bytes([v, v, v]) for v in range(256))
    idx = scanlines(g)
    w.file("raster/png-palette-grey", "raster/pal_grey.png", png(64, 48, 8, 3, idx, [chunk(b"PLTE", pal_grey)]), "raster", IMAGE,
           "accept", "grey palette")
    pal_col = b"".join(bytes([v, 255 - v, (v * 3) % 256]) for v in range(256))
    w.file("raster/png-palette-colour", "raster/pal_colour.png", png(64, 48, 8, 3, idx, [chunk(b"PLTE", pal_col)]), "raster", IMAGE,
           COLOUR, "colour palette")
    w.file("raster/png-palette-out-of-range", "raster/pal_oor.png", png(64, 48, 8, 3, idx, [chunk(b"PLTE", pal_grey[:12])]), "raster",
           IMAGE, "refuse", "indices up to 229 with a 4-entry palette")
    w.file("raster/png-palette-missing", "raster/pal_missing.png", png(64, 48, 8, 3, idx), "raster", IMAGE, "refuse", "no PLTE")
    w.file("raster/png-palette-trns", "raster/pal_trns.png", png(64, 48, 8, 3, idx, [chunk(b"PLTE", pal_col), chunk(b"tRNS", bytes(200))]),
           "raster", IMAGE, "any", "palette with transparency")

    # sizes
    w.file("raster/png-zero-width", "raster/zero_w.png", png(0, 48, 8, 0, b""), "raster", IMAGE, "refuse", "width 0")
    w.file("raster/png-huge-declared", "raster/huge_decl.png", png(2**31 - 1, 2**31 - 1, 8, 0, scanlines(g)), "raster", IMAGE, "refuse",
           "declares 2^31 x 2^31")
    w.file("raster/png-65535sq-rows-short", "raster/big_short.png", png(65535, 65535, 8, 0, scanlines(g)), "raster", IMAGE, "refuse",
           "declares 65535 x 65535, holds 48 rows of 64")
    line = np.random.default_rng(1).integers(0, 255, 12000).astype(np.uint8)
    same = scanlines(np.tile(line, (12000, 1)), filter_type=2)
    w.file("raster/png-12000sq-bomb", "raster/big_12000_bomb.png", png(12000, 12000, 8, 0, same, level=1), "raster", IMAGE, "any",
           "12000 x 12000 of one repeated row (a ratio no picture has)")
    runs = np.repeat(np.random.default_rng(2).integers(0, 255, (12000, 120)).astype(np.uint8), 100, axis=1)
    w.file("raster/png-12000sq", "raster/big_12000.png", png(12000, 12000, 8, 0, scanlines(runs), level=1), "raster", IMAGE, "any",
           "12000 x 12000 picture of runs (~100:1)")
    w.file("raster/png-1x5000", "raster/thin_1x5000.png", pil_bytes(np.arange(5000, dtype=np.uint16).astype(np.uint8)[None], "PNG"),
           "raster", IMAGE, "any", "1 x 5000 picture")
    w.file("raster/png-5000x1", "raster/thin_5000x1.png", pil_bytes(np.arange(5000, dtype=np.uint16).astype(np.uint8)[:, None], "PNG"),
           "raster", IMAGE, "any", "5000 x 1 picture")
    w.file("raster/png-1x1", "raster/one.png", pil_bytes(np.array([[7]], np.uint8), "PNG"), "raster", IMAGE, "any", "one pixel")

    # damaged chunks
    valid = pil_bytes(g, "PNG")
    w.file("raster/png-ihdr-crc", "raster/ihdr_crc.png", png(64, 48, 8, 0, scanlines(g), ihdr_crc=1234), "raster", IMAGE, "refuse",
           "wrong IHDR CRC")
    for cut in (8, 20, 33, 60, len(valid) // 2, len(valid) - 13, len(valid) - 1):
        expect = "any" if cut >= len(valid) - 12 else "refuse"
        w.file(f"raster/png-truncated@{cut}", f"raster/png_trunc_{cut}.png", valid[:cut], "raster", IMAGE, expect, "truncated PNG")
    w.file("raster/png-bad-depth", "raster/bad_depth.png", png(64, 48, 3, 0, scanlines(g)), "raster", IMAGE, "refuse", "bit depth 3")
    w.file("raster/png-bad-colour", "raster/bad_colour.png", png(64, 48, 8, 5, scanlines(g)), "raster", IMAGE, "refuse", "colour type 5")
    w.file("raster/png-rows-short", "raster/rows_short.png", png(64, 96, 8, 0, scanlines(g)), "raster", IMAGE, "refuse",
           "declares 96 rows, holds 48")
    w.file("raster/png-rows-long", "raster/rows_long.png", png(64, 24, 8, 0, scanlines(g)), "raster", IMAGE, "any",
           "declares 24 rows, holds 48")
    w.file("raster/png-idat-garbage", "raster/idat_garbage.png", valid.replace(b"IDAT", b"IDAT", 1)[:60] + b"\x00" * 40 + valid[100:],
           "raster", IMAGE, "refuse", "garbage inside IDAT")
    ztxt = chunk(b"zTXt", b"comment\x00\x00" + zlib_zeros(200 << 20))
    w.file("raster/png-ztxt-bomb", "raster/ztxt_bomb.png", png(64, 48, 8, 0, scanlines(g), [ztxt]), "raster", IMAGE, "any",
           "a 200 MB compressed text chunk")
    iccp = chunk(b"iCCP", b"icc\x00\x00" + zlib_zeros(100 << 20))
    w.file("raster/png-iccp-bomb", "raster/iccp_bomb.png", png(64, 48, 8, 0, scanlines(g), [iccp]), "raster", IMAGE, "any",
           "a 100 MB compressed ICC profile")
    from PIL import Image

    frames = [Image.fromarray(g), Image.fromarray(255 - g)]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    w.file("raster/apng-2-frames", "raster/apng2.png", buf.getvalue(), "raster", IMAGE, "any", "animated PNG")

    # JPEG
    jpg = pil_bytes(rgb, "JPEG", quality=90)
    w.file("raster/jpeg-rgb", "raster/photo.jpg", jpg, "raster", IMAGE, COLOUR, "colour JPEG")
    w.file("raster/jpeg-grey", "raster/grey.jpg", pil_bytes(g, "JPEG"), "raster", IMAGE, "accept", "grey JPEG")
    w.file("raster/jpeg-cmyk", "raster/cmyk.jpg", pil_bytes(np.dstack([rgb, g]), "JPEG", mode="CMYK"), "raster", IMAGE, "any", "CMYK JPEG")
    w.file("raster/jpeg-progressive", "raster/progressive.jpg", pil_bytes(rgb, "JPEG", progressive=True), "raster", IMAGE, COLOUR,
           "progressive colour JPEG")
    for frac in (0.1, 0.5, 0.9, 0.99):
        cut = int(len(jpg) * frac)
        w.file(f"raster/jpeg-truncated{frac}", f"raster/jpeg_trunc_{int(frac * 100)}.jpg", jpg[:cut], "raster", IMAGE, "refuse",
               "truncated JPEG")
    sof = jpg.find(b"\xff\xc0")
    big = bytearray(jpg)
    struct.pack_into(">HH", big, sof + 5, 65500, 65500)
    w.file("raster/jpeg-sof-65500", "raster/jpeg_sof_big.jpg", bytes(big), "raster", IMAGE, "refuse", "SOF declares 65500 x 65500")
    zero = bytearray(jpg)
    struct.pack_into(">HH", zero, sof + 5, 0, 64)
    w.file("raster/jpeg-sof-zero", "raster/jpeg_sof_zero.jpg", bytes(zero), "raster", IMAGE, "refuse", "SOF declares 0 rows")

    # BMP
    bmp = pil_bytes(rgb, "BMP")
    w.file("raster/bmp-rgb", "raster/pic.bmp", bmp, "raster", IMAGE, COLOUR, "colour BMP")
    w.file("raster/bmp-truncated", "raster/bmp_trunc.bmp", bmp[: len(bmp) // 2], "raster", IMAGE, "refuse", "truncated BMP")
    for off, fmt, value, tag in ((18, "<i", 1 << 30, "width-huge"), (22, "<i", -48, "top-down"), (28, "<H", 7, "bpp-7"),
                                 (14, "<I", 2, "header-size-2"), (10, "<I", 1 << 30, "offset-huge")):
        blob = bytearray(bmp)
        struct.pack_into(fmt, blob, off, value)
        expect = "any"  # (top-down: a valid colour BMP, see COLOUR)
        w.file(f"raster/bmp-{tag}", f"raster/bmp_{tag}.bmp", bytes(blob), "raster", IMAGE, expect, f"BMP {tag}")

    _tiffs(w, g, rgb)

    rng = w.rng
    for i in range(60):
        blob = bytearray(valid)
        for _ in range(rng.randint(1, 3)):
            blob[rng.randrange(8, len(blob))] = rng.randrange(256)
        w.file(f"raster/png-random-{i}", f"raster/rnd_png_{i:03d}.png", bytes(blob), "raster", ("otsu",), "any", "random PNG bytes")
    for i in range(30):
        blob = bytearray(jpg)
        for _ in range(rng.randint(1, 3)):
            blob[rng.randrange(2, min(len(blob), 700))] = rng.randrange(256)
        w.file(f"raster/jpeg-random-{i}", f"raster/rnd_jpeg_{i:03d}.jpg", bytes(blob), "raster", ("otsu",), "any", "random JPEG bytes")


def _tiffs(w, g: np.ndarray, rgb: np.ndarray) -> None:
    g16 = g.astype(np.uint16) * 100
    w.file("raster/tiff-grey16", "raster/grey16.tif", tiff_bytes(g16), "raster", IMAGE, "accept", "16-bit grey TIFF")
    f = g.astype(np.float32)
    w.file("raster/tiff-float", "raster/float.tif", tiff_bytes(f), "raster", IMAGE, "accept", "float TIFF")
    w.file("raster/tiff-float-nan", "raster/float_nan.tif", tiff_bytes(np.where(g > 150, np.nan, f).astype(np.float32)), "raster", IMAGE,
           "refuse", "float TIFF with NaN")
    w.file("raster/tiff-float-inf", "raster/float_inf.tif", tiff_bytes(np.where(g > 150, np.inf, f).astype(np.float32)), "raster", IMAGE,
           "refuse", "float TIFF with inf")
    w.file("raster/tiff-rgb-planar", "raster/rgb_planar.tif", tiff_bytes(np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"),
           "raster", IMAGE, COLOUR, "planar RGB TIFF (colour)")
    grey3 = np.stack([g, g, g])
    w.file("raster/tiff-rgb-planar-grey", "raster/rgb_planar_grey.tif", tiff_bytes(grey3, photometric="rgb", planarconfig="separate"),
           "raster", IMAGE, "accept", "planar RGB TIFF of a grey picture (equal channels: read as grey)")
    w.file("raster/tiff-rgb", "raster/rgb.tif", tiff_bytes(rgb, photometric="rgb"), "raster", IMAGE, COLOUR, "RGB TIFF")
    w.file("raster/tiff-rgba", "raster/rgba.tif", tiff_bytes(np.dstack([rgb, g]), photometric="rgb", extrasamples=["unassalpha"]),
           "raster", IMAGE, COLOUR, "RGBA TIFF (colour)")
    w.file("raster/tiff-2-pages", "raster/two_pages.tif", tiff_bytes(np.stack([g, g])), "raster", IMAGE, "any", "two pages")
    tiny, zero = (1, 1_000_000_000), (0, 1)
    for tag, res, expect in (("res-tiny", (tiny, tiny), "refuse"), ("res-zero", (zero, zero), "any"),
                             ("res-huge", ((4_000_000_000, 1), (4_000_000_000, 1)), "refuse"), ("res-normal", (40.0, 40.0), "accept"),
                             ("res-uneven", ((1, 1_000_000), (40, 1)), "refuse")):
        w.file(f"raster/tiff-{tag}", f"raster/tiff_{tag}.tif", tiff_bytes(g16, resolution=res, resolutionunit="CENTIMETER"), "raster",
               IMAGE, expect, f"resolution {res} px/cm")
    w.file("raster/tiff-complex", "raster/complex.tif", tiff_bytes(f.astype(np.complex64)), "raster", IMAGE, "any", "complex TIFF")
    w.file("raster/tiff-bool", "raster/bool.tif", tiff_bytes(g > 100), "raster", IMAGE, "any", "bilevel TIFF")
    w.file("raster/tiff-5-samples", "raster/five.tif", tiff_bytes(np.dstack([g] * 5), photometric="minisblack", planarconfig="contig"),
           "raster", IMAGE, "any", "5 samples per pixel")
    w.file("raster/tiff-tiled", "raster/tiled.tif", tiff_bytes(np.tile(g16, (2, 2)), tile=(32, 32)), "raster", IMAGE, "accept", "tiled")
    w.file("raster/tiff-bigtiff", "raster/big.tif", tiff_bytes(g16, bigtiff=True), "raster", IMAGE, "accept", "BigTIFF")
    w.file("raster/tiff-lzw", "raster/lzw.tif", tiff_bytes(g16, compression="zlib"), "raster", IMAGE, "accept", "deflate TIFF")
    good = tiff_bytes(g16)
    w.file("raster/tiff-truncated", "raster/tiff_trunc.tif", good[: len(good) // 2], "raster", IMAGE, "refuse", "truncated TIFF")
    w.file("raster/tiff-header-only", "raster/tiff_hdr.tif", good[:8], "raster", IMAGE, "refuse", "an 8-byte TIFF")
    comp = tiff_bytes(g16, compression="zlib")
    blob = bytearray(comp)
    for k in range(20, 60):
        blob[k] ^= 0x33
    w.file("raster/tiff-deflate-damaged", "raster/tiff_deflate_bad.tif", bytes(blob), "raster", IMAGE, "refuse", "damaged deflate strip")

    import tifffile

    def retag(data: bytes, code: int, value: int, tag: str, expect: str, note: str) -> None:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            t = tif.pages[0].tags.get(code)
            offset, dtype = t.valueoffset, t.dtype
        out = bytearray(data)
        struct.pack_into("<" + ("H" if dtype == 3 else "I"), out, offset, value)
        w.file(f"raster/tiff-{tag}", f"raster/tiff_{tag}.tif", bytes(out), "raster", IMAGE, expect, note)

    retag(good, 256, 60000, "width-huge", "refuse", "ImageWidth 60000 over a 64-wide strip")
    retag(good, 257, 1, "length-1", "any", "ImageLength 1")
    retag(good, 273, 1 << 30, "strip-offset-huge", "refuse", "StripOffsets past the end")
    retag(good, 279, 10, "strip-bytes-short", "refuse", "StripByteCounts 10")
    retag(good, 259, 50000, "compression-unknown", "refuse", "compression 50000")
    retag(good, 258, 12, "bits-12", "any", "BitsPerSample 12")
    retag(good, 277, 3, "samples-3", "refuse", "SamplesPerPixel 3 over grey strips")

    rng = w.rng
    for i in range(50):
        blob = bytearray(good)
        ifd = struct.unpack("<I", good[4:8])[0]
        for _ in range(rng.randint(1, 3)):
            blob[rng.randrange(ifd, min(len(good), ifd + 2 + 12 * 14))] = rng.randrange(256)
        w.file(f"raster/tiff-random-{i}", f"raster/rnd_tiff_{i:03d}.tif", bytes(blob), "raster", ("otsu",), "any", "random IFD bytes")
