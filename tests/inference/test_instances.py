"""Instance splitting: components match scikit-image; watershed separates touching disks."""

import numpy as np
import pytest
from skimage.measure import label as sk_label

from medannot.errors import ConfigError
from medannot.inference.instances import split_instances


def _disks():
    yy, xx = np.mgrid[:40, :60]
    a = (yy - 20) ** 2 + (xx - 20) ** 2 < 100
    b = (yy - 20) ** 2 + (xx - 37) ** 2 < 100  # touches a
    c = (yy - 5) ** 2 + (xx - 55) ** 2 < 4
    return a | b | c


def test_components_match_skimage():
    m = _disks()
    for conn in (1, 2):
        ours = split_instances(m, conn)
        ref = sk_label(m, connectivity=conn)
        assert ours.max() == ref.max() == 2
        # Same partition (labels may be numbered differently).
        pairs = set(zip(ours[m].tolist(), ref[m].tolist()))
        assert len(pairs) == ref.max()


def test_watershed_splits_touching_disks():
    out = split_instances(_disks(), {"method": "watershed", "min_distance": 5})
    assert out.max() == 3
    assert out[20, 20] != out[20, 37]
    assert out[5, 55] > 0  # the small blob keeps a seed


def test_empty_and_errors():
    assert split_instances(np.zeros((5, 5), bool), {"method": "watershed"}).max() == 0
    with pytest.raises(ConfigError, match="watershed"):
        split_instances(_disks(), {"method": "blobs"})
    with pytest.raises(ConfigError, match="connectivity"):
        split_instances(_disks(), 3)
