import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from iohelpers import STARDIST_IMG, STARDIST_MASK
from medannot.data import Geometry, Image, ImageKind
from medannot.errors import InputError, OutputError
from medannot.io import read_image, write_image
from medannot.io.raster import read_raster, read_tiff_stack


@pytest.fixture(scope="module")
def nuclei():
    return tifffile.imread(STARDIST_IMG), tifffile.imread(STARDIST_MASK)


def test_real_tiff_16bit_kept(nuclei):
    img, _ = nuclei
    im = read_image(STARDIST_IMG)
    assert im.ndim == 2 and im.array.shape == (1, 512, 512) and im.array.dtype == np.uint16
    np.testing.assert_array_equal(im.array[0], img)
    assert im.spacing == (1.0, 1.0)  # ResolutionUnit NONE -> 1 mm


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_label_roundtrip(tmp_path, nuclei, suffix):
    _, mask = nuclei
    lab = read_image(STARDIST_MASK, kind="label")
    assert lab.is_label and lab.array.dtype == np.uint8
    out = write_image(lab, tmp_path / f"mask{suffix}")
    if suffix == ".png":
        with PILImage.open(out) as pic:
            np.testing.assert_array_equal(np.asarray(pic), mask)
    else:
        np.testing.assert_array_equal(tifffile.imread(out), mask)
    back = read_image(out, kind=ImageKind.LABEL)
    np.testing.assert_array_equal(back.array[0], mask)


def test_many_labels_png_uint16(tmp_path):
    lab = np.arange(600, dtype=np.int32).reshape(1, 20, 30)
    out = write_image(Image(lab, Geometry((1.0, 1.0)), ImageKind.LABEL), tmp_path / "l.png")
    with PILImage.open(out) as pic:
        assert pic.mode.startswith("I")
    np.testing.assert_array_equal(read_image(out, kind="label").array, lab)


def test_16bit_png_intensity_roundtrip(tmp_path, nuclei):
    img, _ = nuclei
    out = write_image(Image(img[None], Geometry((1.0, 1.0))), tmp_path / "i.png")
    back = read_image(out)
    assert back.array.dtype == np.uint16
    np.testing.assert_array_equal(back.array[0], img)


def test_grey_rgb_rgba(tmp_path, nuclei):
    img8 = (nuclei[0][:64, :80] >> 4).astype(np.uint8)
    rgb = np.stack([img8, 255 - img8, img8 // 2], axis=-1)
    PILImage.fromarray(img8).save(tmp_path / "g.png")
    PILImage.fromarray(rgb).save(tmp_path / "c.png")
    PILImage.fromarray(np.dstack([rgb, np.full(img8.shape, 7, np.uint8)]), mode="RGBA").save(tmp_path / "a.png")
    PILImage.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    g, c, a, j = (read_image(tmp_path / n) for n in ("g.png", "c.png", "a.png", "c.jpg"))
    assert g.array.shape == (1, 64, 80) and c.array.shape == (3, 64, 80) and a.array.shape == (3, 64, 80)
    np.testing.assert_array_equal(c.array, np.moveaxis(rgb, -1, 0))
    np.testing.assert_array_equal(a.array, c.array)
    assert j.array.shape == (3, 64, 80) and np.abs(j.array.astype(int) - c.array).mean() < 6
    back = read_image(write_image(c, tmp_path / "c2.png"))
    np.testing.assert_array_equal(back.array, c.array)
    with pytest.raises(InputError, match="single-channel label"):
        read_image(tmp_path / "c.png", kind="label")


def test_palette_png_as_labels(tmp_path):
    idx = np.zeros((10, 12), np.uint8)
    idx[2:5, 3:7] = 3
    pic = PILImage.fromarray(idx, mode="L").convert("P")
    pic.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (252 * 3))
    pic.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png", kind="label").array[0], idx)
    assert read_image(tmp_path / "p.png").array.shape == (3, 10, 12)  # colour palette as intensity -> RGB


def test_tiff_physical_resolution(tmp_path):
    data = np.arange(30, dtype=np.uint16).reshape(5, 6)
    tifffile.imwrite(tmp_path / "cm.tif", data, resolution=(20.0, 40.0), resolutionunit="CENTIMETER")  # px/cm (x, y)
    im = read_image(tmp_path / "cm.tif")
    np.testing.assert_allclose(im.spacing, (0.25, 0.5))  # (row, col) mm
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(2.0, 4.0), metadata={"unit": "micron"})
    np.testing.assert_allclose(read_image(tmp_path / "ij.tif").spacing, (0.25e-3, 0.5e-3))
    out = write_image(Image(data[None], Geometry((0.3, 0.7))), tmp_path / "w.tif")
    np.testing.assert_allclose(read_image(out).spacing, (0.3, 0.7), rtol=1e-9)


def test_multipage_tiff_refused_for_2d_but_read_as_stack(tmp_path):
    vol = np.random.default_rng(1).integers(0, 4000, size=(4, 6, 7)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", vol, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 3.0, "unit": "mm"})  # fmt: skip
    with pytest.raises(InputError, match="4 pages/slices.*read_tiff_stack") as err:
        read_image(tmp_path / "z.tif")
    assert str(err.value).startswith(str(tmp_path / "z.tif")) and "\n" not in str(err.value)
    st = read_tiff_stack(tmp_path / "z.tif")
    assert st.ndim == 3 and st.array.shape == (1, 4, 6, 7)
    np.testing.assert_array_equal(st.array[0], vol)
    np.testing.assert_allclose(st.spacing, (3.0, 0.5, 0.5))
    out = write_image(st.with_array(st.array.astype(np.int16)), tmp_path / "w3.tif")
    back = read_raster(out, stack=True)
    np.testing.assert_array_equal(back.array, st.array)
    np.testing.assert_allclose(back.spacing, st.spacing)


def test_write_refusals(tmp_path):
    f = Image(np.zeros((1, 4, 4), np.float32), Geometry((1.0, 1.0)))
    with pytest.raises(OutputError, match="uint8/uint16"):
        write_image(f, tmp_path / "f.png")
    with pytest.raises(OutputError, match="2D images only"):
        write_image(Image(np.zeros((1, 2, 2, 2), np.uint8), Geometry((1.0, 1.0, 1.0))), tmp_path / "v.png")
    with pytest.raises(OutputError, match="channels"):
        write_image(Image(np.zeros((2, 4, 4), np.uint8), Geometry((1.0, 1.0))), tmp_path / "two.png")
    assert list(tmp_path.iterdir()) == []
