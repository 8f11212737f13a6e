"""Colour to grey: the one named step that turns an RGB(A) image into the single channel a grey model reads.

Training (:mod:`medannot.training.modality_samples`) and inference (:mod:`medannot.inference.classifier_input`)
both call :func:`to_grey`, so a colour picture gives a 1-channel model the same pixels in both.

The rule is the **unweighted mean of R, G and B** (alpha ignored), in float32, in the image's own units: not
luminance (0.299 R + 0.587 G + 0.114 B), because the bundled ``modality`` classifier was trained this way and a
model must see at inference what it saw in training. Colour comes out of :func:`medannot.io.read_image` as RGB
whatever the file stored (palette colour and YCbCr DICOM are converted on reading), so the mean is taken over RGB.
"""

from __future__ import annotations

import numpy as np

from medannot.errors import InputError

__all__ = ["GREY_RULE", "colour_note", "same_channels", "to_grey"]

#: The rule, for model cards and ``meta``.
GREY_RULE = "mean of R, G, B (unweighted, alpha ignored)"


def to_grey(array: np.ndarray) -> np.ndarray:
    """A channel-first array ``(C, *spatial)`` as one grey channel ``(1, *spatial)``, float32.

    Args:
        array: 1 channel (returned as float32, values unchanged), 3 (RGB) or 4 (RGBA) channels.

    Returns:
        ``(1, *spatial)`` float32: the mean of the first three channels for colour. An empty array stays empty.

    Raises:
        InputError: 2 or more than 4 channels (not a grey or colour picture).
    """
    arr = np.asarray(array)
    if arr.ndim < 2:
        raise InputError(f"expected a channel-first image array (C, *spatial), got shape {arr.shape}")
    c = arr.shape[0]
    if c == 1:
        return arr.astype(np.float32, copy=False)
    if c not in (3, 4):
        raise InputError(f"cannot make grey from {c} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
    return arr[:3].astype(np.float32).mean(axis=0, keepdims=True)


def same_channels(array: np.ndarray) -> bool:
    """True when a channel-first RGB picture ``(3, *spatial)`` holds the same values in R, G and B (a grey picture stored
    as colour, which the readers read as one grey channel)."""
    arr = np.asarray(array)
    return arr.ndim >= 2 and arr.shape[0] == 3 and bool(np.array_equal(arr[0], arr[1]) and np.array_equal(arr[1], arr[2]))


def colour_note(channels: int) -> str:
    """What a message about a colour input should add: why it was not read as grey (empty unless 3 or 4 channels)."""
    if channels not in (3, 4):
        return ""
    return (f" (a colour picture: its R, G and B differ, so it was not read as grey; pictures stored as colour with identical "
            f"channels are read as grey{', the alpha channel is dropped' if channels == 4 else ''})")
