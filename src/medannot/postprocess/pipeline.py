"""Post-processing pipeline from a spec, as stored in a bundle's ``postprocessing`` entry.

A spec maps label values (as strings, ``"1"``) or ``"*"`` (every non-zero label present) to an
ordered list of steps ``{"name": ..., "params": {...}}``. For each label the ``"*"`` steps run
first, then that label's own steps; labels are processed in ascending order.

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
from medannot.postprocess.components import _check_array, keep_largest_component, remove_small_objects
from medannot.postprocess.morphology import binary_close, binary_open, fill_holes

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
        if key != "*" and not (key.isdigit() and int(key) > 0):
            raise ConfigError(f"postprocessing keys must be label values like '1' or '*', got {key!r}")
        if isinstance(steps, (str, Mapping)) or not isinstance(steps, Sequence):
            raise ConfigError(f"postprocessing[{key!r}] must be a list of steps, got {steps!r}")
        parsed[key] = [_parse_step(key, s) for s in steps]
    return parsed


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
    out = _check_array(labels, "apply_postprocessing").copy()
    if not parsed:
        return out
    present = {int(v) for v in np.unique(out) if v != 0}
    keys = sorted(present | {int(k) for k in parsed if k != "*"})
    for value in keys:
        steps = (parsed.get("*", []) if value in present else []) + parsed.get(str(value), [])
        for fn, params in steps:
            if not np.any(out == value):
                break
            out = fn(out, value, spacing, **params)
    return out
