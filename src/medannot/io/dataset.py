"""Dataset folders: Medical Segmentation Decathlon (MSD) and nnU-Net v2 raw layouts.

Both keep a ``dataset.json`` beside ``imagesTr/``, ``labelsTr/`` and optionally ``imagesTs/``:

* MSD: ``"labels": {"0": "background", "1": "tumour"}``, ``"modality": {"0": "T1", ...}``,
  ``"training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]``,
  ``"test": ["./imagesTs/y.nii.gz"]``; multi-channel images are single 4D files.
* nnU-Net v2: ``"labels": {"background": 0, "tumour": 1}``, ``"channel_names": {"0": "T2"}``,
  ``"file_ending": ".nii.gz"``; no file lists: channel ``c`` of case ``X`` is
  ``imagesTr/X_{c:04d}{file_ending}`` and its label ``labelsTr/X{file_ending}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medannot.data.case import Case
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError
from medannot.io._common import strip_image_suffix

__all__ = ["DatasetCase", "DatasetLayout", "load_dataset_case", "open_dataset", "parse_label_map"]

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class DatasetCase:
    """One case of a dataset: its channel files (in channel order), its label file, and its split."""

    name: str
    images: tuple[Path, ...]
    label: Path | None
    split: str  # "train" or "test"


@dataclass
class DatasetLayout:
    """A parsed dataset folder.

    Attributes:
        root: Folder holding ``dataset.json``.
        name: Dataset name from the JSON (or the folder name).
        labels: ``{label value: name}`` (background included when listed).
        channel_names: ``{channel index: name}`` (MSD ``modality`` / nnU-Net ``channel_names``).
        file_ending: e.g. ``".nii.gz"``.
        cases: Training cases first (with labels), then test cases.
        raw: The JSON as read.
    """

    root: Path
    name: str
    labels: dict[int, str]
    channel_names: dict[int, str]
    file_ending: str
    cases: list[DatasetCase] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def parse_label_map(labels: dict[str, Any], path: Path | None = None) -> dict[int, str]:
    """Turn an MSD (``{"0": "background"}``) or nnU-Net v2 (``{"background": 0}``) label table into ``{int: name}``.

    nnU-Net region entries (a name mapped to a list of values) are skipped: they are unions, not label values.

    Raises:
        InputError: If the table is neither form or two names share a value.
    """
    if not isinstance(labels, dict):
        raise InputError(f"dataset.json 'labels' must be an object, got {type(labels).__name__}", path)
    out: dict[int, str] = {}
    for key, value in labels.items():
        if isinstance(value, list):
            continue  # nnU-Net region-based training: a union of label values
        if str(key).strip().lstrip("-").isdigit() and isinstance(value, str):
            num, name = int(key), value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == int(value):
            num, name = int(value), str(key)
        elif isinstance(value, str) and value.strip().isdigit():
            num, name = int(value), str(key)
        else:
            raise InputError(
                f"dataset.json label entry {key!r}: {value!r} is neither MSD form {{\"1\": \"name\"}} nor nnU-Net form "
                "{\"name\": 1}",
                path,
            )
        if num < 0:
            raise InputError(f"label values must be >= 0, got {num} for {name!r}", path)
        if num in out and out[num] != name:
            raise InputError(f"label value {num} is named twice: {out[num]!r} and {name!r}", path)
        out[num] = name
    return dict(sorted(out.items()))


def _resolve(root: Path, rel: str, path: Path) -> Path:
    rel_path = Path(rel)
    if rel_path.is_absolute() or ".." in rel_path.parts:
        raise InputError(f"dataset.json refers to {rel!r} outside the dataset folder; use paths relative to it", path)
    return root / rel_path


def _visible(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _nnunet_cases(root: Path, images_dir: str, labels_dir: str | None, ending: str, split: str) -> list[DatasetCase]:
    groups: dict[str, dict[int, Path]] = {}
    for p in _visible(root / images_dir):
        if not p.name.endswith(ending):
            continue
        m = _CHANNEL_RE.match(p.name[: -len(ending)])
        if m is None:
            raise InputError(f"expected nnU-Net file name CASE_0000{ending} (4-digit channel suffix)", p)
        groups.setdefault(m["case"], {})[int(m["channel"])] = p
    cases = []
    for name in sorted(groups):
        chans = groups[name]
        if sorted(chans) != list(range(len(chans))):
            raise InputError(f"case {name!r} has channels {sorted(chans)}; expected 0..{len(chans) - 1}", root / images_dir)
        label = None
        if labels_dir is not None:
            cand = root / labels_dir / f"{name}{ending}"
            label = cand if cand.is_file() else None
        cases.append(DatasetCase(name, tuple(chans[c] for c in sorted(chans)), label, split))
    return cases


def _msd_cases(root: Path, raw: dict, path: Path) -> list[DatasetCase]:
    cases = []
    for entry in raw.get("training") or []:
        if not isinstance(entry, dict) or "image" not in entry:
            raise InputError(f"dataset.json training entry {entry!r} lacks 'image'", path)
        img = _resolve(root, entry["image"], path)
        lab = _resolve(root, entry["label"], path) if entry.get("label") else None
        cases.append(DatasetCase(strip_image_suffix(img.name), (img,), lab, "train"))
    for entry in raw.get("test") or []:
        rel = entry["image"] if isinstance(entry, dict) else entry
        img = _resolve(root, rel, path)
        cases.append(DatasetCase(strip_image_suffix(img.name), (img,), None, "test"))
    return cases


def open_dataset(root: str | Path) -> DatasetLayout:
    """Parse a dataset folder (MSD or nnU-Net v2 raw) without reading any image.

    Args:
        root: Folder holding ``dataset.json``.

    Returns:
        :class:`DatasetLayout` with the label map and the cases.

    Raises:
        InputError: Missing or invalid ``dataset.json``; entries that leave the folder; bad channel names.
    """
    root = Path(root)
    path = root / "dataset.json"
    if not path.is_file():
        raise InputError("no dataset.json here; expected an MSD or nnU-Net raw dataset folder", root)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read dataset.json ({' '.join(str(exc).split())})", path) from None
    except RecursionError:
        raise InputError("cannot read dataset.json (its lists or objects are nested too deeply); the file is damaged", path) from None
    if not isinstance(raw, dict):
        raise InputError("dataset.json must hold a JSON object", path)
    labels = parse_label_map(raw.get("labels") or {}, path)
    chan_raw = raw.get("channel_names") or raw.get("modality") or {}
    channel_names = {int(k): str(v) for k, v in chan_raw.items() if str(k).isdigit()} if isinstance(chan_raw, dict) else {}
    ending = str(raw.get("file_ending") or ".nii.gz")
    if "training" in raw or "test" in raw:
        cases = _msd_cases(root, raw, path)
    else:
        cases = _nnunet_cases(root, "imagesTr", "labelsTr", ending, "train")
        cases += _nnunet_cases(root, "imagesTs", "labelsTs", ending, "test")
    return DatasetLayout(root, str(raw.get("name") or root.name), labels, channel_names, ending, cases, raw)


def _stack_channels(images: list[Image], paths: tuple[Path, ...]) -> Image:
    first = images[0]
    for img, p in zip(images[1:], paths[1:]):
        if not img.same_grid(first):
            raise GeometryError(
                f"channel file is on a different grid from {paths[0].name}: shape {img.spatial_shape} {img.geometry!r} vs "
                f"{first.spatial_shape} {first.geometry!r}",
                p,
            )
    arrays = [img.array for img in images]
    dtype = np.result_type(*[a.dtype for a in arrays])
    meta = dict(first.meta)
    meta["sources"] = [str(p) for p in paths]
    return Image(np.concatenate([a.astype(dtype, copy=False) for a in arrays]), first.geometry, ImageKind.INTENSITY, meta)


def load_dataset_case(case: DatasetCase, layout: DatasetLayout | None = None) -> Case:
    """Read a dataset case into a :class:`Case` with ``"image"`` (channels stacked) and, if present, ``"label"``.

    Raises:
        InputError: A file is missing or unreadable (the message starts with its path).
        GeometryError: Channels or the label are on a different grid from the first channel.
    """
    from medannot.io import read_image

    channels = [read_image(p) for p in case.images]
    image = channels[0] if len(channels) == 1 else _stack_channels(channels, case.images)
    images = {"image": image}
    if case.label is not None:
        label = read_image(case.label, kind=ImageKind.LABEL)
        if not label.same_grid(image):
            raise GeometryError(
                f"label is on a different grid from its image {case.images[0].name}: shape {label.spatial_shape} "
                f"{label.geometry!r} vs {image.spatial_shape} {image.geometry!r}",
                case.label,
            )
        images["label"] = label
    meta: dict[str, Any] = {"split": case.split}
    if layout is not None:
        meta["dataset"] = layout.name
        meta["labels"] = dict(layout.labels)
        meta["channel_names"] = dict(layout.channel_names)
    if case.label is not None:
        meta["label_source"] = str(case.label)
    return Case(case.name, images, {}, meta, files=tuple(str(p) for p in case.images))
