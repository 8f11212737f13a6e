"""Intensity transforms against MONAI's equivalents, on the MNI T1 slab."""

from __future__ import annotations

import numpy as np
import pytest

from medannot.data import Geometry, Image, ImageKind
from medannot.errors import ConfigError, InputError
from medannot.transforms.intensity import ct_window, percentile_normalise, rescale_intensity, zscore_normalise

mt = pytest.importorskip("monai.transforms")


@pytest.fixture(scope="module")
def two_channel(mni_slab: Image) -> Image:
    arr = np.concatenate([mni_slab.array, 3.0 * mni_slab.array[:, ::-1] - 500.0]).astype(np.float32)
    return Image(arr, mni_slab.geometry)


def _np(x: object) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)  # type: ignore[attr-defined]


def test_ct_window_matches_monai_scale_intensity_range() -> None:
    hu = np.linspace(-1200, 2000, 4000, dtype=np.float32).reshape(1, 40, 100).astype(np.int16)
    img = Image(hu, Geometry(spacing=(1.0, 1.0)))
    ours = ct_window(img, level=40, width=400)
    ref = mt.ScaleIntensityRange(a_min=-160, a_max=240, b_min=0.0, b_max=1.0, clip=True)(hu.astype(np.float32))
    assert ours.array.dtype == np.float32 and ours.array.min() == 0.0 and ours.array.max() == 1.0
    np.testing.assert_allclose(ours.array, _np(ref), atol=1e-6)
    assert img.array.dtype == np.int16  # input untouched
    with pytest.raises(ConfigError, match="width"):
        ct_window(img, 40, 0)


def test_zscore_matches_monai_normalize_intensity(two_channel: Image) -> None:
    ours = zscore_normalise(two_channel)
    ref = mt.NormalizeIntensity(channel_wise=True)(two_channel.array)
    np.testing.assert_allclose(ours.array, _np(ref), atol=1e-4)
    ours_nz = zscore_normalise(two_channel, nonzero=True)
    ref_nz = mt.NormalizeIntensity(nonzero=True, channel_wise=True)(two_channel.array)
    np.testing.assert_allclose(ours_nz.array, _np(ref_nz), atol=1e-4)


def test_zscore_with_mask(mni_slab: Image) -> None:
    mask = mni_slab.array[0] > np.median(mni_slab.array)
    out = zscore_normalise(mni_slab, mask=mask)
    inside = out.array[0][mask]
    assert abs(float(inside.mean())) < 1e-4 and abs(float(inside.std()) - 1.0) < 1e-4
    with pytest.raises(InputError, match="no voxel"):
        zscore_normalise(mni_slab, mask=np.zeros_like(mask))
    with pytest.raises(InputError, match="shape"):
        zscore_normalise(mni_slab, mask=mask[:3])


def test_percentile_matches_monai(two_channel: Image) -> None:
    ours = percentile_normalise(two_channel, 0.5, 99.5)
    ref = mt.ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True, channel_wise=True)(two_channel.array)
    assert ours.array.dtype == np.float32
    np.testing.assert_allclose(ours.array, _np(ref), atol=1e-5)
    unclipped = percentile_normalise(two_channel, 5, 95, clip=False)
    assert unclipped.array.min() < 0 and unclipped.array.max() > 1
    const = Image.from_spatial(np.full((4, 4), 7.0))
    np.testing.assert_array_equal(percentile_normalise(const).array, 0)
    with pytest.raises(ConfigError):
        percentile_normalise(two_channel, 90, 10)


def test_rescale_matches_monai_scale_intensity(two_channel: Image) -> None:
    ours = rescale_intensity(two_channel, -1.0, 1.0)
    ref = mt.ScaleIntensity(minv=-1.0, maxv=1.0, channel_wise=True)(two_channel.array)
    np.testing.assert_allclose(ours.array, _np(ref), atol=1e-5)
    fixed = rescale_intensity(two_channel, in_min=0, in_max=100)
    assert fixed.array.min() == 0.0 and fixed.array.max() == 1.0


def test_intensity_transforms_refuse_labels() -> None:
    lab = Image.from_spatial(np.ones((3, 3), np.uint8), kind=ImageKind.LABEL)
    with pytest.raises(InputError, match="label"):
        percentile_normalise(lab)
