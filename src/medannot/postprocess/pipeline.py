"""Post-processing pipeline from a spec, as stored in a bundle's ``postprocessing`` entry.

A spec maps label values (as strings, ``"1"``) or ``"*"`` (every non-zero label present) to an
ordered list of steps ``{"name": ..., "params": {...}}``. For each label the ``"*"`` steps run
first, then that label's own steps; labels are processed in ascending order.

A key may also name a group of labels joined by ``+`` (``"1+2"``): its steps see the union of
those labels as one foreground (MONAI's ``KeepLargestConnectedComponent(independent=False)``),
and voxels they drop become 0 whatever their label. Only steps that remove voxels
(``keep_largest_component``, ``remove_small_objects``, ``open``) are allowed on groups, and
groups run before the per-label steps.

Step names (:class:`PostprocessStep`) and params:

- ``keep_largest_component``: ``connectivity`` (optional)
- ``remove_small_objects``: ``min_size_mm`` (mm^3 in 3D, mm^2 in 2D), ``connectivity`` (optional)
- ``fill_holes``: none
- ``open`` / ``close``: ``radius_mm``
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from medannot.errors import ConfigError
from medannot.postprocess.components import _check_array, _spacing, keep_largest_component, remove_small_objects
from medannot.postprocess.morphology import _box, binary_close, binary_open, fill_holes, structuring_element

__all__ = ["PostprocessStep", "apply_postprocessing", "validate_postprocessing"]


class PostprocessStep(enum.StrEnum):
    """Names of post-processing steps."""

    KEEP_LARGEST_COMPONENT = "keep_largest_component"
    REMOVE_SMALL_OBJECTS = "remove_small_objects"
    FILL_HOLES = "fill_holes"
    OPEN = "open"
    CLOSE = "close"


def _keep_largest(labels: np.ndarray, label: int, spacing: Sequence[float], connectivity: int | None = None) -> np.ndarray:
    return keep_largest_component(labels, label, connectivity)


def _remove_small(
    labels: np.ndarray, label: int, spacing: Sequence[float], min_size_mm: float, connectivity: int | None = None
) -> np.ndarray:
    return remove_small_objects(labels, min_size_mm, spacing, label=label, connectivity=connectivity)


def _fill(labels: np.ndarray, label: int, spacing: Sequence[float]) -> np.ndarray:
    return fill_holes(labels, label)


def _open(labels: np.ndarray, label: int, spacing: Sequence[float], radius_mm: float) -> np.ndarray:
    sel = labels == label
    kept = binary_open(sel, radius_mm, spacing)
    out = labels.copy()
    out[sel & ~kept] = 0
    return out


def _close(labels: np.ndarray, label: int, spacing: Sequence[float], radius_mm: float) -> np.ndarray:
    sel = labels == label
    grown = binary_close(sel, radius_mm, spacing)
    out = labels.copy()
    out[grown & ~sel & (labels == 0)] = label
    return out


_STEPS: dict[PostprocessStep, Callable[..., np.ndarray]] = {
    PostprocessStep.KEEP_LARGEST_COMPONENT: _keep_largest,
    PostprocessStep.REMOVE_SMALL_OBJECTS: _remove_small,
    PostprocessStep.FILL_HOLES: _fill,
    PostprocessStep.OPEN: _open,
    PostprocessStep.CLOSE: _close,
}


def _parse_step(key: str, step: Any) -> tuple[Callable[..., np.ndarray], dict[str, Any]]:
    if not isinstance(step, Mapping) or "name" not in step:
        raise ConfigError(f"postprocessing[{key!r}]: each step must be {{'name': ..., 'params': {{...}}}}, got {step!r}")
    try:
        name = PostprocessStep(step["name"])
    except ValueError:
        valid = ", ".join(s.value for s in PostprocessStep)
        raise ConfigError(f"postprocessing[{key!r}]: unknown step {step['name']!r}; expected one of: {valid}") from None
    params = dict(step.get("params") or {})
    fn = _STEPS[name]
    try:
        inspect.signature(fn).bind(None, 0, None, **params)
    except TypeError as exc:
        accepted = [p for p in inspect.signature(fn).parameters if p not in {"labels", "label", "spacing"}]
        raise ConfigError(
            f"postprocessing[{key!r}] step {name.value!r}: bad params {params} ({exc}); accepted: {accepted or 'none'}"
        ) from None
    for k, v in params.items():
        if k in {"min_size_mm", "radius_mm"} and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise ConfigError(f"postprocessing[{key!r}] step {name.value!r}: {k} must be a number >= 0 (mm), got {v!r}")
    return fn, params


def validate_postprocessing(spec: Mapping[str, Any] | None) -> dict[str, list[tuple[Callable[..., np.ndarray], dict[str, Any]]]]:
    """Check a post-processing spec; returns the parsed steps by key.

    Raises:
        ConfigError: On a key that is neither an integer string nor ``"*"``, an unknown step or bad params.
    """
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"postprocessing must be a dict of label value -> list of steps, got {type(spec).__name__}")
    parsed: dict[str, list[tuple[Callable[..., np.ndarray], dict[str, Any]]]] = {}
    for key, steps in spec.items():
        key = str(key)
        if key != "*" and _group_values(key) is None:
            raise ConfigError(f"postprocessing keys must be label values like '1', groups like '1+2', or '*', got {key!r}")
        if isinstance(steps, (str, Mapping)) or not isinstance(steps, Sequence):
            raise ConfigError(f"postprocessing[{key!r}] must be a list of steps, got {steps!r}")
        parsed[key] = [_parse_step(key, s) for s in steps]
        if "+" in key:
            adding = [s["name"] for s in steps if s["name"] not in _GROUP_STEPS]
            if adding:
                raise ConfigError(
                    f"postprocessing[{key!r}]: steps {adding} add voxels and need one label; a group of labels "
                    f"accepts only {sorted(s.value for s in _GROUP_STEPS)}"
                )
    return parsed


_GROUP_STEPS = {PostprocessStep.KEEP_LARGEST_COMPONENT, PostprocessStep.REMOVE_SMALL_OBJECTS, PostprocessStep.OPEN}


def _group_values(key: str) -> tuple[int, ...] | None:
    """Label values of a key ``"3"`` or ``"1+2"``; None if the key is not of that form."""
    parts = key.split("+")
    if not all(p.isdigit() and int(p) > 0 for p in parts) or len(set(parts)) != len(parts):
        return None
    return tuple(int(p) for p in parts)


def apply_postprocessing(labels: np.ndarray, spacing: Sequence[float], spec: Mapping[str, Any] | None) -> np.ndarray:
    """Apply a post-processing spec to a label map.

    Args:
        labels: 2D or 3D label array (no channel axis).
        spacing: Voxel spacing in mm per axis.
        spec: ``{"1": [steps], "*": [steps]}`` (see module docstring); None or {} = unchanged.

    Returns:
        A new array with the input's dtype. Empty input (all 0) gives empty output.

    Raises:
        ConfigError: If the spec is invalid (checked before any work).
    """
    parsed = validate_postprocessing(spec)
    full = _check_array(labels, "apply_postprocessing").copy()
    if not parsed:
        return full
    box = _work_box(full, spacing, parsed)
    if box is None:
        return full
    full[box] = _apply_parsed(full[box], spacing, parsed)
    return full


def _work_box(labels: np.ndarray, spacing: Sequence[float], parsed: Mapping[str, list[tuple[Callable[..., np.ndarray], dict[str, Any]]]]
              ) -> tuple[slice, ...] | None:
    """Bounding box of the non-zero voxels, one voxel wider (hole filling sees the outside) and twice the element of
    the widest closing wider (closing adds voxels up to its radius); None when every voxel is 0.

    Every step gives inside this box what it gives on the whole image: components and holes do not cross its
    background border, and an erosion near its edge still meets background within its radius.
    """
    pad = np.ones(labels.ndim, dtype=int)
    for steps in parsed.values():
        for fn, params in steps:
            if fn is _close:
                half = np.array(structuring_element(float(params["radius_mm"]), _spacing(spacing, labels.ndim)).shape) // 2
                pad = np.maximum(pad, 2 * half + 1)
    return _box(labels != 0, [int(p) for p in pad])


def _apply_parsed(labels: np.ndarray, spacing: Sequence[float],
                  parsed: Mapping[str, list[tuple[Callable[..., np.ndarray], dict[str, Any]]]]) -> np.ndarray:
    out = labels.copy()
    for key in (k for k in parsed if "+" in k):
        sel = np.isin(out, _group_values(key) or ())
        fg = sel.astype(np.uint8)
        for fn, params in parsed[key]:
            if not fg.any():
                break
            fg = fn(fg, 1, spacing, **params)
        out[sel & (fg == 0)] = 0
    present = {int(v) for v in np.unique(out) if v != 0}
    keys = sorted(present | {int(k) for k in parsed if k != "*" and "+" not in k})
    for value in keys:
        steps = (parsed.get("*", []) if value in present else []) + parsed.get(str(value), [])
        for fn, params in steps:
            if not np.any(out == value):
                break
            out = fn(out, value, spacing, **params)
    return out
