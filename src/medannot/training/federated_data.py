"""A federated site's own data: the ``folder`` training source and writing labelled cases as a dataset folder.

A site of a federated run (:mod:`medannot.training.federated`) trains on every labelled case of its own dataset
folder (MSD / nnU-Net raw layout: ``dataset.json``, ``imagesTr/``, ``labelsTr/``) and keeps nothing back for
validation: the held-out cases live with whoever measures the shared model (the server, or a pooled or
single-site baseline), named by ``val_path``. The same source trains the pooled and single-site baselines, so
every arm of a comparison is scored on the same held-out cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medannot.data.image import Image
from medannot.errors import ConfigError, InputError
from medannot.training.sources import DatasetSource, Target, crop_image, register_source, resolve_data_path

__all__ = ["FolderSource", "count_labelled_cases", "tile_pairs", "write_dataset"]


def _labelled_items(path: str | Path) -> list[Any]:
    from medannot.io import discover_inputs

    items = sorted(discover_inputs(resolve_data_path(path)), key=lambda it: it.name)
    return [it for it in items if it.source == "dataset" and it.label_path is not None]


def count_labelled_cases(path: str | Path) -> int:
    """Labelled cases (``imagesTr`` with a ``labelsTr`` file) of the dataset folder ``path``.

    Raises:
        InputError: ``path`` missing or not a dataset folder. ConfigError: not found in the package either.
    """
    return len(_labelled_items(path))


@register_source("folder")
class FolderSource(DatasetSource):
    """Every labelled case of a dataset folder trains; the labelled cases of ``val_path`` validate.

    Args:
        path: Dataset folder whose labelled cases train; None: no training data (a federated server, which
            only measures the shared model).
        val_path: Dataset folder of held-out labelled cases; None: no validation.
        fg_ratio: Probability that a patch is centred near foreground.
        target: ``labels`` or ``binary`` (nonzero -> 1, e.g. instance masks).
        augment: True, False, or ``{"flips", "rot90", "intensity"}``.
        patch_size, preprocessing: Passed by the trainer.
        rng_seed: Unused (no split is drawn); kept for the source contract.

    Raises:
        ConfigError: Neither folder given, a folder without labelled cases, or a bad ``target``.
    """

    def __init__(
        self,
        patch_size: Sequence[int],
        path: str | None = None,
        val_path: str | None = None,
        preprocessing: list[dict[str, Any]] | None = None,
        fg_ratio: float = 0.5,
        target: str = "labels",
        augment: bool | dict[str, bool] = True,
        rng_seed: int = 0,
    ) -> None:
        if path is None and val_path is None:
            raise ConfigError("data source 'folder' needs data.params.path (training cases) or val_path (held-out cases)")
        try:
            self.target = Target(target)
        except ValueError:
            raise ConfigError(f"data.params.target must be one of: {', '.join(t.value for t in Target)}; got {target!r}") from None
        self._train_items = _labelled_items(path) if path is not None else []
        self._val_items = _labelled_items(val_path) if val_path is not None else []
        for what, folder, items in (("path", path, self._train_items), ("val_path", val_path, self._val_items)):
            if folder is not None and not items:
                raise ConfigError(f"data.params.{what} {folder!r} holds no labelled case (imagesTr/ with labelsTr/); check the folder")
        self.patch_size = [int(p) for p in patch_size]
        self.preprocessing = list(preprocessing or [])
        self.fg_ratio = float(fg_ratio)
        self.augment = augment
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @property
    def train_count(self) -> int:
        """Number of training cases."""
        return len(self._train_items)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One augmented patch from a random training case.

        Raises:
            ConfigError: This source has no training cases (``path`` not given).
        """
        if not self._train_items:
            raise ConfigError("data source 'folder' has no training cases (data.params.path not given); it only validates")
        return super().sample(rng)


def tile_pairs(image: Image, label: Image, tile: Sequence[int], name: str = "tile",
               region: Sequence[tuple[int, int]] | None = None) -> list[tuple[str, Image, Image]]:
    """Cut an image and its label map into non-overlapping tiles (geometry kept: world positions unchanged).

    Args:
        image: The image.
        label: Its label map on the same grid.
        tile: Tile size in voxels per spatial axis; a remainder at the far side is dropped.
        name: Prefix of the tile names (``{name}_{k:03d}``, row-major order).
        region: ``[(start, stop), ...]`` per spatial axis to tile (default: the whole grid).

    Returns:
        ``[(name, image tile, label tile), ...]``; empty when no whole tile fits.

    Raises:
        ConfigError: A tile size or region that does not match the image's dimensions.
        GeometryError: Image and label on different grids.
    """
    image.check_same_grid(label, "image and label")
    shape = image.spatial_shape
    bounds = list(region) if region is not None else [(0, s) for s in shape]
    if len(tile) != len(shape) or len(bounds) != len(shape):
        raise ConfigError(f"tile {list(tile)} and region {bounds} need one entry per spatial axis ({len(shape)})")
    starts = [range(int(lo), int(hi) - int(t) + 1, int(t)) for (lo, hi), t in zip(bounds, tile, strict=True)]
    out: list[tuple[str, Image, Image]] = []
    for index in np.ndindex(*[len(r) for r in starts]):
        start = [starts[a][i] for a, i in enumerate(index)]
        stop = [s + int(t) for s, t in zip(start, tile, strict=True)]
        out.append((f"{name}_{len(out):03d}", crop_image(image, start, stop), crop_image(label, start, stop)))
    return out


def write_dataset(pairs: Sequence[tuple[str, Image, Image]], folder: str | Path, labels: dict[int, str],
                  channel: str = "image", file_ending: str = ".nii.gz") -> Path:
    """Write labelled cases as an nnU-Net v2 raw dataset folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``).

    Args:
        pairs: ``[(case name, image, label map), ...]``.
        folder: The dataset folder (created; existing case files are replaced).
        labels: Label value -> name (0 is the background).
        channel: Name of the single image channel.
        file_ending: ``.nii.gz`` (any image) or ``.tif`` (2D, keeps the pixels' integer type).

    Returns:
        The folder.

    Raises:
        InputError: No pairs. OutputError: A file cannot be written.
    """
    import json

    from medannot.io import atomic_write_text, write_image

    if not pairs:
        raise InputError("no labelled case to write; give at least one (name, image, label) pair", folder)
    root = Path(folder)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for name, image, label in pairs:
        write_image(image, root / "imagesTr" / f"{name}_0000{file_ending}")
        write_image(label, root / "labelsTr" / f"{name}{file_ending}")
    spec = {"name": root.name, "channel_names": {"0": channel}, "labels": {v: int(k) for k, v in sorted(labels.items())},
            "numTraining": len(pairs), "file_ending": file_ending}
    atomic_write_text(root / "dataset.json", json.dumps(spec, indent=2) + "\n")
    return root
