"""Training data sources: where patches and validation cases come from.

A source is a class registered with :func:`register_source` and constructed as
``cls(**config.data.params, rng_seed=int)``; the trainer also passes ``patch_size``,
``preprocessing`` (the bundle's transform specs) and ``spatial_dims`` when the constructor
accepts them. It provides:

- ``sample(rng) -> (image float32 (C, *patch_size), label int64 (*patch_size))``: one
  preprocessed, augmented training example;
- ``validation_cases() -> list[ValidationCase]``: held-out data (name, raw image, truth label image and,
  for instance metrics, the truth's instance ids) that the trainer runs through the real inference path.

Built-in sources: ``image-split`` (labelled images split into a train and a validation region)
and ``dataset`` (an MSD / nnU-Net raw dataset folder, split by case).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import ConfigError, InputError

__all__ = ["DataSource", "Target", "ValidationCase", "register_source", "get_source", "list_sources", "build_source", "crop_image"]


@dataclass(frozen=True)
class ValidationCase:
    """One held-out case: run through the real inference path and scored against its truth.

    Attributes:
        name: Case name (in metrics and model cards).
        image: The raw input (not preprocessed).
        truth: Its label image on the same grid.
        instances: Instance ids of the truth objects on the same grid (instance F1, detection boxes); None when the
            truth has no instances.
    """

    name: str
    image: Image
    truth: Image
    instances: np.ndarray | None = None


class DataSource(Protocol):
    """What the trainer needs from a data source."""

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...

    def validation_cases(self) -> list[ValidationCase]: ...


_SOURCES: dict[str, type] = {}


def register_source(name: str) -> Callable[[type], type]:
    """Class decorator registering a data source under ``name``.

    Raises:
        ConfigError: If the name is taken.
    """

    def deco(cls: type) -> type:
        if name in _SOURCES and _SOURCES[name] is not cls:
            raise ConfigError(f"data source {name!r} is already registered; choose another name")
        _SOURCES[name] = cls
        return cls

    return deco


def _load_plugins() -> None:
    # Sources living in other modules register on import; a missing optional module is fine.
    try:
        import medannot.training.synth  # noqa: F401
    except ImportError:
        pass
    import medannot.training.federated_data  # noqa: F401  (folder: a federated site's own dataset folder)
    import medannot.training.synth_lesions  # noqa: F401  (SYNTHETIC 3D lesion phantoms, detection tests)


def list_sources() -> list[str]:
    """Registered data-source names, sorted."""
    _load_plugins()
    return sorted(_SOURCES)


def get_source(name: str) -> type:
    """The source class registered as ``name``.

    Raises:
        ConfigError: Unknown name; the valid names are listed.
    """
    _load_plugins()
    try:
        return _SOURCES[name]
    except KeyError:
        raise ConfigError(f"unknown data source {name!r}; expected one of: {', '.join(sorted(_SOURCES))}") from None


def build_source(name: str, params: dict[str, Any], rng_seed: int, **extras: Any) -> Any:
    """Construct source ``name`` with ``params`` and ``rng_seed``, passing each of ``extras``
    (``patch_size``, ``preprocessing``, ``spatial_dims``) only if the constructor takes it.

    Raises:
        ConfigError: Unknown source, or parameters the source rejects.
    """
    cls = get_source(name)
    sig = inspect.signature(cls)
    takes_all = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = dict(params)
    for key, value in extras.items():
        if key not in kwargs and (takes_all or key in sig.parameters):
            kwargs[key] = value
    try:
        sig.bind(**kwargs, rng_seed=rng_seed)
    except TypeError as exc:
        raise ConfigError(f"data source {name!r}: {exc}; check data.params") from None
    return cls(**kwargs, rng_seed=rng_seed)


# ----------------------------------------------------------------------------------------------
# helpers shared by the built-in sources


class Target(enum.StrEnum):
    """How a truth label map becomes the training target."""

    LABELS = "labels"  # values as stored (must be 0..K-1)
    BINARY = "binary"  # any nonzero -> 1 (e.g. an instance mask -> foreground)


def _to_target(label: np.ndarray, target: Target) -> np.ndarray:
    if target is Target.BINARY:
        return (label != 0).astype(np.int64)
    return label.astype(np.int64)


def crop_image(image: Image, start: Sequence[int], stop: Sequence[int]) -> Image:
    """The sub-grid ``[start, stop)`` of ``image`` (voxels) with its geometry moved to match (world unchanged)."""
    sl = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
    origin = image.geometry.index_to_world(np.asarray(start, dtype=np.float64))
    geo = Geometry(spacing=image.geometry.spacing, origin=tuple(origin), direction=image.geometry.direction)
    return Image(np.ascontiguousarray(image.array[(slice(None),) + sl]), geo, image.kind, dict(image.meta))


def foreground_coords(label: np.ndarray, max_points: int = 200_000) -> np.ndarray:
    """Indices (N, ndim) of foreground voxels, thinned evenly to at most ``max_points`` (memory bound)."""
    coords = np.argwhere(label > 0)
    if len(coords) > max_points:
        coords = coords[:: int(np.ceil(len(coords) / max_points))]
    return coords


def random_patch(
    image: np.ndarray,
    label: np.ndarray,
    patch_size: Sequence[int],
    rng: np.random.Generator,
    fg_ratio: float,
    fg_coords: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a random patch (padding with zeros where the array is smaller than the patch).

    With probability ``fg_ratio`` the patch is centred near a random foreground voxel
    (``fg_coords``, (N, ndim)); otherwise uniformly placed.
    """
    shape = np.asarray(label.shape)
    patch = np.asarray(patch_size)
    pad = np.maximum(patch - shape, 0)
    if pad.any():
        widths = [(0, int(p)) for p in pad]
        image = np.pad(image, [(0, 0)] + widths)
        label = np.pad(label, widths)
        shape = np.asarray(label.shape)
    hi = shape - patch
    if fg_coords is not None and len(fg_coords) and rng.random() < fg_ratio:
        centre = fg_coords[rng.integers(len(fg_coords))]
        start = np.clip(centre - patch // 2 + rng.integers(-(patch // 4), patch // 4 + 1), 0, hi)
    else:
        start = np.array([rng.integers(0, h + 1) for h in hi])
    sl = tuple(slice(int(a), int(a + p)) for a, p in zip(start, patch))
    return image[(slice(None),) + sl], label[sl]


def augment_patch(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator, options: dict[str, Any] | bool
) -> tuple[np.ndarray, np.ndarray]:
    """Random flips, 90-degree rotations (in planes with equal sizes) and intensity scale/shift/gamma.

    ``options``: True (all), False (none) or ``{"flips", "rot90", "intensity"}`` booleans.
    """
    if options is False:
        return image, label
    opts = {"flips": True, "rot90": True, "intensity": True}
    if isinstance(options, dict):
        unknown = set(options) - set(opts)
        if unknown:
            raise ConfigError(f"unknown augment options {sorted(unknown)}; allowed: {', '.join(opts)}")
        opts.update(options)
    nd = label.ndim
    if opts["flips"]:
        for ax in range(nd):
            if rng.random() < 0.5:
                image = np.flip(image, ax + 1)
                label = np.flip(label, ax)
    if opts["rot90"]:
        planes = [(a, b) for a in range(nd) for b in range(a + 1, nd) if label.shape[a] == label.shape[b]]
        if planes:
            a, b = planes[rng.integers(len(planes))]
            k = int(rng.integers(4))
            image = np.rot90(image, k, axes=(a + 1, b + 1))
            label = np.rot90(label, k, axes=(a, b))
    image = np.ascontiguousarray(image, dtype=np.float32)
    if opts["intensity"]:
        scale = rng.uniform(0.8, 1.2)
        shift = rng.uniform(-0.1, 0.1)
        image = image * scale + shift
        if rng.random() < 0.3:
            lo = image.min()
            rngv = float(image.max() - lo) or 1.0
            image = ((image - lo) / rngv) ** rng.uniform(0.7, 1.5) * rngv + lo
        image = image.astype(np.float32)
    return image, np.ascontiguousarray(label, dtype=np.int64)


def resolve_data_path(path: str | Path) -> Path:
    """A path as given (relative to the working folder) or, failing that, inside the medannot package."""
    p = Path(path)
    if p.exists():
        return p
    packaged = Path(__file__).resolve().parent.parent / p
    if packaged.exists():
        return packaged
    raise ConfigError(f"data path {str(path)!r} not found (looked in the working folder and in the medannot package); fix data.params")


def _preprocess_pair(preprocessing: list[dict[str, Any]], image: Image, label: Image) -> tuple[np.ndarray, np.ndarray]:
    from medannot.transforms import build_transforms

    img, lab = build_transforms(preprocessing).apply_pair(image, label)
    if lab is None:  # pragma: no cover - apply_pair always returns a label when given one
        raise ConfigError("preprocessing dropped the label map")
    return np.asarray(img.array, dtype=np.float32), np.asarray(lab.array[0])



# ----------------------------------------------------------------------------------------------
# built-in sources


class Split(enum.StrEnum):
    """Which side of an image region split trains (the other side validates)."""

    LOW = "low"  # indices below the split train, e.g. the left half of a 2D image along columns
    HIGH = "high"


def _read_pair(entry: dict[str, Any]) -> tuple[Image, Image]:
    from medannot.io import read_image

    if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
        raise ConfigError(f"each data.params.images entry needs 'image' and 'label' paths, got {entry!r}")
    image = read_image(resolve_data_path(entry["image"]))
    label = read_image(resolve_data_path(entry["label"]), kind=ImageKind.LABEL)
    image.check_same_grid(label, "image and label")
    return image, label


@register_source("image-split")
class ImageSplitSource:
    """Labelled images split into a training region and a held-out validation region.

    Along spatial ``axis`` the voxels before ``fraction * size`` form one side and the rest
    the other; ``train_side`` picks which side trains. ``margin`` voxels next to the split
    are dropped from the training side, so no training patch touches the validation side.
    Patches are sampled only inside the training region, centred on foreground with
    probability ``fg_ratio``.

    Args:
        images: ``[{"image": path, "label": path}, ...]`` (paths relative to the working folder
            or to the medannot package, e.g. ``data_samples/stardist/img2d.tif``).
        axis: Spatial axis of the split (negative counts from the end; -1 = columns in 2D).
        fraction: Where the split lies, as a fraction of the axis length.
        train_side: ``low`` or ``high``.
        margin: Voxels dropped from the training side next to the split.
        fg_ratio: Probability that a patch is centred near foreground.
        target: ``labels`` (values as stored) or ``binary`` (nonzero -> 1; instance masks).
        augment: True, False, or ``{"flips", "rot90", "intensity"}``.
        patch_size, preprocessing: Passed by the trainer.
        rng_seed: Seed (the split itself is deterministic).
    """

    def __init__(
        self,
        images: list[dict[str, Any]],
        patch_size: Sequence[int],
        preprocessing: list[dict[str, Any]] | None = None,
        axis: int = -1,
        fraction: float = 0.5,
        train_side: str = "low",
        margin: int = 0,
        fg_ratio: float = 0.5,
        target: str = "labels",
        augment: bool | dict[str, bool] = True,
        rng_seed: int = 0,
    ) -> None:
        if not images:
            raise ConfigError("data.params.images is empty; list at least one {image, label} pair")
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"data.params.fraction must lie in (0, 1), got {fraction}")
        try:
            side = Split(train_side)
            self.target = Target(target)
        except ValueError as exc:
            raise ConfigError(f"data.params: {exc}; train_side is low|high, target is labels|binary") from None
        self.patch_size = [int(p) for p in patch_size]
        self.fg_ratio = float(fg_ratio)
        self.augment = augment
        self._train: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._val: list[ValidationCase] = []
        for i, entry in enumerate(images):
            image, label = _read_pair(entry)
            nd = image.ndim
            ax = axis % nd
            size = image.spatial_shape[ax]
            cut = int(round(size * fraction))
            lo_train = (0, cut - int(margin)) if side is Split.LOW else (cut + int(margin), size)
            val_rng = (cut, size) if side is Split.LOW else (0, cut)
            if lo_train[1] - lo_train[0] < 1:
                raise ConfigError(f"data.params.margin={margin} leaves no training region along axis {axis} (size {size})")
            start = [0] * nd
            stop = list(image.spatial_shape)
            start[ax], stop[ax] = lo_train
            tr_img, tr_lab = crop_image(image, start, stop), crop_image(label, start, stop)
            arr, lab = _preprocess_pair(list(preprocessing or []), tr_img, tr_lab)
            lab = _to_target(lab, self.target)
            self._train.append((arr, lab, foreground_coords(lab)))
            start[ax], stop[ax] = val_rng
            v_img = crop_image(image, start, stop)
            v_lab = crop_image(label, start, stop)
            truth = v_lab.with_array(_to_target(v_lab.array, self.target).astype(np.uint16))
            name = Path(str(entry["image"])).name.split(".")[0]
            case = f"{name}-{'right' if side is Split.LOW else 'left'}-{i}" if nd == 2 else f"{name}-val-{i}"
            self._val.append(ValidationCase(case, v_img, truth, v_lab.array[0].copy()))

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One augmented training patch from the training region(s)."""
        arr, lab, fg = self._train[int(rng.integers(len(self._train)))]
        img, lbl = random_patch(arr, lab, self.patch_size, rng, self.fg_ratio, fg)
        return augment_patch(img, lbl, rng, self.augment)

    def validation_cases(self) -> list[ValidationCase]:
        """The held-out regions, raw (not preprocessed), with their truth."""
        return list(self._val)


class CasePatchSampler:
    """Random augmented patches from whole labelled cases, each read and preprocessed once (then kept in memory).

    Subclasses set ``_train_items``, ``preprocessing``-derived state, ``patch_size``, ``fg_ratio``, ``augment`` and
    ``_cache`` (an empty dict) and implement :meth:`_prepared`.
    """

    _train_items: list[Any]
    _cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    patch_size: list[int]
    fg_ratio: float
    augment: Any

    def _prepared(self, item: Any) -> tuple[np.ndarray, np.ndarray]:
        """The preprocessed image ``(C, *spatial)`` and its training target of one training item."""
        raise NotImplementedError

    def _train_case(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if index not in self._cache:
            arr, lab = self._prepared(self._train_items[index])
            self._cache[index] = (arr, lab, foreground_coords(lab))
        return self._cache[index]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One augmented patch from a random training case."""
        arr, lab, fg = self._train_case(int(rng.integers(len(self._train_items))))
        img, lbl = random_patch(arr, lab, self.patch_size, rng, self.fg_ratio, fg)
        return augment_patch(img, lbl, rng, self.augment)


@register_source("dataset")
class DatasetSource(CasePatchSampler):
    """An MSD / nnU-Net raw dataset folder (``imagesTr`` + ``labelsTr``), split by case.

    Preprocessing runs once per training case (on first use) and is cached in memory.

    Args:
        path: Dataset folder (read with ``medannot.io.discover_inputs``).
        val_fraction: Fraction of cases held out (seeded shuffle), at least one each side.
        val_cases: Explicit validation case names (overrides ``val_fraction``).
        fg_ratio: Probability that a patch is centred near foreground.
        target: ``labels`` or ``binary``.
        augment: True, False, or ``{"flips", "rot90", "intensity"}``.
        patch_size, preprocessing: Passed by the trainer.
        rng_seed: Seed of the split.
    """

    def __init__(
        self,
        path: str,
        patch_size: Sequence[int],
        preprocessing: list[dict[str, Any]] | None = None,
        val_fraction: float = 0.2,
        val_cases: list[str] | None = None,
        fg_ratio: float = 0.5,
        target: str = "labels",
        augment: bool | dict[str, bool] = True,
        rng_seed: int = 0,
    ) -> None:
        from medannot.io import discover_inputs

        try:
            self.target = Target(target)
        except ValueError:
            raise ConfigError(f"data.params.target must be one of: {', '.join(t.value for t in Target)}; got {target!r}") from None
        items = sorted(discover_inputs(resolve_data_path(path)), key=lambda it: it.name)
        if len(items) < 2:
            raise ConfigError(f"dataset {path!r} has {len(items)} case(s); training needs at least 2 (one to validate)")
        names = [it.name for it in items]
        if val_cases:
            unknown = sorted(set(val_cases) - set(names))
            if unknown:
                raise ConfigError(f"data.params.val_cases {unknown} are not in the dataset (cases: {', '.join(names[:10])}...)")
            val = set(val_cases)
        else:
            n_val = min(max(1, int(round(len(items) * val_fraction))), len(items) - 1)
            order = np.random.default_rng(rng_seed).permutation(len(items))
            val = {names[i] for i in order[:n_val]}
        self._train_items = [it for it in items if it.name not in val]
        self._val_items = [it for it in items if it.name in val]
        if not self._train_items:
            raise ConfigError("every case is a validation case; leave at least one for training")
        self.patch_size = [int(p) for p in patch_size]
        self.preprocessing = list(preprocessing or [])
        self.fg_ratio = float(fg_ratio)
        self.augment = augment
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @staticmethod
    def _load(item: Any) -> tuple[Image, Image]:
        case = item.load()
        if "label" not in case:
            raise InputError(f"case {item.name!r} has no label; training needs labelled cases (labelsTr)")
        return case["image"], case["label"]

    def _prepared(self, item: Any) -> tuple[np.ndarray, np.ndarray]:
        image, label = self._load(item)
        arr, lab = _preprocess_pair(self.preprocessing, image, label)
        return arr, _to_target(lab, self.target)

    def validation_cases(self) -> list[ValidationCase]:
        """The held-out cases, raw, with their truth."""
        out = []
        for item in self._val_items:
            image, label = self._load(item)
            out.append(ValidationCase(item.name, image, label.with_array(_to_target(label.array, self.target).astype(np.uint16))))
        return out
