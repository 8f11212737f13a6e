"""Image: pixels, geometry and role travelling together.

An :class:`Image` holds a channel-first array of shape ``(C, *spatial)`` where
the number of spatial axes equals ``geometry.ndim`` (2 or 3). Dimensionality
is therefore explicit: a 3D volume with one slice is ``(1, X, Y, 1)`` with a 3D
geometry, and a 2D picture is ``(C, H, W)`` with a 2D geometry. 2D arrays are
indexed ``(row, column)``; 3D arrays ``(i, j, k)`` as in the NIfTI file.

``kind`` decides how the image is resampled (linear for intensities, nearest
for labels) and how it is stored (labels as unsigned integers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medannot.data.geometry import Geometry
from medannot.errors import GeometryError, InputError


class ImageKind(enum.StrEnum):
    """Role of an image: intensities (interpolated linearly) or labels (nearest neighbour)."""

    INTENSITY = "intensity"
    LABEL = "label"

    @classmethod
    def parse(cls, value: str | ImageKind) -> ImageKind:
        """Convert a string once; a typo lists the valid names."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(k.value for k in cls)
            raise InputError(f"unknown image kind {value!r}; expected one of: {valid}") from None


@dataclass(frozen=True, eq=False)
class Image:
    """An array with its world geometry and its role.

    Args:
        array: Channel-first array ``(C, *spatial)``; ``len(spatial) == geometry.ndim``.
        geometry: Grid geometry (spacing, origin, direction) in RAS mm.
        kind: :class:`ImageKind` (intensity or label).
        meta: Free-form metadata (source path, modality, DICOM UIDs, ...).
    """

    array: np.ndarray
    geometry: Geometry
    kind: ImageKind = ImageKind.INTENSITY
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        kind = ImageKind.parse(self.kind)
        if arr.ndim != self.geometry.ndim + 1:
            raise GeometryError(
                f"array of shape {arr.shape} does not fit a {self.geometry.ndim}D geometry: expected "
                f"{self.geometry.ndim + 1} axes (channels first); use Image.from_spatial for an array without a channel axis"
            )
        if arr.shape[0] < 1 or any(s < 1 for s in arr.shape[1:]):
            raise InputError(f"image is empty: array shape {arr.shape}")
        if kind is ImageKind.LABEL and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise InputError(f"label images need an integer dtype, got {arr.dtype}; round and cast the array first")
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "kind", kind)

    @classmethod
    def from_spatial(
        cls,
        array: np.ndarray,
        geometry: Geometry | None = None,
        kind: ImageKind | str = ImageKind.INTENSITY,
        spacing: tuple[float, ...] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Image:
        """Wrap a single-channel array without a channel axis.

        Args:
            array: Spatial array (2D or 3D).
            geometry: Its geometry; if omitted, ``spacing`` (default 1 mm) with identity direction.
            kind: Intensity or label.
            spacing: Spacing in mm when ``geometry`` is omitted.
            meta: Metadata.
        """
        arr = np.asarray(array)
        if geometry is None:
            geometry = Geometry(spacing=spacing if spacing is not None else (1.0,) * arr.ndim)
        return cls(arr[None], geometry, ImageKind.parse(kind), dict(meta or {}))

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return self.geometry.ndim

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.array.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape without the channel axis."""
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def affine(self) -> np.ndarray:
        """Index-to-world (RAS mm) homogeneous matrix."""
        return self.geometry.affine

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel spacing in mm."""
        return self.geometry.spacing

    @property
    def is_label(self) -> bool:
        """True for label maps."""
        return self.kind is ImageKind.LABEL

    def scalar(self) -> np.ndarray:
        """The single channel as a spatial array.

        Raises:
            InputError: If the image has more than one channel.
        """
        if self.channels != 1:
            raise InputError(f"expected a single-channel image, got {self.channels} channels; convert to grey first")
        return self.array[0]

    def with_array(self, array: np.ndarray, kind: ImageKind | str | None = None) -> Image:
        """Same geometry and metadata, new channel-first array (and optionally a new kind)."""
        return replace(self, array=array, kind=self.kind if kind is None else ImageKind.parse(kind), meta=dict(self.meta))

    def as_volume(self) -> Image:
        """A 2D image as a 3D image with one slice (z spacing 1 mm, origin z 0); a 3D image unchanged.

        This is how 2D images are stored in NIfTI files.
        """
        if self.ndim == 3:
            return self
        g = self.geometry
        direction = np.eye(3)
        direction[:2, :2] = g.direction
        geometry = Geometry(spacing=(*g.spacing, 1.0), origin=(*g.origin, 0.0), direction=direction)
        return Image(self.array[..., None], geometry, self.kind, dict(self.meta))

    def as_plane(self) -> Image:
        """The inverse of :meth:`as_volume`: a one-slice volume lying in the x-y plane as a 2D image.

        Raises:
            GeometryError: If the image is 3D with more than one slice, or its slice is not an x-y plane.
        """
        if self.ndim == 2:
            return self
        g = self.geometry
        d = np.asarray(g.direction)
        if self.spatial_shape[2] != 1 or not (np.allclose(d[2, :2], 0, atol=1e-6) and np.allclose(d[:2, 2], 0, atol=1e-6)):
            raise GeometryError(f"cannot treat shape {self.spatial_shape} {g!r} as a 2D image: expected one x-y slice")
        geometry = Geometry(spacing=g.spacing[:2], origin=g.origin[:2], direction=d[:2, :2])
        return Image(self.array[..., 0], geometry, self.kind, dict(self.meta))

    def same_grid(self, other: Image, atol: float = 1e-6) -> bool:
        """True when both images have the same spatial shape and affine (within ``atol`` mm)."""
        return self.spatial_shape == other.spatial_shape and self.geometry.isclose(other.geometry, atol=atol)

    def check_same_grid(self, other: Image, what: str = "images") -> None:
        """Raise :class:`GeometryError` with both grids in the message unless ``same_grid``."""
        if not self.same_grid(other):
            raise GeometryError(
                f"{what} are on different grids: shape {self.spatial_shape} {self.geometry!r} vs "
                f"shape {other.spatial_shape} {other.geometry!r}; resample one onto the other first"
            )

    def __repr__(self) -> str:
        return f"Image({self.kind.value}, {self.ndim}D, shape={self.array.shape}, dtype={self.array.dtype}, {self.geometry!r})"
