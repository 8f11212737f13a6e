"""Labelled images for classification: a folder per class, a CSV, or the real modality samples.

Every source yields :class:`ClassSample` items: a channel-first float32 array (2D or 3D), its class name,
and a *group*: the acquisition it came from (a file, a volume, a DICOM study). Training and validation are
split by group, never inside one, so slices of one volume are never on both sides.

- ``folder``: ``root/<class>/<file>`` (any file :func:`medannot.io.read_image` reads); group = the file,
  or the part of the file name before ``__`` when there is one (``ctA__slice3.png`` -> ``ctA``).
- ``csv``: columns ``path,label`` and optionally ``group`` and ``split`` (``train``/``val``); relative paths
  are taken from the CSV's folder.
- ``modality-samples``: real images that ship inside installed packages (see
  :mod:`medannot.training.modality_samples`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medannot.errors import ConfigError, InputError, MedannotError

__all__ = ["ClassSample", "load_samples", "split_by_group"]


@dataclass
class ClassSample:
    """One labelled image.

    Attributes:
        array: Channel-first intensities ``(C, *spatial)`` (float32, raw units).
        label: Class name.
        group: Source acquisition (split unit).
        name: Readable identifier (file and slice).
        split: ``"train"``/``"val"`` when the source fixes it, else "".
    """

    array: np.ndarray
    label: str
    group: str
    name: str
    split: str = ""


def _read(path: Path, spatial_dims: int) -> np.ndarray:
    from medannot.io import read_image

    img = read_image(path)
    if img.ndim == 3 and spatial_dims == 2 and img.spatial_shape[2] == 1:
        img = img.as_plane() if _is_plane(img) else img
    return np.asarray(img.array, dtype=np.float32)


def _is_plane(img: Any) -> bool:
    try:
        img.as_plane()
        return True
    except MedannotError:
        return False


def _group_of(path: Path) -> str:
    stem = path.name.split(".")[0]
    return stem.split("__")[0] if "__" in stem else stem


def folder_samples(root: str | Path, spatial_dims: int) -> list[ClassSample]:
    """``root/<class>/<file>``: every readable file under a class folder (unreadable ones raise InputError).

    Raises:
        InputError: Missing folder, fewer than two class folders, or an unreadable file (named).
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError("classification data folder not found; expected ROOT/<class>/<images>", base)
    classes = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(f"need at least two class folders, found {[c.name for c in classes]}", base)
    out = []
    for cdir in classes:
        for f in sorted(p for p in cdir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            out.append(ClassSample(_read(f, spatial_dims), cdir.name, f"{cdir.name}/{_group_of(f)}", f"{cdir.name}/{f.name}"))
    return out


def csv_samples(path: str | Path, spatial_dims: int, root: str | Path | None = None) -> list[ClassSample]:
    """Rows ``path,label[,group][,split]`` of a CSV file.

    Raises:
        InputError: Missing file or columns, or an unreadable image (named with its row).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("classification CSV not found", p)
    base = Path(root) if root is not None else p.parent
    with p.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise InputError("the CSV needs a header with at least the columns 'path' and 'label'", p)
    out = []
    for i, row in enumerate(rows, start=2):
        f = Path(row["path"])
        f = f if f.is_absolute() else base / f
        split = (row.get("split") or "").strip().lower()
        if split not in ("", "train", "val"):
            raise InputError(f"row {i}: split must be 'train' or 'val', got {split!r}", p)
        try:
            arr = _read(f, spatial_dims)
        except MedannotError as exc:
            raise InputError(f"row {i}: {exc}", p) from None
        out.append(ClassSample(arr, row["label"].strip(), (row.get("group") or "").strip() or _group_of(f), row["path"], split))
    return out


def load_samples(source: str, params: dict[str, Any], spatial_dims: int) -> list[ClassSample]:
    """Samples of the data source named in a classification config.

    Raises:
        ConfigError: Unknown source or parameters. InputError: unreadable data.
    """
    try:
        if source == "folder":
            return folder_samples(spatial_dims=spatial_dims, **params)
        if source == "csv":
            return csv_samples(spatial_dims=spatial_dims, **params)
        if source == "modality-samples":
            from medannot.training.modality_samples import modality_samples

            return modality_samples(**params)
    except TypeError as exc:
        raise ConfigError(f"data source {source!r}: bad parameters {sorted(params)}: {exc}") from None
    raise ConfigError(f"unknown classification data source {source!r}; expected folder, csv or modality-samples")


def split_by_group(samples: list[ClassSample], val_groups: list[str] | None, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of training and validation samples; a group is entirely on one side.

    Precedence: a sample's own ``split``; else ``val_groups`` when given; else per class, a random
    ``val_fraction`` of its groups (at least one when the class has two or more groups).

    Raises:
        ConfigError: A named validation group that does not exist.
    """
    groups = {s.group for s in samples}
    if val_groups:
        missing = sorted(set(val_groups) - groups)
        if missing:
            raise ConfigError(f"validation groups {missing} are not in the data; groups are: {sorted(groups)}")
        val = set(val_groups)
    else:
        rng = np.random.default_rng(seed)
        val = set()
        for label in sorted({s.label for s in samples}):
            g = sorted({s.group for s in samples if s.label == label})
            n = int(round(val_fraction * len(g)))
            if len(g) >= 2:
                n = min(max(n, 1), len(g) - 1)
            val.update(rng.choice(g, size=n, replace=False).tolist() if n else [])
    train_idx: list[int] = []
    val_idx: list[int] = []
    for i, s in enumerate(samples):
        is_val = s.split == "val" if s.split else s.group in val
        (val_idx if is_val else train_idx).append(i)
    return train_idx, val_idx
