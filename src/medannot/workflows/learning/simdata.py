"""Labelled datasets for ``medannot simulate``: an MSD or nnU-Net v2 folder, or a folder of image/label pairs.

- A folder with ``dataset.json`` (MSD or nnU-Net v2 raw, 2D PNG/TIFF or 3D NIfTI): its training cases with labels.
- Otherwise a folder with ``images/`` and ``labels/`` holding files of the same name (any format medannot reads),
  and label values 1..max named ``label1``, ``label2``, ...

Colour images are averaged to grey (the simulated reviewer sees one channel, as the Smart tool does). Every case
must have a label file on the image's grid; the label values are those of the dataset's label map (background 0
left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError

__all__ = ["SimCase", "SimDataset", "load_sim_dataset"]


@dataclass
class SimCase:
    """One labelled case: its name, image (single channel) and truth label array (spatial shape)."""

    name: str
    image: Image
    truth: np.ndarray


@dataclass
class SimDataset:
    """A labelled dataset.

    Attributes:
        name: Dataset name.
        cases: The cases, sorted by name.
        labels: ``[{"value", "name"}]`` of the foreground labels.
        spatial_dims: 2 or 3.
    """

    name: str
    cases: list[SimCase]
    labels: list[dict]
    spatial_dims: int

    @property
    def label_values(self) -> list[int]:
        """The foreground label values."""
        return [int(lab["value"]) for lab in self.labels]


def _grey(image: Image) -> Image:
    if image.channels == 1:
        return image
    return image.with_array(np.asarray(image.array, np.float32).mean(axis=0, keepdims=True))


def _planes(image: Image, label: Image) -> tuple[Image, Image]:
    """A one-slice x-y volume (how NIfTI and nnU-Net's 2D datasets store pictures) as the 2D image it is, as the
    server treats an uploaded picture; any other image unchanged."""
    if image.ndim == 3 and image.spatial_shape[2] == 1 and label.ndim == 3 and label.spatial_shape[2] == 1:
        try:
            return image.as_plane(), label.as_plane()
        except GeometryError:  # a slice that is not an x-y plane stays a volume
            return image, label
    return image, label


def _pairs_folder(root: Path) -> tuple[str, list[tuple[str, Path, Path]], dict[int, str] | None]:
    from medannot.io._common import strip_image_suffix

    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise InputError("not a dataset: give a folder with dataset.json (MSD / nnU-Net v2) or with images/ and labels/ "
                         "holding files of the same name", root)
    by_name = {strip_image_suffix(p.name): p for p in sorted(labels.iterdir()) if not p.name.startswith(".")}
    pairs = []
    for p in sorted(images.iterdir()):
        if p.name.startswith("."):
            continue
        name = strip_image_suffix(p.name)
        if name not in by_name:
            raise InputError(f"image {p.name!r} has no label file of the same name in labels/", root)
        pairs.append((name, p, by_name[name]))
    return root.name, pairs, None


def load_sim_dataset(path: str | Path) -> SimDataset:
    """Read every labelled case of a dataset folder (see the module docstring).

    Raises:
        InputError: Not a dataset folder, fewer than 4 labelled cases, a case without its label, images of
            mixed dimensionality, or a label on another grid.
    """
    from medannot.io import read_image
    from medannot.io.dataset import load_dataset_case, open_dataset

    root = Path(path)
    if not root.is_dir():
        raise InputError("dataset folder not found", root)
    cases: list[SimCase] = []
    label_map: dict[int, str] | None
    if (root / "dataset.json").is_file():
        layout = open_dataset(root)
        name, label_map = layout.name, {k: v for k, v in layout.labels.items() if k != 0}
        for dc in layout.cases:
            if dc.label is None:
                continue
            case = load_dataset_case(dc, layout)
            if "label" not in case:
                continue
            image, label = _planes(case["image"], case["label"])
            image.check_same_grid(label, f"case {dc.name!r} image and label")
            cases.append(SimCase(dc.name, _grey(image), np.asarray(label.array[0])))
    else:
        name, pairs, label_map = _pairs_folder(root)
        for cname, ip, lp in pairs:
            image, label = _planes(read_image(ip), read_image(lp, kind=ImageKind.LABEL))
            image.check_same_grid(label, f"case {cname!r} image and label")
            cases.append(SimCase(cname, _grey(image), np.asarray(label.array[0])))
    if len(cases) < 4:
        raise InputError(f"the dataset has {len(cases)} labelled case(s); a simulation needs at least 4", root)
    dims = {c.image.ndim for c in cases}
    if len(dims) != 1:
        raise InputError(f"the dataset mixes {sorted(dims)}D images; give cases of one dimensionality", root)
    present = sorted({int(v) for c in cases for v in np.unique(c.truth) if v != 0})
    if label_map is None:
        label_map = {v: f"label{v}" for v in range(1, max(present, default=1) + 1)}
    unknown = sorted(set(present) - set(label_map))
    if unknown:
        raise InputError(f"label values {unknown[:5]} are not in the dataset's label map {sorted(label_map)}", root)
    labels = [{"value": int(v), "name": str(n)} for v, n in sorted(label_map.items())]
    return SimDataset(name, sorted(cases, key=lambda c: c.name), labels, dims.pop())
