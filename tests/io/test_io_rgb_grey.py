"""A 2D picture stored as RGB(A) whose R, G and B are identical is read as one grey channel; a colour picture stays
RGB, and a grey-only method or model says why it was not read as grey."""

import numpy as np
from PIL import Image as PILImage
from typer.testing import CliRunner

from medannot.cli import app
from medannot.io import read_image

runner = CliRunner()


def _grey():
    return (np.arange(24 * 32) % 251).astype(np.uint8).reshape(24, 32)


def test_identical_channels_read_as_grey(tmp_path):
    grey = _grey()
    PILImage.fromarray(np.stack([grey] * 3, -1), "RGB").save(tmp_path / "rgb.png")
    PILImage.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 200)], -1), "RGBA").save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        im = read_image(tmp_path / name)
        assert im.array.shape == (1, 24, 32), name
        np.testing.assert_array_equal(im.array[0], grey)
        assert "R, G and B identical: read as one grey channel" in im.meta["pixel_steps"]
        assert read_image(tmp_path / name, kind="label").array.shape == (1, 24, 32)  # a mask saved as RGB
    PILImage.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png").array, read_image(tmp_path / "rgb.png").array)


def test_colour_stays_colour_and_the_message_says_why(tmp_path):
    rgb = np.stack([_grey(), _grey()[::-1], _grey()], -1)
    PILImage.fromarray(rgb, "RGB").save(tmp_path / "colour.png")
    im = read_image(tmp_path / "colour.png")
    assert im.array.shape == (3, 24, 32) and "pixel_steps" not in im.meta
    result = runner.invoke(app, ["annotate", str(tmp_path / "colour.png"), "--method", "otsu", "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code != 0
    assert "got 3 channels (a colour picture: its R, G and B differ, so it was not read as grey" in " ".join(result.output.split())
    PILImage.fromarray(np.stack([_grey()] * 3, -1), "RGB").save(tmp_path / "in.png")
    ok = runner.invoke(app, ["annotate", str(tmp_path / "in.png"), "--method", "otsu", "-o", str(tmp_path / "out2"), "-q"])
    assert ok.exit_code == 0, ok.output
