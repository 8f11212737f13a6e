"""What a classifier sees: one image turned into a fixed-size, normalised float32 array.

The steps (named, in this order; the same in training and inference):

1. channels: an RGB(A) image becomes grey with :func:`medannot.io.to_grey` (mean of R, G, B: the step training uses)
   when the model has one input channel;
2. dimensionality: a 2D model given a 3D volume sees its middle slice along the last array axis (a volume with
   one slice is that slice); a 3D model refuses 2D images;
3. intensity: clipped to the ``percentiles`` (default 1st and 99th) of the image and scaled to [0, 1]
   (a constant image becomes all zeros);
4. size: padded with zeros to a square (cube) around the centre, so the aspect ratio in voxels is kept, then
   resized to ``input_size`` voxels (area averaging when shrinking, bilinear/trilinear when enlarging). Voxel
   spacing is not used: anisotropic images look squashed to the network.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medannot.data.image import Image
from medannot.errors import InputError, ModelError
from medannot.io.colour import to_grey
from medannot.models.classification_spec import ClassifierInput

__all__ = ["prepare_array", "prepare_image"]


def _to_channels(array: np.ndarray, in_channels: int, grey: bool, name: str) -> np.ndarray:
    c = array.shape[0]
    if c == in_channels:
        return array
    if in_channels == 1 and grey and c in (3, 4):
        return to_grey(array)  # the named step training uses too (medannot.io.colour: mean of R, G, B)
    raise InputError(f"{name}: the classifier expects {in_channels} channel(s), got {c}; convert the image first")


def prepare_array(array: np.ndarray, spatial_dims: int, spec: ClassifierInput, in_channels: int = 1, name: str = "image") -> np.ndarray:
    """Channel-first array ``(C, *spatial)`` -> ``(in_channels, *input_size)`` float32 (see the module docstring).

    Args:
        array: Channel-first intensities, 2 or 3 spatial axes.
        spatial_dims: The model's dimensionality.
        spec: Input rules.
        in_channels: The model's input channels.
        name: Named in errors.

    Raises:
        InputError: Wrong channel count, or a 2D image for a 3D model.
    """
    arr = np.asarray(array, dtype=np.float32)
    nd = arr.ndim - 1
    if nd == 3 and spatial_dims == 2:
        arr = arr[..., arr.shape[-1] // 2]
    elif nd == 2 and spatial_dims == 3:
        raise InputError(f"{name}: a 3D classifier was given a 2D image of shape {arr.shape[1:]}; use a 2D model")
    arr = _to_channels(arr, in_channels, spec.grey, name)
    lo, hi = np.percentile(arr, spec.percentiles)
    arr = np.clip((arr - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(arr)
    side = max(arr.shape[1:])
    pads = [(0, 0)] + [((side - s) // 2, side - s - (side - s) // 2) for s in arr.shape[1:]]
    arr = np.pad(arr, pads)
    t = torch.from_numpy(np.ascontiguousarray(arr))[None]
    size = [int(s) for s in spec.input_size]
    if len(size) != spatial_dims:
        raise ModelError(f"classifier input_size {size} does not have {spatial_dims} values")
    mode = "area" if side >= max(size) else ("bilinear" if spatial_dims == 2 else "trilinear")
    t = F.interpolate(t, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return t[0].numpy().astype(np.float32, copy=False)


def prepare_image(image: Image, spatial_dims: int, spec: ClassifierInput, in_channels: int = 1, name: str = "image") -> np.ndarray:
    """:func:`prepare_array` for a :class:`~medannot.data.Image` (label maps are refused; ``name`` is named in errors)."""
    if image.is_label:
        raise InputError(f"{name}: a classifier needs an intensity image, got a label map")
    return prepare_array(image.array, spatial_dims, spec, in_channels, name)
