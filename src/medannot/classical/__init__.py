"""Annotators that need no training: thresholds, watershed on the gradient, region growing.

``run_method(name, image, **params)`` returns a label :class:`~medannot.data.Image` (uint8 or
uint16) on the input's grid. Methods (:class:`ClassicalMethod`) and their labels:

- ``otsu``: 1 above the Otsu threshold (:func:`~medannot.classical.threshold.otsu`).
- ``multiotsu``: with ``classes=k``, labels 1..k-1 for the classes above the darkest (background).
- ``threshold``: 1 where ``lower <= value <= upper`` (e.g. HU).
- ``watershed``: objects flooded from markers on the gradient magnitude; one label per object
  (1..n) or all 1 with ``instances_out=False`` (:func:`~medannot.classical.edges.watershed`).
- ``region-growing``: 1 for the region grown from ``seed`` (:func:`~medannot.classical.region_growing.region_grow`).

Edge maps (2D Canny, 3D gradient magnitude) are in :func:`~medannot.classical.edges.edges`.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import Any

from medannot.classical.edges import edges, gradient_magnitude, watershed
from medannot.classical.region_growing import SeedSpace, region_grow
from medannot.classical.threshold import fixed_threshold, multiotsu, otsu
from medannot.data.image import Image
from medannot.errors import ConfigError

__all__ = [
    "ClassicalMethod",
    "SeedSpace",
    "edges",
    "fixed_threshold",
    "gradient_magnitude",
    "describe_method",
    "list_methods",
    "multiotsu",
    "otsu",
    "region_grow",
    "run_method",
    "watershed",
]


class ClassicalMethod(enum.StrEnum):
    """Names of the classical annotators."""

    OTSU = "otsu"
    MULTIOTSU = "multiotsu"
    THRESHOLD = "threshold"
    WATERSHED = "watershed"
    REGION_GROWING = "region-growing"

    @classmethod
    def parse(cls, value: str) -> "ClassicalMethod":
        """Convert a string once; a typo lists the valid names."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"unknown classical method {value!r}; expected one of: {', '.join(list_methods())}") from None


_METHODS: dict[ClassicalMethod, Callable[..., Image]] = {
    ClassicalMethod.OTSU: otsu,
    ClassicalMethod.MULTIOTSU: multiotsu,
    ClassicalMethod.THRESHOLD: fixed_threshold,
    ClassicalMethod.WATERSHED: watershed,
    ClassicalMethod.REGION_GROWING: region_grow,
}


def list_methods() -> list[str]:
    """Names of the classical methods."""
    return [m.value for m in ClassicalMethod]


def describe_method(name: str) -> str:
    """First line of the method's docstring (what it does and which labels it writes)."""
    doc = _METHODS[ClassicalMethod.parse(name)].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def run_method(name: str, image: Image, **params: Any) -> Image:
    """Run a classical method by name.

    Args:
        name: One of :func:`list_methods`.
        image: Single-channel intensity image (2D or 3D).
        **params: The method's parameters (see its function).

    Returns:
        Label image on the same grid (uint8 or uint16), ``kind=label``.

    Raises:
        ConfigError: On an unknown method or parameter (the message lists the accepted ones).
        InputError: On an unusable image (e.g. several channels).
    """
    method = ClassicalMethod.parse(name)
    fn = _METHODS[method]
    try:
        inspect.signature(fn).bind(image, **params)
    except TypeError as exc:
        accepted = [p for p in inspect.signature(fn).parameters if p != "image"]
        raise ConfigError(f"classical method {method.value!r}: bad params {sorted(params)} ({exc}); accepted: {accepted}") from None
    out = fn(image, **params)
    out.meta.setdefault("algorithm", f"medannot.classical.{method.value}")
    return out
