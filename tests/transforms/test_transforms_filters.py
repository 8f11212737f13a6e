"""Filters and enhancement vs scipy / scikit-image on the real nuclei image and the MNI T1 slab."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import exposure, filters

from medannot.data import Geometry, Image, ImageKind
from medannot.errors import ConfigError, InputError
from medannot.transforms import build_transforms
from medannot.transforms.enhance import clahe, contrast_stretch, gamma, histogram_equalise
from medannot.transforms.filters import bandpass, gaussian_smooth, highpass, lowpass, mean_filter, median_filter


@pytest.fixture(scope="module")
def nuclei_img(nuclei: tuple[np.ndarray, np.ndarray]) -> Image:
    return Image.from_spatial(nuclei[0][:256, :256].astype(np.float32))


def test_gaussian_matches_skimage_with_anisotropic_spacing(mni_slab: Image) -> None:
    img = Image(mni_slab.array, Geometry(spacing=(0.5, 1.0, 2.0)))
    ours = gaussian_smooth(img, 2.0)
    ref = filters.gaussian(img.array[0], sigma=(4.0, 2.0, 1.0), mode="nearest", preserve_range=True)
    assert ours.array.dtype == np.float32
    np.testing.assert_allclose(ours.array[0], ref, rtol=1e-4, atol=1e-3)


def test_mean_and_median_match_scipy(nuclei_img: Image) -> None:
    img = Image(nuclei_img.array, Geometry(spacing=(0.5, 1.0)))
    mean = mean_filter(img, 1.0)  # 2 px along axis 0, 1 px along axis 1 -> 5 x 3 box
    np.testing.assert_allclose(mean.array[0], ndi.uniform_filter(img.array[0], (5, 3), mode="nearest"), rtol=1e-5)
    med = median_filter(img, 1.0)
    np.testing.assert_array_equal(med.array[0], ndi.median_filter(img.array[0], size=(5, 3), mode="nearest"))


@pytest.mark.parametrize("high_pass", [False, True])
def test_butterworth_matches_skimage(nuclei_img: Image, high_pass: bool) -> None:
    fn = highpass if high_pass else lowpass
    ours = fn(nuclei_img, 0.05, order=3)
    ref = filters.butterworth(nuclei_img.array[0], 0.05, high_pass=high_pass, order=3.0, npad=0)
    np.testing.assert_allclose(ours.array[0], ref, atol=1e-3 * float(nuclei_img.array.max()))


def test_cutoffs_are_in_cycles_per_mm() -> None:
    # 0.5 mm x 2 mm pixels; sines of 0.0625 cycles/mm on both axes and 0.1875 cycles/mm on axis 1
    shape = (128, 32)
    sp = (0.5, 2.0)
    x = np.arange(shape[0])[:, None] * sp[0]
    y = np.arange(shape[1])[None, :] * sp[1]
    slow = np.sin(2 * np.pi * 0.0625 * x) + np.sin(2 * np.pi * 0.0625 * y)  # periodic on the grid
    fast = np.sin(2 * np.pi * 0.1875 * y) + 0 * x
    img = Image.from_spatial((slow + fast).astype(np.float32), Geometry(spacing=sp))
    low = lowpass(img, 0.1, order=8).array[0]
    high = highpass(img, 0.1, order=8).array[0]
    assert np.abs(low - slow).max() < 0.05 and np.abs(high - fast).max() < 0.05
    band = bandpass(img, 0.03, 0.1, order=8).array[0]
    assert np.abs(band - slow).max() < 0.05
    g = lowpass(img, 0.1, window="gaussian").array[0]
    gain = lambda f: np.exp(-(f**2) / (2 * 0.1**2))  # noqa: E731
    np.testing.assert_allclose(g, gain(0.0625) * slow + gain(0.1875) * fast, atol=1e-4)
    with pytest.raises(ConfigError, match="low_cutoff"):
        bandpass(img, 0.2, 0.1)


def test_gaussian_window_equals_periodic_gaussian_blur(nuclei_img: Image) -> None:
    fc = 0.08  # cycles/mm -> spatial sigma 1 / (2 pi fc) mm
    ours = lowpass(nuclei_img, fc, window="gaussian").array[0]
    ref = ndi.gaussian_filter(nuclei_img.array[0].astype(np.float64), 1 / (2 * np.pi * fc), mode="wrap", truncate=8)
    np.testing.assert_allclose(ours, ref, atol=1e-3 * float(nuclei_img.array.max()))


def test_enhancement_matches_skimage_exposure(nuclei_img: Image) -> None:
    a = nuclei_img.array[0]
    eq = histogram_equalise(nuclei_img)
    np.testing.assert_allclose(eq.array[0], exposure.equalize_hist(a), atol=1e-5)
    cl = clahe(nuclei_img, kernel_size_mm=32, clip_limit=0.02)
    unit = (a - a.min()) / (a.max() - a.min())
    np.testing.assert_allclose(cl.array[0], exposure.equalize_adapthist(unit, kernel_size=32, clip_limit=0.02), atol=1e-5)
    st = contrast_stretch(nuclei_img, 2, 98)
    p2, p98 = np.percentile(a, (2, 98))
    ref = exposure.rescale_intensity(a, in_range=(p2, p98), out_range=(float(a.min()), float(a.max())))
    np.testing.assert_allclose(st.array[0], ref, rtol=1e-5, atol=1e-3)
    gm = gamma(nuclei_img, 0.5)
    np.testing.assert_allclose(gm.array[0], exposure.adjust_gamma(unit, 0.5) * (a.max() - a.min()) + a.min(), rtol=1e-4, atol=1e-3)


def test_clahe_3d_per_axis_kernel(mni_slab: Image) -> None:
    out = clahe(mni_slab, kernel_size_mm=[16, 16, 8])
    unit = (mni_slab.array[0] - mni_slab.array.min()) / np.ptp(mni_slab.array)
    ref = exposure.equalize_adapthist(unit, kernel_size=[16, 16, 8])
    assert out.array.dtype == np.float32 and out.array.shape == mni_slab.array.shape
    np.testing.assert_allclose(out.array[0], ref, atol=1e-5)


def test_filters_in_pipeline_and_refuse_labels(nuclei_img: Image) -> None:
    comp = build_transforms([{"name": "gaussian_smooth", "params": {"sigma_mm": 1.0}},
                             {"name": "clahe"}, {"name": "bandpass", "params": {"low_cutoff": 0.01, "high_cutoff": 0.2}}])
    assert comp(nuclei_img).array.dtype == np.float32
    lab = Image.from_spatial(np.ones((4, 4), np.uint8), kind=ImageKind.LABEL)
    for fn in (lambda i: gaussian_smooth(i, 1.0), histogram_equalise, lambda i: lowpass(i, 0.1)):
        with pytest.raises(InputError):
            fn(lab)
