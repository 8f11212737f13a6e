"""Splitting a binary mask into instances: connected components or distance-transform watershed.

An instance spec (bundle.json ``instances``, keyed by label value) is either an integer
connectivity (1 = faces only ... ndim = all neighbours) for plain connected components, or a
dict ``{"method": "watershed", "connectivity": 1, "min_distance": 3, "min_size": 0}`` that
separates touching blobs (e.g. nuclei) by a watershed on the Euclidean distance transform
seeded at its local maxima (``min_distance`` in voxels between seeds).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from medannot.errors import ConfigError

__all__ = ["InstanceMethod", "split_instances"]


class InstanceMethod(enum.StrEnum):
    """How touching objects are separated."""

    COMPONENTS = "components"
    WATERSHED = "watershed"


def _parse(spec: Any, ndim: int) -> tuple[InstanceMethod, int, dict[str, Any]]:
    if isinstance(spec, bool) or spec is None:
        return InstanceMethod.COMPONENTS, 1, {}
    if isinstance(spec, int):
        if not 1 <= spec <= ndim:
            raise ConfigError(f"instance connectivity must be 1..{ndim}, got {spec}")
        return InstanceMethod.COMPONENTS, spec, {}
    if isinstance(spec, dict):
        params = dict(spec)
        try:
            method = InstanceMethod(params.pop("method", "components"))
        except ValueError:
            raise ConfigError(f"unknown instance method {spec.get('method')!r}; expected one of: {', '.join(m.value for m in InstanceMethod)}") from None
        conn = int(params.pop("connectivity", 1))
        if not 1 <= conn <= ndim:
            raise ConfigError(f"instance connectivity must be 1..{ndim}, got {conn}")
        return method, conn, params
    raise ConfigError(f"instance spec must be a connectivity (int) or a dict with 'method', got {spec!r}")


def split_instances(mask: np.ndarray, spec: Any = 1, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Label the objects of a binary mask, 1..N (0 = background).

    Args:
        mask: Binary mask (any integer/bool dtype; nonzero = object). An empty mask gives all zeros.
        spec: Connectivity (int) or ``{"method": "watershed", "connectivity", "min_distance" (voxels),
            "min_size" (voxels; smaller instances are dropped)}``.
        spacing: Voxel spacing in mm, used for the distance transform (default isotropic 1).

    Returns:
        Instance label array (int32), same shape as ``mask``.
    """
    m = np.asarray(mask) != 0
    method, conn, params = _parse(spec, m.ndim)
    structure = ndi.generate_binary_structure(m.ndim, conn)
    if not m.any():
        return np.zeros(m.shape, dtype=np.int32)
    if method is InstanceMethod.COMPONENTS:
        out, _ = ndi.label(m, structure=structure)
    else:
        from skimage.feature import peak_local_max
        from skimage.segmentation import watershed

        unknown = set(params) - {"min_distance", "min_size"}
        if unknown:
            raise ConfigError(f"unknown watershed parameters {sorted(unknown)}; allowed: min_distance, min_size, connectivity")
        dist = ndi.distance_transform_edt(m, sampling=spacing)
        comps, _ = ndi.label(m, structure=structure)
        peaks = peak_local_max(dist, min_distance=int(params.get("min_distance", 3)), labels=comps, exclude_border=False)
        markers = np.zeros(m.shape, dtype=np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
        # Components without a peak (tiny ones) keep a seed of their own.
        seeded = np.unique(comps[markers > 0])
        missing = np.setdiff1d(np.arange(1, comps.max() + 1), seeded)
        if missing.size:
            extra = np.isin(comps, missing)
            lab_extra, _ = ndi.label(extra, structure=structure)
            markers[extra] = lab_extra[extra] + markers.max()
        out = watershed(-dist, markers, mask=m, connectivity=conn)
    min_size = int(params.get("min_size", 0))
    if min_size > 0:
        sizes = np.bincount(out.ravel())
        small = np.nonzero(sizes < min_size)[0]
        small = small[small > 0]
        if small.size:
            out[np.isin(out, small)] = 0
    # Relabel consecutively.
    vals = np.unique(out)
    vals = vals[vals > 0]
    lut = np.zeros(int(out.max()) + 1, dtype=np.int32)
    lut[vals] = np.arange(1, len(vals) + 1, dtype=np.int32)
    return lut[out]
