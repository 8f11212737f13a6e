import numpy as np
import pytest
from PIL import Image as PILImage

import medannot.io as mio
from iohelpers import mni_block, pydicom_test_file, write_dicom_series
from medannot.data import Geometry, Image
from medannot.errors import OutputError


def test_public_api():
    assert set(mio.__all__) >= {"read_image", "write_image", "discover_inputs", "InputItem", "atomic_path"}
    for name in mio.__all__:
        assert getattr(mio, name) is not None


def test_dispatch_by_suffix_and_folder(tmp_path):
    PILImage.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(tmp_path / "x.bmp")
    assert mio.read_image(tmp_path / "x.bmp").array.shape == (1, 3, 4)
    write_dicom_series(tmp_path / "series", mni_block()[:6, :7, :3], (1, 0, 0), (0, 1, 0))
    assert mio.read_image(tmp_path / "series").spatial_shape == (6, 7, 3)
    assert mio.read_image(str(pydicom_test_file("MR_small.dcm"))).ndim == 2


def test_write_unsupported_suffix(tmp_path):
    im = Image(np.zeros((1, 3, 3), np.uint8), Geometry((1.0, 1.0)))
    with pytest.raises(OutputError, match="cannot write suffix"):
        mio.write_image(im, tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())
