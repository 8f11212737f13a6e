"""Named, explicit image transforms and the pipeline built from specs.

``build_transforms([{"name": "reorient", "params": {"axcodes": "RAS"}}, ...])`` returns a
:class:`Compose` (callable ``Image -> Image``, with ``.specs`` to store in a bundle).
``list_transforms()`` names every registered transform. Modules:

- :mod:`~medannot.transforms.spatial`: reorient, resample_to_spacing, resample_to_grid, crop_or_pad, crop_to_foreground
- :mod:`~medannot.transforms.intensity`: ct_window, zscore_normalise, percentile_normalise, rescale_intensity
- :mod:`~medannot.transforms.filters`: mean_filter, median_filter, gaussian_smooth, lowpass, highpass, bandpass (mm, cycles/mm)
- :mod:`~medannot.transforms.enhance`: contrast_stretch, histogram_equalise, clahe, gamma
- :mod:`~medannot.transforms.augment`: rand_flip, rand_affine, rand_elastic, rand_gamma, rand_scale_intensity,
  rand_bias_field, rand_noise (random; take ``rng``), and ``augment(image, label, rng=..., specs=...)``
"""

from medannot.transforms import augment, enhance, filters, intensity, spatial  # noqa: F401  (registers the transforms)
from medannot.transforms.registry import (
    Compose,
    TransformKind,
    build_transforms,
    get_transform,
    list_transforms,
    register_transform,
)

__all__ = [
    "Compose",
    "TransformKind",
    "build_transforms",
    "get_transform",
    "list_transforms",
    "register_transform",
]
