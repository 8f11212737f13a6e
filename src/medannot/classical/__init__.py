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

Every parameter of every method, with type, default, unit and meaning, is in :mod:`medannot.classical.params`
(``medannot methods NAME`` prints it); :func:`parse_params` reads ``-p key=value`` texts into typed values and
refuses unknown names. Long steps show a status line on a terminal (:class:`~medannot.classical.progress.Progress`).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import Any

from medannot.classical.edges import edges, gradient_magnitude, watershed
from medannot.classical.params import PARAMETERS, Parameter, check_params, describe_parameters, parse_params
from medannot.classical.progress import Progress
from medannot.classical.region_growing import SeedSpace, region_grow
from medannot.classical.threshold import fixed_threshold, multiotsu, otsu
from medannot.data.image import Image
from medannot.errors import ConfigError

__all__ = [
    "ClassicalMethod",
    "Parameter",
    "Progress",
    "SeedSpace",
    "describe_method",
    "describe_parameters",
    "edges",
    "fixed_threshold",
    "gradient_magnitude",
    "list_methods",
    "method_parameters",
    "parse_params",
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
    def parse(cls, value: str) -> ClassicalMethod:
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
    return doc.strip().splitlines()[0].replace("``", "") if doc.strip() else ""


def method_parameters(name: str) -> tuple[Parameter, ...]:
    """Every parameter of a method: name, type, default, unit, meaning (what ``medannot methods NAME`` prints)."""
    return PARAMETERS[ClassicalMethod.parse(name).value]


def run_method(name: str, image: Image, progress: bool = False, **params: Any) -> Image:
    """Run a classical method by name.

    Args:
        name: One of :func:`list_methods`.
        image: Single-channel intensity image (2D or 3D).
        progress: Show the method's steps on a terminal (stderr); nothing is shown elsewhere.
        **params: The method's parameters (:func:`method_parameters`; ``-p`` texts go through :func:`parse_params`).

    Returns:
        Label image on the same grid (uint8 or uint16), ``kind=label``.

    Raises:
        ConfigError: On an unknown method or parameter (the message lists the accepted ones).
        InputError: On an unusable image (e.g. several channels).
    """
    method = ClassicalMethod.parse(name)
    fn = _METHODS[method]
    check_params(method.value, params)
    try:
        inspect.signature(fn).bind(image, **params)
    except TypeError as exc:  # the table of parameters and the function disagree: a bug, said plainly
        raise ConfigError(f"classical method {method.value!r}: {exc}") from None
    with Progress(method.value, show=progress) as shown:
        out = fn(image, progress=shown, **params)
    out.meta.setdefault("algorithm", f"medannot.classical.{method.value}")
    return out
