"""The ``case-list`` training source: a fixed list of image/mask pairs with a fixed per-case validation split.

This is how a review project trains on its accepted cases (the server lists each case's stored image and accepted
mask), and how ``medannot simulate`` trains on the cases its simulated annotator has accepted so far. The split
is given, never drawn: the cases named in ``val_cases`` validate and never train, so successive models of a
project are compared on the same cases.

Label values are mapped to the training target through ``label_values``: the project's values ``[v1, v2, ...]``
become ``1, 2, ...`` (0 stays background), so a project may use any values 1-255. Any other value in a mask is an
error naming the case.

2D images stored as one-slice volumes (as the review server stores pictures) are read as 2D images when the run
is 2D (``spatial_dims`` 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medannot.data.image import Image, ImageKind
from medannot.errors import ConfigError, InputError
from medannot.training.sources import (
    CasePatchSampler,
    ValidationCase,
    _preprocess_pair,
    register_source,
)

__all__ = ["CaseListSource", "remap_labels"]


def remap_labels(label: np.ndarray, label_values: Sequence[int], case: str) -> np.ndarray:
    """Map label values ``[v1, v2, ...]`` to ``1, 2, ...`` (0 stays 0), as int64.

    Raises:
        InputError: A value that is neither 0 nor in ``label_values`` (naming the case and the values).
    """
    lut_size = max(256, int(label.max(initial=0)) + 1)
    lut = np.full(lut_size, -1, dtype=np.int64)
    lut[0] = 0
    for i, v in enumerate(label_values, 1):
        lut[int(v)] = i
    arr = np.asarray(label)
    if arr.min(initial=0) < 0:
        raise InputError(f"case {case!r}: negative label values; masks hold 0 and the values {list(label_values)}")
    out = lut[arr.astype(np.int64)]
    if (out < 0).any():
        bad = sorted({int(v) for v in np.unique(arr[out < 0])})[:10]
        raise InputError(f"case {case!r}: label values {bad} are not in the label map {list(label_values)}; fix the mask")
    return out


def _read(path: str | Path, kind: ImageKind, spatial_dims: int | None, what: str) -> Image:
    from medannot.io import read_image

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}: file not found; every case-list entry needs existing image and label files", p)
    image = read_image(p, kind=kind)
    if spatial_dims == 2 and image.ndim == 3:
        image = image.as_plane()
    return image


@register_source("case-list")
class CaseListSource(CasePatchSampler):
    """Listed image/mask pairs; the cases in ``val_cases`` validate and never train.

    Preprocessing runs once per training case (on first use) and is cached in memory.

    Args:
        cases: ``[{"name": str, "image": path, "label": path}, ...]`` (any format medannot reads).
        val_cases: Names of the validation cases (may be empty: then there is no validation).
        label_values: Label values of the masks in training order (``[1]`` for a one-label project).
        fg_ratio: Probability that a patch is centred near foreground.
        augment: True, False, or ``{"flips", "rot90", "intensity"}``.
        patch_size, preprocessing, spatial_dims: Passed by the trainer.
        rng_seed: Unused (the split is given); kept for the source contract.

    Raises:
        ConfigError: No case, duplicate or unknown names, no training case left, or a missing file.
    """

    def __init__(
        self,
        cases: list[dict[str, Any]],
        patch_size: Sequence[int],
        val_cases: list[str] | None = None,
        label_values: list[int] | None = None,
        preprocessing: list[dict[str, Any]] | None = None,
        spatial_dims: int | None = None,
        fg_ratio: float = 0.5,
        augment: bool | dict[str, bool] = True,
        rng_seed: int = 0,
    ) -> None:
        if not cases:
            raise ConfigError("data.params.cases is empty; list at least one {name, image, label} case")
        names = []
        for n, entry in enumerate(cases):
            if not isinstance(entry, dict) or not {"name", "image", "label"} <= set(entry):
                raise ConfigError(f"data.params.cases[{n}] needs 'name', 'image' and 'label', got {entry!r}"[:300])
            names.append(str(entry["name"]))
        if len(set(names)) != len(names):
            raise ConfigError("data.params.cases: case names must be unique")
        val = set(val_cases or [])
        unknown = sorted(val - set(names))
        if unknown:
            raise ConfigError(f"data.params.val_cases {unknown[:5]} are not among the listed cases")
        self._train_items = [c for c in cases if str(c["name"]) not in val]
        self._val_items = [c for c in cases if str(c["name"]) in val]
        if not self._train_items:
            raise ConfigError("every listed case is a validation case; leave at least one for training")
        self.label_values = [int(v) for v in (label_values or [1])]
        self.patch_size = [int(p) for p in patch_size]
        self.preprocessing = list(preprocessing or [])
        self.spatial_dims = spatial_dims
        self.fg_ratio = float(fg_ratio)
        self.augment = augment
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @property
    def train_names(self) -> list[str]:
        """Names of the training cases, in the given order."""
        return [str(c["name"]) for c in self._train_items]

    @property
    def val_names(self) -> list[str]:
        """Names of the validation cases, in the given order."""
        return [str(c["name"]) for c in self._val_items]

    def _pair(self, entry: dict[str, Any]) -> tuple[Image, Image]:
        name = str(entry["name"])
        image = _read(entry["image"], ImageKind.INTENSITY, self.spatial_dims, f"case {name!r} image")
        label = _read(entry["label"], ImageKind.LABEL, self.spatial_dims, f"case {name!r} label")
        image.check_same_grid(label, f"case {name!r} image and label")
        target = remap_labels(label.array, self.label_values, name)
        return image, label.with_array(target.astype(np.uint16))

    def _prepared(self, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        image, label = self._pair(entry)
        arr, lab = _preprocess_pair(self.preprocessing, image, label)
        return arr, lab.astype(np.int64)

    def validation_cases(self) -> list[ValidationCase]:
        """The validation cases, raw, with their truth mapped to ``1..K``."""
        out = []
        for entry in self._val_items:
            image, label = self._pair(entry)
            out.append(ValidationCase(str(entry["name"]), image, label))
        return out
