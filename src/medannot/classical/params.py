"""Every parameter of every classical method, with type, default, unit and meaning, and ``-p`` text parsing.

``medannot methods NAME`` prints :func:`describe_parameters`; ``annotate --method NAME -p key=value`` goes through
:func:`parse_params`, which reads values as people write them and refuses what would be ignored:

- numbers: ``sigma_mm=1.5``, ``classes=4``; ``none`` (any case) for an optional value;
- true/false: ``true``/``false``, ``True``/``False``, ``yes``/``no``, ``1``/``0``, ``on``/``off``;
- points: ``seed=25,69,9``, ``seed="25 69 9"``, ``seed=[25,69,9]`` or ``(25, 69, 9)``;
- choices: ``seed_space=world`` (any case);
- an unknown name, a value given twice, or a parameter the command line cannot set is an error that names the
  valid parameters.

Points and seeds (:data:`POINT_AXES`): voxel indices in medannot's array order, or world millimetres (RAS) with
``seed_space=world``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from medannot.errors import ConfigError

__all__ = ["POINT_AXES", "REQUIRED", "Parameter", "ParamType", "describe_parameters", "parse_params", "parse_value"]

#: How a point (a seed) is given, in words: printed by ``medannot methods`` under every point parameter.
POINT_AXES = (
    "voxel indices in medannot's array order, counted from 0: a 2D picture (row, column) from its top-left pixel; "
    "NIfTI/NRRD (i, j, k) as stored in the file (the voxel coordinates ITK-SNAP and FSLeyes show); a DICOM series "
    "(column, row, slice), slices in order along the slice normal (as dcm2niix writes them). With seed_space=world: "
    "millimetres in RAS (x grows towards the patient's right, y anterior, z superior; the coordinates 3D Slicer shows), "
    "and in 2D mm from the top-left pixel along (row, column)."
)


class _Required:
    def __repr__(self) -> str:
        return "required"


#: The default of a parameter that must be given.
REQUIRED: Any = _Required()


class ParamType(enum.StrEnum):
    """What a parameter's value is."""

    FLOAT = "number"
    INT = "integer"
    BOOL = "true/false"
    POINT = "point"
    CHOICE = "choice"
    ARRAY = "array"  #: an image-sized array: set from Python, not from the command line


@dataclass(frozen=True)
class Parameter:
    """One parameter of a classical method.

    Attributes:
        name: Keyword of the method's function (and of ``-p NAME=VALUE``).
        type: What its value is.
        default: Its default (:data:`REQUIRED` when it must be given; None: "not used").
        unit: Unit of the value ("" when it has none).
        meaning: What it does, in one or two sentences.
        choices: The valid values of a choice.
        optional: True when ``none`` is a valid value.
    """

    name: str
    type: ParamType
    default: Any
    unit: str
    meaning: str
    choices: tuple[str, ...] = ()
    optional: bool = False

    @property
    def settable(self) -> bool:
        """True when ``-p`` can set it (not an image-sized array)."""
        return self.type is not ParamType.ARRAY

    def default_text(self) -> str:
        """The default as printed: ``required``, ``none``, ``true``, ``1.5``."""
        if self.default is REQUIRED:
            return "required"
        if self.default is None:
            return "none"
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return str(self.default)


_SIGMA = Parameter("sigma_mm", ParamType.FLOAT, 0.0, "mm", "Gaussian smoothing before thresholding (standard deviation); 0 = none.")
_NBINS = Parameter("nbins", ParamType.INT, 256, "", "Histogram bins used to find the threshold(s).")

#: Parameters of each method, in the order of its function's signature (``image`` and ``progress`` left out).
PARAMETERS: dict[str, tuple[Parameter, ...]] = {
    "otsu": (_SIGMA, _NBINS),
    "multiotsu": (
        Parameter("classes", ParamType.INT, 3, "", "Number of intensity classes k (2..10); labels 1..k-1 are the brighter classes."),
        _SIGMA,
        _NBINS,
    ),
    "threshold": (
        Parameter("lower", ParamType.FLOAT, None, "image units (e.g. HU)", "Inclusive lower bound; none = no lower bound.", optional=True),
        Parameter("upper", ParamType.FLOAT, None, "image units (e.g. HU)", "Inclusive upper bound; none = no upper bound. "
                  "Give lower, upper or both (CT bone: lower=300 upper=3000).", optional=True),
        _SIGMA,
    ),
    "watershed": (
        Parameter("markers", ParamType.ARRAY, None, "label ids", "Marker array on the image grid (1 = background, 2.. = objects); "
                  "from Python only. None: automatic markers from the Otsu mask.", optional=True),
        Parameter("sigma_mm", ParamType.FLOAT, 1.0, "mm", "Gaussian smoothing before the gradient magnitude (standard deviation)."),
        Parameter("instances_out", ParamType.BOOL, True, "", "true: one label per object (1..n); false: every object is label 1."),
        Parameter("compactness", ParamType.FLOAT, 0.0, "", "Compact watershed weight (scikit-image); 0 = classic watershed."),
        Parameter("marker_distance_mm", ParamType.FLOAT, 2.0, "mm", "Depth of the automatic markers: object cores deeper than this "
                  "inside the Otsu mask, background farther than this outside it."),
    ),
    "region-growing": (
        Parameter("seed", ParamType.POINT, REQUIRED, "voxel index, or mm with seed_space=world",
                  "Where the region starts, one coordinate per axis, e.g. seed=25,69,9."),
        Parameter("seed_space", ParamType.CHOICE, "voxel", "", "How seed is given: voxel (array indices) or world (RAS mm).",
                  choices=("voxel", "world")),
        Parameter("tolerance", ParamType.FLOAT, None, "image units (e.g. HU)", "Grow over voxels within this much of the seed's value. "
                  "Give exactly one of tolerance or k_std.", optional=True),
        Parameter("k_std", ParamType.FLOAT, None, "standard deviations", "Grow over voxels within k standard deviations of the "
                  "region's mean, re-estimated as it grows (ITK's ConfidenceConnected).", optional=True),
        Parameter("iterations", ParamType.INT, 4, "", "Re-estimations of the mean and standard deviation (k_std only)."),
        Parameter("initial_radius", ParamType.INT, 1, "voxels", "Half-size of the cube around the seed for the first statistics (k_std)."),
        Parameter("connectivity", ParamType.INT, None, "neighbours", "4 or 8 (2D), 6, 18 or 26 (3D); none = face neighbours (4 / 6).",
                  optional=True),
        Parameter("max_size_mm", ParamType.FLOAT, None, "mm³ (mm² in 2D)", "Size cap: only the voxels geodesically nearest the seed "
                  "are kept; none = no cap.", optional=True),
        Parameter("sigma_mm", ParamType.FLOAT, 0.0, "mm", "Gaussian smoothing before growing (standard deviation); the criteria "
                  "then apply to the smoothed values; 0 = none."),
    ),
}

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}


def _method_params(method: str) -> tuple[Parameter, ...]:
    try:
        return PARAMETERS[str(method)]
    except KeyError:
        raise ConfigError(f"unknown classical method {method!r}; expected one of: {', '.join(PARAMETERS)}") from None


def _number(text: str, what: str, integer: bool) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{what} expects {'an integer' if integer else 'a number'}, got {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{what} expects a finite number, got {text!r}")
    if integer:
        if value != int(value):
            raise ConfigError(f"{what} expects an integer, got {text!r}")
        return int(value)
    return value


def parse_value(param: Parameter, text: str, method: str = "") -> Any:
    """The value of ``param`` written as ``text`` on the command line (see the module docstring).

    Raises:
        ConfigError: A value that is not of the parameter's type, naming ``-p NAME`` and what it expects.
    """
    what = f"-p {param.name}" + (f" (method {method})" if method else "")
    raw = str(text).strip()
    if param.optional and raw.lower() in _NONE:
        return None
    if param.type is ParamType.BOOL:
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{what} expects true or false, got {text!r}")
    if param.type in (ParamType.FLOAT, ParamType.INT):
        return _number(raw, what, param.type is ParamType.INT)
    if param.type is ParamType.CHOICE:
        low = raw.lower()
        if low not in param.choices:
            raise ConfigError(f"{what} expects one of: {', '.join(param.choices)}; got {text!r}")
        return low
    if param.type is ParamType.POINT:
        parts = [p for p in re.split(r"[\s,;]+", raw.strip("[]() ")) if p]
        if not parts:
            raise ConfigError(f"{what} expects a point such as 25,69,9 (one number per axis), got {text!r}")
        return [_number(p, what, False) for p in parts]
    raise ConfigError(f"{what} is an image-sized array and is set from Python, not from the command line")


def parse_params(method: str, pairs: Iterable[str]) -> dict[str, Any]:
    """``-p key=value`` texts of ``method`` -> typed keyword arguments of its function.

    Args:
        method: A classical method name (``medannot methods`` lists them).
        pairs: ``key=value`` texts as typed.

    Returns:
        ``{name: value}`` with values of each parameter's type (numbers, booleans, lists of floats, ...).

    Raises:
        ConfigError: No ``=``, an unknown name (the valid ones are listed), a name given twice, or a value of
            the wrong type.
    """
    params = {p.name: p for p in _method_params(method)}
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"-p expects NAME=VALUE, got {pair!r}; see `medannot methods {method}`")
        key, raw = (s.strip() for s in pair.split("=", 1))
        param = params.get(key)
        if param is None:
            valid = ", ".join(p.name for p in params.values() if p.settable)
            raise ConfigError(f"method {method} has no parameter {key!r}; valid: {valid} (see `medannot methods {method}`)")
        if key in out:
            raise ConfigError(f"-p {key} is given twice; give it once")
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1]
        out[key] = parse_value(param, raw, method)
    return out


def check_params(method: str, params: dict[str, Any]) -> None:
    """Refuse keyword arguments ``method`` does not have (a typo would otherwise be silently ignored).

    Raises:
        ConfigError: Naming the unknown keywords and the valid ones.
    """
    known = {p.name for p in _method_params(method)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"method {method} has no parameter {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(known))} "
                          f"(see `medannot methods {method}`)")
    missing = [p.name for p in _method_params(method) if p.default is REQUIRED and p.name not in params]
    if missing:
        raise ConfigError(f"method {method} needs {', '.join(missing)}: give -p {missing[0]}=... (see `medannot methods {method}`)")


def _wrap(text: str, indent: str, width: int, then: str | None = None) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent if then is None else then) or [indent]


def describe_parameters(method: str, width: int = 80) -> list[str]:
    """Lines that ``medannot methods NAME`` prints: each parameter with type, default, unit and meaning, then an example.

    Args:
        method: A classical method name.
        width: Line width (80: an ordinary terminal).
    """
    params = _method_params(method)
    lines = []
    for p in params:
        kind = f"{p.type.value}: {' | '.join(p.choices)}" if p.choices else p.type.value
        head = f"{p.name}  ({kind}; default {p.default_text()}" + (f"; unit {p.unit})" if p.unit else ")")
        lines += _wrap(head, "  ", width, then="      ")
        lines += _wrap(p.meaning + ("" if p.settable else " Not settable with -p."), "      ", width)
        if p.type is ParamType.POINT:
            lines += _wrap("Axis order: " + POINT_AXES, "      ", width)
    example = f"example: medannot annotate IMAGE --method {method}" + "".join(f" -p {e}" for e in _example(params))
    if len(example) > width:  # one option per line, as a shell continues them
        example = f"example: medannot annotate IMAGE --method {method}" + "".join(f" \\\n           -p {e}" for e in _example(params))
    return [*lines, "", *example.splitlines()]


def _example(params: Sequence[Parameter]) -> list[str]:
    out = []
    for p in params:
        if p.default is REQUIRED:
            out.append(f"{p.name}=25,69,9" if p.type is ParamType.POINT else f"{p.name}=1")
    if any(p.name == "tolerance" for p in params):
        out.append("tolerance=40")
    if any(p.name == "lower" for p in params):
        out.append("lower=300")
    return out
