"""Proposals of a project's model: a label map on the image's grid, in the project's label values, with a score.

A project's model is a bundle (a bundled name or a folder: the project's base model or one of its trained
versions) or a classical method. Trained versions output ``1..K`` for the project's label values
``[v1..vK]`` (see :mod:`medannot.training.case_list`); ``value_map`` maps them back. With ``uncertainty`` the
proposal carries the mean normalised softmax entropy inside the proposed foreground (the whole image when the
proposal is empty), or the mean Monte-Carlo dropout variance with ``mc_dropout`` passes: the score the
``uncertainty`` strategy orders cases by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medannot.data import Image
from medannot.errors import ModelError

__all__ = ["Proposal", "Proposer", "map_values"]


def map_values(labels: np.ndarray, value_map: Sequence[int] | None) -> np.ndarray:
    """Output ``i`` (1..K) -> ``value_map[i-1]``, 0 stays 0; None: unchanged. Returns uint8.

    Raises:
        ModelError: Outputs above K or values above 255.
    """
    arr = np.asarray(labels)
    if value_map is None:
        if arr.max(initial=0) > 255:
            raise ModelError("the model produced label values above 255; the server stores uint8 masks")
        return arr.astype(np.uint8)
    lut = np.zeros(max(len(value_map) + 1, int(arr.max(initial=0)) + 1), dtype=np.int64)
    lut[1 : len(value_map) + 1] = [int(v) for v in value_map]
    if arr.max(initial=0) > len(value_map):
        raise ModelError(f"the model produced output {int(arr.max())} but the project has {len(value_map)} labels")
    if max(value_map, default=0) > 255:
        raise ModelError("label values above 255 cannot be stored (uint8 masks)")
    return lut[arr.astype(np.int64)].astype(np.uint8)


@dataclass
class Proposal:
    """One proposal.

    Attributes:
        labels: Label array on the image's grid (spatial shape, uint8, project values).
        uncertainty: The uncertainty score (None when the model gives no probabilities, e.g. a classical method).
        provenance: What made it (name, version, sha256, parameters) as a plain dict.
    """

    labels: np.ndarray
    uncertainty: float | None
    provenance: dict[str, Any] = field(default_factory=dict)


class Proposer:
    """A project's model ready to propose masks.

    Args:
        model: Bundle name or folder, or a classical method name.
        value_map: Project label values of outputs 1..K (None: outputs are the project's values already).
        uncertainty: Compute the uncertainty score (bundles only).
        mc_dropout: Monte-Carlo dropout passes for the score (0: softmax entropy).

    Raises:
        ModelError: Unknown model, a model that gives no label map, or MC dropout on a network without dropout.
    """

    def __init__(self, model: str, value_map: Sequence[int] | None = None, uncertainty: bool = False, mc_dropout: int = 0) -> None:
        from medannot import classical
        from medannot.tasks import PredictOptions, get_task, load_predictor
        from medannot.tasks.segmentation import ClassicalSegmenter

        self.model = model
        self.value_map = list(value_map) if value_map is not None else None
        self.uncertainty = bool(uncertainty or mc_dropout)
        self.mc_dropout = int(mc_dropout)
        if model in classical.list_methods():
            self.predictor: Any = ClassicalSegmenter(model)
            self.uncertainty = False
            self.spatial_dims: int | None = None
            return
        options = PredictOptions(uncertainty=self.uncertainty and not self.mc_dropout, mc_dropout=self.mc_dropout)
        self.predictor = load_predictor(model, options)
        if not get_task(self.predictor.task).writes_label_maps:
            raise ModelError(f"model {model!r} is a {self.predictor.task.value} model; a review project needs a model that gives label maps")
        self.spatial_dims = int(self.predictor.bundle.spatial_dims)

    def prepare(self, image: Image) -> Image:
        """A stored one-slice volume as a 2D image for a 2D model (anything else unchanged)."""
        if self.spatial_dims == 2 and image.ndim == 3 and image.spatial_shape[2] == 1:
            return image.as_plane()
        return image

    def propose(self, image: Image, input_info: dict[str, Any] | None = None) -> Proposal:
        """The proposal for ``image`` on its own grid (a 2D model on a one-slice volume: the slice, then back).

        Raises:
            ModelError: A model whose dimensionality does not fit the image, or outputs that do not fit the labels.
        """
        import dataclasses
        import json

        work = self.prepare(image)
        if self.spatial_dims is not None and work.ndim != self.spatial_dims:
            raise ModelError(f"model {self.model!r} is {self.spatial_dims}D but the image is {work.ndim}D; use a "
                             f"{work.ndim}D model for this project")
        result = self.predictor.predict(work)
        labels = map_values(result.labels.array[0], self.value_map)
        if labels.ndim == 2 and image.ndim == 3:
            labels = labels[..., None]
        score = None
        if self.uncertainty:
            summary = (result.explanations or {}).get("uncertainty") or {}
            key = "mc_dropout_mean_variance" if self.mc_dropout else "mean_entropy"
            inside = summary.get(f"{key}_in_mask")
            score = float(inside if inside is not None else summary.get(key, 0.0))
        prov = self.predictor.provenance(dict(input_info or {}))
        return Proposal(labels, score, json.loads(json.dumps(dataclasses.asdict(prov), default=str)))
