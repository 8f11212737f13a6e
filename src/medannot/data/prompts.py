"""Prompts for promptable (interactive) segmentation, and the engine interface.

A *prompt session* segments ONE object: positive and negative points, boxes, scribbles and an
optional previous mask to refine. Coordinates are given either in world millimetres (RAS, as
everywhere in medannot: :class:`~medannot.data.Geometry` maps index <-> world) or in voxel indices
in the array's axis order (``(row, column)`` for 2D images, ``(i, j, k)`` for volumes).

PROMPTS.json (``Prompts.from_dict`` / ``Prompts.to_dict``)::

    {
      "version": 1,
      "space": "ras",                     # or "voxel"
      "label": "lesion",                  # name of the object (optional, default "object")
      "points": [{"xyz": [12.5, -20.0, 31.0], "positive": true},
                 {"xyz": [14.0, -22.0, 31.0], "positive": false}],
      "boxes": [{"min": [0.0, -30.0, 31.0], "max": [25.0, -10.0, 31.0]}],
      "scribbles": [{"points": [[1, 2, 3], [4, 5, 3]], "positive": true}]
    }

In ``"voxel"`` space the point key is ``"ijk"`` instead of ``"xyz"``. Every coordinate list has
one value per spatial axis of the image (2 for 2D images, 3 for volumes). A box is given by two
opposite corners; it covers the voxels whose centres lie between them (inclusive). A box that is
flat along one axis of a volume (both corners on one slice) is a 2D box on that slice. A scribble
is a polyline: consecutive points are joined by straight segments when it is turned into voxels.
``"positive"`` defaults to true. The previous mask is not part of the JSON (it is an image file).

Validation (:meth:`Prompts.resolve`) raises :class:`~medannot.errors.InputError` with one line:
a point or scribble outside the image, a box of zero size or outside the image, an empty prompt
set (no point, box or scribble), and :class:`~medannot.errors.GeometryError` for a previous mask
on another grid.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image
from medannot.errors import GeometryError, InputError

__all__ = [
    "BoxPrompt",
    "PointPrompt",
    "PromptSpace",
    "PromptableEngine",
    "Prompts",
    "Scribble",
    "VoxelPrompts",
]

FORMAT_VERSION = 1


class PromptSpace(enum.StrEnum):
    """Coordinate space of prompts: world RAS millimetres or voxel indices (array order)."""

    RAS = "ras"
    VOXEL = "voxel"

    @classmethod
    def parse(cls, value: str | PromptSpace) -> PromptSpace:
        """Convert a string once; a typo lists the valid names."""
        try:
            return cls(str(value).lower())
        except ValueError:
            raise InputError(f"unknown prompt space {value!r}; expected one of: ras, voxel") from None


def _coords(values: Any, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected a list of numbers, got {values!r}") from None
    if len(out) not in (2, 3) or not all(np.isfinite(out)):
        raise InputError(f"{what}: expected 2 or 3 finite coordinates, got {list(values)!r}")
    return out


@dataclass(frozen=True)
class PointPrompt:
    """A click: ``position`` (RAS mm or voxel indices, see :class:`Prompts.space`), positive or negative."""

    position: tuple[float, ...]
    positive: bool = True


@dataclass(frozen=True)
class BoxPrompt:
    """A box given by two opposite corners (inclusive); flat along one axis of a volume = a box on one slice."""

    minimum: tuple[float, ...]
    maximum: tuple[float, ...]


@dataclass(frozen=True)
class Scribble:
    """A stroke: a polyline of positions (consecutive points joined), positive or negative."""

    points: tuple[tuple[float, ...], ...]
    positive: bool = True


@dataclass(frozen=True, eq=False)
class VoxelPrompts:
    """Prompts resolved to integer voxel indices of one image grid (what engines consume).

    Attributes:
        shape: Spatial shape of the image grid.
        points: ``(n, ndim)`` int64 voxel indices of the clicks, in the order given.
        point_positive: ``(n,)`` bool, True for positive clicks.
        boxes: ``(m, 2, ndim)`` int64 inclusive index ranges ``[lo, hi]`` (clipped to the grid).
        scribble_voxels: ``(k, ndim)`` int64 voxels of all scribbles (polylines rasterised).
        scribble_positive: ``(k,)`` bool.
        previous: Previous mask (bool, spatial shape) or None.
    """

    shape: tuple[int, ...]
    points: np.ndarray
    point_positive: np.ndarray
    boxes: np.ndarray
    scribble_voxels: np.ndarray
    scribble_positive: np.ndarray
    previous: np.ndarray | None = None

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.shape)

    def seeds(self, positive: bool) -> np.ndarray:
        """``(n, ndim)`` voxels of the positive (or negative) clicks and scribbles together."""
        pts = self.points[self.point_positive == positive]
        scr = self.scribble_voxels[self.scribble_positive == positive]
        return np.concatenate([pts, scr]).astype(np.int64).reshape(-1, self.ndim)

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive voxel bounding box ``(lo, hi)`` of every prompt (points, boxes, scribbles, previous mask)."""
        parts = [self.points, self.scribble_voxels, self.boxes.reshape(-1, self.ndim)]
        if self.previous is not None and self.previous.any():
            nz = np.nonzero(self.previous)
            parts.append(np.array([[a.min() for a in nz], [a.max() for a in nz]]))
        allp = np.concatenate([p.reshape(-1, self.ndim) for p in parts])
        return allp.min(axis=0), allp.max(axis=0)


def _rasterise(points: np.ndarray) -> np.ndarray:
    """Voxels of a polyline through integer points (each segment sampled at one step per voxel)."""
    out = [points[:1]]
    for a, b in zip(points[:-1], points[1:]):
        n = int(np.abs(b - a).max())
        if n:
            t = np.linspace(0.0, 1.0, n + 1)[1:, None]
            out.append(np.rint(a + t * (b - a)).astype(np.int64))
    return np.unique(np.concatenate(out), axis=0)


@dataclass(frozen=True, eq=False)
class Prompts:
    """The prompts of one object.

    Args:
        points: Clicks (positive and negative).
        boxes: Boxes.
        scribbles: Strokes.
        space: Space of every coordinate above (:class:`PromptSpace`).
        label: Name of the object.
        previous: Previous mask to refine: a label :class:`Image` (grid checked against the image) or a
            spatial array (shape checked); non-zero = object.
    """

    points: tuple[PointPrompt, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()
    scribbles: tuple[Scribble, ...] = ()
    space: PromptSpace = PromptSpace.VOXEL
    label: str = "object"
    previous: Image | np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "space", PromptSpace.parse(self.space))
        object.__setattr__(self, "points", tuple(self.points))
        object.__setattr__(self, "boxes", tuple(self.boxes))
        object.__setattr__(self, "scribbles", tuple(self.scribbles))

    @property
    def is_empty(self) -> bool:
        """True when there is no point, box or scribble (a previous mask alone is no prompt)."""
        return not (self.points or self.boxes or self.scribbles)

    def with_point(self, position: Sequence[float], positive: bool = True) -> Prompts:
        """A copy with one more click appended."""
        return replace(self, points=(*self.points, PointPrompt(tuple(float(v) for v in position), bool(positive))))

    def with_previous(self, previous: Image | np.ndarray | None) -> Prompts:
        """A copy with another previous mask."""
        return replace(self, previous=previous)

    # ------------------------------------------------------------------ JSON

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], image_geometry: Geometry | None = None) -> Prompts:
        """Parse the PROMPTS.json structure (see the module docstring).

        Args:
            data: The parsed JSON object.
            image_geometry: When given, the number of coordinates is checked against its dimensionality.

        Raises:
            InputError: On a missing or mistyped field, an unknown space, or coordinates of the wrong length.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"prompts: expected a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"version", "space", "label", "points", "boxes", "scribbles"}
        if unknown:
            raise InputError(f"prompts: unknown keys {sorted(unknown)}; expected version, space, label, points, boxes, scribbles")
        if int(data.get("version", FORMAT_VERSION)) != FORMAT_VERSION:
            raise InputError(f"prompts: version {data.get('version')!r} is not supported; expected {FORMAT_VERSION}")
        space = PromptSpace.parse(data.get("space", "ras"))
        key = "xyz" if space is PromptSpace.RAS else "ijk"
        ndim = image_geometry.ndim if image_geometry is not None else None

        def coords(values: Any, what: str) -> tuple[float, ...]:
            out = _coords(values, what)
            if ndim is not None and len(out) != ndim:
                raise InputError(f"{what}: the image is {ndim}D, so give {ndim} coordinates, got {list(out)}")
            return out

        def items(name: str) -> list[Mapping[str, Any]]:
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
                raise InputError(f"prompts: {name!r} must be a list of objects, got {value!r}")
            return value

        points = []
        for n, p in enumerate(items("points")):
            if key not in p:
                raise InputError(f"prompts: point {n} has no {key!r} (space {space.value!r} uses {key!r}), got keys {sorted(p)}")
            points.append(PointPrompt(coords(p[key], f"point {n}"), _flag(p, f"point {n}")))
        boxes = []
        for n, b in enumerate(items("boxes")):
            if "min" not in b or "max" not in b:
                raise InputError(f"prompts: box {n} needs 'min' and 'max' corners, got keys {sorted(b)}")
            lo, hi = coords(b["min"], f"box {n} min"), coords(b["max"], f"box {n} max")
            if len(lo) != len(hi):
                raise InputError(f"prompts: box {n} corners have {len(lo)} and {len(hi)} coordinates; give the same number")
            boxes.append(BoxPrompt(lo, hi))
        scribbles = []
        for n, s in enumerate(items("scribbles")):
            pts = s.get("points")
            if not isinstance(pts, list) or not pts:
                raise InputError(f"prompts: scribble {n} needs a non-empty 'points' list")
            scribbles.append(Scribble(tuple(coords(q, f"scribble {n}") for q in pts), _flag(s, f"scribble {n}")))
        label = data.get("label", "object")
        if not isinstance(label, str) or not label.strip():
            raise InputError(f"prompts: 'label' must be a non-empty string, got {label!r}")
        return cls(tuple(points), tuple(boxes), tuple(scribbles), space, label.strip())

    def to_dict(self) -> dict[str, Any]:
        """The PROMPTS.json structure (the previous mask is left out)."""
        key = "xyz" if self.space is PromptSpace.RAS else "ijk"
        return {
            "version": FORMAT_VERSION,
            "space": self.space.value,
            "label": self.label,
            "points": [{key: list(p.position), "positive": p.positive} for p in self.points],
            "boxes": [{"min": list(b.minimum), "max": list(b.maximum)} for b in self.boxes],
            "scribbles": [{"points": [list(q) for q in s.points], "positive": s.positive} for s in self.scribbles],
        }

    # ------------------------------------------------------------------ voxels

    def _to_index(self, coords: np.ndarray, geometry: Geometry) -> np.ndarray:
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, geometry.ndim)
        return coords if self.space is PromptSpace.VOXEL else geometry.world_to_index(coords)

    def resolve(self, image: Image) -> VoxelPrompts:
        """Validate against ``image`` and convert every prompt to voxel indices of its grid.

        Raises:
            InputError: Empty prompt set; a point or scribble outside the image; coordinates of the wrong
                length; a box of zero size (flat along two or more axes of a volume, or along any axis of a
                2D image) or entirely outside the image.
            GeometryError: A previous mask on another grid than ``image``.
        """
        g, shape = image.geometry, image.spatial_shape
        nd = g.ndim
        if self.is_empty:
            raise InputError("empty prompt set: give at least one point, box or scribble")
        for what, c in self._all_coords():
            if len(c) != nd:
                raise InputError(f"{what}: the image is {nd}D, so give {nd} coordinates, got {list(c)}")
        upper = np.asarray(shape) - 1

        def inside(c: Sequence[float], what: str) -> np.ndarray:
            idx = np.rint(self._to_index(np.asarray(c), g)[0]).astype(np.int64)
            if np.any(idx < 0) or np.any(idx > upper):
                raise InputError(
                    f"{what} {list(c)} ({self.space.value}) is voxel {idx.tolist()}, outside the image of shape "
                    f"{shape}; give a position inside the image"
                )
            return idx

        pts = np.array([inside(p.position, f"point {n}") for n, p in enumerate(self.points)], np.int64).reshape(-1, nd)
        pos = np.array([p.positive for p in self.points], bool)
        boxes = np.array([self._box(n, b, g, upper) for n, b in enumerate(self.boxes)], np.int64).reshape(-1, 2, nd)
        svox, spos = [], []
        for n, s in enumerate(self.scribbles):
            vox = _rasterise(np.array([inside(q, f"scribble {n} point {m}") for m, q in enumerate(s.points)]))
            svox.append(vox)
            spos.append(np.full(len(vox), s.positive))
        scribble_voxels = np.concatenate(svox).astype(np.int64) if svox else np.zeros((0, nd), np.int64)
        scribble_positive = np.concatenate(spos) if spos else np.zeros(0, bool)
        return VoxelPrompts(tuple(shape), pts, pos, boxes, scribble_voxels, scribble_positive, self._previous(image))

    def _all_coords(self) -> Iterable[tuple[str, tuple[float, ...]]]:
        for n, p in enumerate(self.points):
            yield f"point {n}", p.position
        for n, b in enumerate(self.boxes):
            yield f"box {n} min", b.minimum
            yield f"box {n} max", b.maximum
        for n, s in enumerate(self.scribbles):
            for q in s.points:
                yield f"scribble {n}", q

    def _box(self, n: int, box: BoxPrompt, g: Geometry, upper: np.ndarray) -> np.ndarray:
        corners = np.array(np.meshgrid(*[[a, b] for a, b in zip(box.minimum, box.maximum)], indexing="ij"))
        idx = self._to_index(corners.reshape(g.ndim, -1).T, g)
        lo_f, hi_f = idx.min(axis=0), idx.max(axis=0)
        flat = int(np.sum(hi_f - lo_f < 0.5))  # less than one voxel of extent along that axis
        if flat > (1 if g.ndim == 3 else 0):
            raise InputError(
                f"box {n} from {list(box.minimum)} to {list(box.maximum)} ({self.space.value}) has zero size along "
                f"{flat} axes; give two opposite corners of the object (a volume box may be flat along one axis only)"
            )
        lo, hi = np.ceil(lo_f - 1e-6).astype(np.int64), np.floor(hi_f + 1e-6).astype(np.int64)
        thin = hi < lo  # no voxel centre between the corners: the slice (row, column) nearest their middle
        mid = np.rint((lo_f + hi_f) / 2).astype(np.int64)
        lo, hi = np.where(thin, mid, lo), np.where(thin, mid, hi)
        if np.any(hi < 0) or np.any(lo > upper):
            raise InputError(f"box {n} from {list(box.minimum)} to {list(box.maximum)} ({self.space.value}) lies outside the image; "
                             "give a box that overlaps the image")
        return np.stack([np.clip(lo, 0, upper), np.clip(hi, 0, upper)])

    def _previous(self, image: Image) -> np.ndarray | None:
        prev = self.previous
        if prev is None:
            return None
        if isinstance(prev, Image):
            if not prev.same_grid(image):
                raise GeometryError(
                    f"the previous mask is on another grid than the image: shape {prev.spatial_shape} {prev.geometry!r} vs "
                    f"shape {image.spatial_shape} {image.geometry!r}; resample it onto the image first"
                )
            arr = prev.array[0] if prev.channels == 1 else prev.array.any(axis=0)
        else:
            arr = np.asarray(prev)
            if arr.shape != image.spatial_shape:
                raise GeometryError(f"the previous mask has shape {arr.shape}, the image {image.spatial_shape}; "
                                    "give a mask on the image grid")
        return np.asarray(arr) != 0


def _flag(item: Mapping[str, Any], what: str) -> bool:
    value = item.get("positive", True)
    if not isinstance(value, bool):
        raise InputError(f"prompts: {what} 'positive' must be true or false, got {value!r}")
    return value


@runtime_checkable
class PromptableEngine(Protocol):
    """Anything that turns prompts into the mask of ONE object (classical engines, the network).

    Attributes:
        name: Short engine name (e.g. ``"growcut"``).
    """

    name: str

    def segment(self, image: Image, prompts: Prompts) -> np.ndarray:
        """Segment the object the prompts point at.

        Args:
            image: Single-channel intensity image (2D or 3D).
            prompts: The object's prompts (validated with :meth:`Prompts.resolve`).

        Returns:
            Bool mask of the image's spatial shape (True = object).

        Raises:
            InputError: On bad prompts (see :meth:`Prompts.resolve`).
        """
        ...
