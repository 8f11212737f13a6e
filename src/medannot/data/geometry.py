"""Geometry of a voxel or pixel grid in world coordinates.

World coordinates follow the NIfTI / nibabel convention, RAS+ millimetres: the
affine maps an array index ``(i, j, k)`` to ``(x, y, z)`` in mm with +x towards
the patient's Right, +y Anterior, +z Superior. DICOM stores LPS; the DICOM
reader and writer flip the sign of x and y once, at the edge, so everything
inside medannot is RAS.

2D images have a 2D geometry (a 3x3 affine); 3D images a 3D one (4x4). The
number of spatial dimensions is always explicit and never guessed from a shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medannot.errors import GeometryError

_ATOL = 1e-6


def _as_tuple(values: Sequence[float], name: str, ndim: int) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if len(out) != ndim:
        raise GeometryError(f"{name} must have {ndim} values for a {ndim}D grid, got {len(out)}: {out}")
    if not all(np.isfinite(out)):
        raise GeometryError(f"{name} must be finite, got {out}")
    return out


@dataclass(frozen=True, eq=False)
class Geometry:
    """Where the voxels of a grid lie in the world.

    Args:
        spacing: Distance between voxel centres along each array axis, in mm (> 0).
        origin: World position (RAS, mm) of the centre of voxel (0, 0[, 0]).
        direction: Square matrix whose *columns* are the unit world directions of
            the array axes. Defaults to the identity.
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...] = None  # type: ignore[assignment]  # None at construction: zeros (__post_init__)
    direction: np.ndarray = field(default=None)  # type: ignore[arg-type]  # None at construction: the identity

    def __post_init__(self) -> None:
        ndim = len(self.spacing)
        if ndim not in (2, 3):
            raise GeometryError(f"only 2D and 3D grids are supported, got {ndim} spacing values")
        spacing = _as_tuple(self.spacing, "spacing", ndim)
        if min(spacing) <= 0:
            raise GeometryError(f"spacing must be positive (mm), got {spacing}")
        origin = (0.0,) * ndim if self.origin is None else _as_tuple(self.origin, "origin", ndim)
        direction = np.eye(ndim) if self.direction is None else np.asarray(self.direction, dtype=np.float64)
        if direction.shape != (ndim, ndim):
            raise GeometryError(f"direction must be {ndim}x{ndim}, got shape {direction.shape}")
        norms = np.linalg.norm(direction, axis=0)
        if np.any(norms < 1e-9):
            raise GeometryError(f"direction has a zero column: {direction.tolist()}")
        direction = direction / norms
        if abs(abs(np.linalg.det(direction)) - 1.0) > 1e-3:
            raise GeometryError(f"direction columns are not orthogonal: {direction.tolist()}")
        direction.setflags(write=False)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.spacing)

    @property
    def affine(self) -> np.ndarray:
        """Homogeneous index-to-world matrix, shape (ndim+1, ndim+1), world in RAS mm."""
        n = self.ndim
        aff = np.eye(n + 1)
        aff[:n, :n] = np.asarray(self.direction) * np.asarray(self.spacing)[None, :]
        aff[:n, n] = self.origin
        return aff

    @classmethod
    def from_affine(cls, affine: np.ndarray) -> Geometry:
        """Build a geometry from a homogeneous affine (3x3 for 2D, 4x4 for 3D).

        Raises:
            GeometryError: If the affine is not square homogeneous, is singular, or shears.
        """
        aff = np.asarray(affine, dtype=np.float64)
        if aff.ndim != 2 or aff.shape[0] != aff.shape[1] or aff.shape[0] not in (3, 4):
            raise GeometryError(f"affine must be 3x3 (2D) or 4x4 (3D), got shape {aff.shape}")
        n = aff.shape[0] - 1
        lin = aff[:n, :n]
        spacing = np.linalg.norm(lin, axis=0)
        if np.any(spacing < 1e-9):
            raise GeometryError(f"affine is singular: {aff.tolist()}")
        direction = lin / spacing
        gram = direction.T @ direction
        if not np.allclose(gram, np.eye(n), atol=1e-4):
            raise GeometryError("affine has shear (axes not orthogonal); resample the image to an orthogonal grid first")
        return cls(spacing=tuple(spacing), origin=tuple(aff[:n, n]), direction=direction)

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """Map voxel indices (..., ndim) to world RAS mm (..., ndim)."""
        idx = np.asarray(index, dtype=np.float64)
        aff = self.affine
        n = self.ndim
        return idx @ aff[:n, :n].T + aff[:n, n]

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """Map world RAS mm points (..., ndim) to continuous voxel indices (..., ndim)."""
        pts = np.asarray(points, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        n = self.ndim
        return pts @ inv[:n, :n].T + inv[:n, n]

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm^3 (3D) or area of one pixel in mm^2 (2D)."""
        return float(np.prod(self.spacing))

    def isclose(self, other: Geometry, atol: float = _ATOL) -> bool:
        """True when both grids have the same dimensionality and affines equal within ``atol``."""
        return self.ndim == other.ndim and bool(np.allclose(self.affine, other.affine, atol=atol, rtol=0))

    def axcodes(self) -> tuple[str, ...]:
        """Closest anatomical orientation codes of the array axes, e.g. ``('R','A','S')`` (3D only)."""
        if self.ndim != 3:
            raise GeometryError("orientation codes are defined for 3D grids only")
        import nibabel as nib

        return tuple(nib.aff2axcodes(self.affine))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Geometry) and self.isclose(other)

    def __hash__(self) -> int:
        return hash((self.ndim, tuple(np.round(self.affine, 6).ravel())))

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:g}" for s in self.spacing)
        org = ", ".join(f"{o:g}" for o in self.origin)
        return f"Geometry({self.ndim}D, spacing=({sp}) mm, origin=({org}) mm)"


_AXIS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def axcodes_direction(axcodes: str, rotation_deg: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Direction matrix (columns = world unit vectors of the array axes) for ``axcodes``, then
    rotated about the world x, y, z axes by ``rotation_deg`` (an oblique acquisition).

    Raises:
        GeometryError: If ``axcodes`` is not three letters naming each world axis once.
    """
    codes = str(axcodes).upper()
    if len(codes) != 3 or any(c not in _AXIS for c in codes) or len({_AXIS[c][0] for c in codes}) != 3:
        raise GeometryError(f"axcodes must be 3 letters from R/L, A/P, S/I naming each axis once, got {axcodes!r}")
    d = np.zeros((3, 3))
    for col, c in enumerate(codes):
        row, sign = _AXIS[c]
        d[row, col] = sign
    a = np.deg2rad(np.asarray(rotation_deg, dtype=float))
    c, s = np.cos(a), np.sin(a)
    rx = np.array([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])
    ry = np.array([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
    rz = np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
    return rz @ ry @ rx @ d
