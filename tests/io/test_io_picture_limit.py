"""The picture size bound (io.limits.check_picture_pixels): a plane of more than Pillow's decompression-bomb bound
(89.5 megapixels) is refused with one line before it is decoded, in PNG and TIFF alike; --max-image-mb raises it.

A 12000 x 12000 PNG (144 megapixels, ~100:1) took annotate to 2.6 GB and 50-100 s before (fuzz corpus
``raster/png-12000sq``); the 2D path holds ~15 bytes per pixel at its peak.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from typer.testing import CliRunner

from medannot.cli import app
from medannot.errors import InputError
from medannot.io import read_image
from medannot.io.limits import PICTURE_PIXELS, ReadLimits, read_limits, set_read_limits, use_read_limits
from medannot.io.raster import read_raster


def _noise(rows: int, cols: int) -> np.ndarray:
    """Incompressible enough that the ratio bound does not decide (runs of 50 equal pixels: ~50:1 at most)."""
    row = np.repeat(np.random.default_rng(0).integers(0, 255, (rows, -(-cols // 50))).astype(np.uint8), 50, axis=1)
    return np.ascontiguousarray(row[:, :cols])


@pytest.fixture(scope="module")
def big_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("pic") / "big.png"
    PILImage.fromarray(_noise(9100, 9900)).save(path)  # 90.1 MP: just above the bound
    return path


def test_a_picture_above_the_bound_is_refused_before_decoding(big_png):
    assert 9100 * 9900 > PICTURE_PIXELS == read_limits().max_picture_pixels
    with pytest.raises(InputError, match=r"big.png: PNG of 9900 x 9100 = 90.1 megapixels, more than the 89.5 allowed.*--max-image-mb"):
        read_image(big_png)


def test_a_tiff_page_above_the_bound_is_refused_and_a_stack_of_small_planes_is_not(tmp_path):
    tifffile.imwrite(tmp_path / "page.tif", np.zeros((1, 9100, 9900), np.uint8), compression="zlib")
    with pytest.raises(InputError, match="TIFF page of 9900 x 9100"):
        read_image(tmp_path / "page.tif")
    with use_read_limits(ReadLimits(max_picture_pixels=1000)), pytest.raises(InputError, match='TIFF page of 40 x 40'):
        tifffile.imwrite(tmp_path / "page40.tif", np.zeros((40, 40), np.uint8))
        read_image(tmp_path / "page40.tif")
    with use_read_limits(ReadLimits(max_picture_pixels=1000)):
        tifffile.imwrite(tmp_path / "stack.tif", np.arange(30 * 30 * 5, dtype=np.uint16).reshape(5, 30, 30), photometric="minisblack")
        assert read_raster(tmp_path / "stack.tif", stack=True).array.shape[-3:] == (5, 30, 30)  # 900 pixels a plane


def test_raising_max_image_mb_raises_the_picture_bound_and_the_cli_says_so(big_png, tmp_path):
    with use_read_limits(ReadLimits(max_image_bytes=4 * 1024**3, max_picture_pixels=2 * PICTURE_PIXELS)):
        assert read_image(big_png).array.shape[-2:] == (9100, 9900)
    result = CliRunner().invoke(app, ["annotate", str(big_png), "--method", "otsu", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "megapixels" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o" / "big").exists()
    old = set_read_limits(max_image_mb=2300)  # what medannot --max-image-mb 2300 does
    try:
        assert read_limits().max_picture_pixels > 9100 * 9900
    finally:
        set_read_limits(old)
