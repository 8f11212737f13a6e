"""Uncertainty of a segmentation bundle's prediction, on the input's own grid, and the files that show it.

``medannot annotate --uncertainty`` writes, per case:

- ``uncertainty.nii.gz``: normalised softmax entropy (float32, 0 = certain .. 1 = uniform over the labels) on
  the input's grid (computed on the network's working grid, resampled linearly when the grids differ);
- ``uncertainty.png`` (2D) or ``uncertainty_{axial,coronal,sagittal}.png`` (3D, along each axis the plane with the most uncertainty):
  the entropy as a heat map over the image;
- with ``--mc-dropout N``: ``mc_variance.nii.gz``, the Monte-Carlo dropout variance of the predicted label's
  probability (N passes; the network must have dropout);
- ``annotation.json`` ``explanations.uncertainty``: the summary of :func:`medannot.explain.uncertainty.uncertainty_summary`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medannot.data import Image, ImageKind
from medannot.explain.uncertainty import mc_dropout_probabilities, softmax_entropy, uncertainty_summary

__all__ = ["segmentation_uncertainty", "uncertainty_writer"]


def _on_input_grid(values: np.ndarray, work: Image, image: Image) -> np.ndarray:
    if work.spatial_shape == image.spatial_shape and work.geometry.isclose(image.geometry, atol=1e-5):
        return values
    from medannot.transforms.spatial import resample_to_grid

    ch = Image(values[None].astype(np.float32), work.geometry, ImageKind.INTENSITY)
    return resample_to_grid(ch, image.geometry, image.spatial_shape, order=1).array[0]


def segmentation_uncertainty(predictor: Any, image: Image, prediction: Any, mc_passes: int = 0,
                             threshold: float = 0.5) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Entropy (and optional MC-dropout variance) maps on ``image``'s grid and their per-case summary.

    Args:
        predictor: The :class:`~medannot.inference.Predictor` that made ``prediction``.
        image: The input image.
        prediction: Its prediction, made with ``keep_probabilities=True``.
        mc_passes: Monte-Carlo dropout passes (0 = none; else >= 2 and the network needs dropout).
        threshold: Normalised entropy above which a voxel counts as uncertain.

    Returns:
        ``({"uncertainty": entropy, "mc_variance": variance (only with MC)}, summary)``.

    Raises:
        ModelError: MC dropout asked for a network without dropout.
    """
    probs = prediction.probabilities
    work = probs
    maps = {"uncertainty": _on_input_grid(softmax_entropy(probs.array, normalised=True), work, image)}
    labels = prediction.labels.array[0]
    variance = None
    if mc_passes:
        _, var = mc_dropout_probabilities(predictor, predictor.preprocess(image).array, n=mc_passes)
        winner = np.argmax(probs.array, axis=0)
        label_var = np.take_along_axis(var, winner[None], axis=0)[0]
        variance = maps["mc_variance"] = _on_input_grid(label_var, work, image)
    summary = uncertainty_summary(maps["uncertainty"], labels, predictor.bundle.labels, threshold, variance)
    if mc_passes:
        summary["mc_dropout_passes"] = int(mc_passes)
    return maps, summary


def uncertainty_writer(image: Image, maps: dict[str, np.ndarray], focus: np.ndarray | None = None) -> Callable[[Path], dict[str, str]]:
    """A writer for :func:`medannot.annotations.writer.write_case` ``extra_files``: the maps and the entropy overlay.

    Args:
        image: The input image.
        maps: Name -> map on the image's grid (``uncertainty`` must be there).
        focus: 3D: the predicted foreground; the overlay planes are those with the most uncertainty inside it.
    """

    def write(folder: Path) -> dict[str, str]:
        from medannot.explain.overlay import write_heat_overlays
        from medannot.io import write_image

        files: dict[str, str] = {}
        for name, m in maps.items():
            write_image(Image(np.asarray(m, np.float32)[None], image.geometry).as_volume(), Path(folder) / f"{name}.nii.gz")
            files[name] = f"{name}.nii.gz"
        for p in write_heat_overlays(image, maps["uncertainty"], Path(folder), "uncertainty", focus=focus):
            files[f"{p.stem}_png"] = p.name
        return files

    return write
