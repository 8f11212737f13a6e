"""Registry of named transforms and :class:`Compose`, the serialisable pipeline built from specs.

A transform spec is ``{"name": str, "params": {...}}``. Every registered transform is a
plain function ``fn(image: Image, **params) -> Image``; random transforms (names prefixed
``rand_``) also take ``rng: numpy.random.Generator``. Parameters are validated against the
function's type hints (pydantic) when the pipeline is built, so a typo in a configuration
file fails before any image is read.
"""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pydantic

from medannot.data.image import Image
from medannot.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


class TransformKind(enum.StrEnum):
    """What a transform changes: the grid (spatial, applied to labels too) or the intensities."""

    SPATIAL = "spatial"
    INTENSITY = "intensity"


@dataclass(frozen=True)
class _Entry:
    name: str
    fn: Callable[..., Any]  # Image -> Image (fixed steps), or (image, label) -> (image, label) (random steps)
    kind: TransformKind
    random: bool
    model: type[pydantic.BaseModel]


_REGISTRY: dict[str, _Entry] = {}
_SKIP_PARAMS = {"image", "rng", "label"}


def _params_model(name: str, fn: Callable[..., Any]) -> type[pydantic.BaseModel]:
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    for pname, par in inspect.signature(fn).parameters.items():
        if pname in _SKIP_PARAMS or par.kind in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
            continue
        hint = hints.get(pname, Any)
        default = ... if par.default is inspect.Parameter.empty else par.default
        fields[pname] = (hint, default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return pydantic.create_model(f"{name}_params", __config__=config, **fields)


def register_transform(name: str, kind: TransformKind | str, random: bool = False) -> Callable[[F], F]:
    """Decorator registering ``fn(image, **params) -> Image`` under ``name`` (random steps:
    ``fn(image, label=None, *, rng, **params) -> (image, label)``).

    Args:
        name: Registry name used in specs (``rand_`` prefix for random transforms).
        kind: ``"spatial"`` (changes the grid; applied to label maps too) or ``"intensity"``.
        random: True when the function takes ``rng`` and draws its own parameters.
    """
    tkind = TransformKind(kind)

    def deco(fn: F) -> F:
        if name in _REGISTRY:
            raise ConfigError(f"transform {name!r} is registered twice")
        _REGISTRY[name] = _Entry(name, fn, tkind, random, _params_model(name, fn))
        return fn

    return deco


def list_transforms() -> list[str]:
    """Sorted names of all registered transforms."""
    return sorted(_REGISTRY)


def get_transform(name: str) -> Callable[..., Image]:
    """The function registered under ``name``.

    Raises:
        ConfigError: If ``name`` is unknown (the message lists the valid names).
    """
    return _lookup(name).fn


def _lookup(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        valid = ", ".join(list_transforms())
        raise ConfigError(f"unknown transform {name!r}; expected one of: {valid}") from None


def _validate(entry: _Entry, params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        model = entry.model.model_validate(dict(params))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(params)'}: {err['msg']}" for err in exc.errors()
        )
        accepted = ", ".join(entry.model.model_fields) or "none"
        raise ConfigError(
            f"transform {entry.name!r} has invalid params ({problems}); accepted params: {accepted}"
        ) from None
    # Keep only what the user gave (defaults stay the function's own); use validated values.
    return {k: getattr(model, k) for k in params}


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


class Compose:
    """A pipeline of registered transforms, applied in order; callable ``Image -> Image``.

    Args:
        specs: Transform specs ``{"name": str, "params": {...}}`` (``params`` optional).

    Attributes:
        specs: The specs as JSON-serialisable dicts (store them in a bundle to rebuild the pipeline).

    Raises:
        ConfigError: On an unknown name (valid names listed) or invalid params (transform named).
    """

    def __init__(self, specs: Sequence[Mapping[str, Any]] = ()) -> None:
        if isinstance(specs, Mapping) or isinstance(specs, str):
            raise ConfigError(f"transform specs must be a list of {{'name', 'params'}} dicts, got {type(specs).__name__}")
        steps: list[tuple[_Entry, dict[str, Any]]] = []
        clean: list[dict[str, Any]] = []
        for i, spec in enumerate(specs):
            if not isinstance(spec, Mapping) or "name" not in spec:
                raise ConfigError(f"transform spec #{i} must be a dict with 'name' and 'params', got {spec!r}")
            extra = set(spec) - {"name", "params"}
            if extra:
                raise ConfigError(f"transform spec #{i} ({spec['name']!r}) has unknown keys {sorted(extra)}; allowed: name, params")
            entry = _lookup(spec["name"])
            raw = spec.get("params") or {}
            if not isinstance(raw, Mapping):
                raise ConfigError(f"transform {entry.name!r}: params must be a dict, got {type(raw).__name__}")
            steps.append((entry, _validate(entry, raw)))
            clean.append({"name": entry.name, "params": _to_jsonable(dict(raw))})
        self._steps = steps
        self.specs: list[dict[str, Any]] = clean

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(e.name for e, _ in self._steps) + "])"

    @property
    def is_random(self) -> bool:
        """True when any step draws random parameters."""
        return any(e.random for e, _ in self._steps)

    def __call__(self, image: Image, rng: np.random.Generator | None = None) -> Image:
        """Apply every step to ``image``.

        Args:
            image: Input image.
            rng: Random generator for ``rand_`` steps (a fresh unseeded one when omitted).
        """
        return self.apply_pair(image, None, rng)[0]

    def apply_pair(
        self, image: Image, label: Image | None = None, rng: np.random.Generator | None = None
    ) -> tuple[Image, Image | None]:
        """Apply the pipeline to an image and, for spatial steps only, to its label map too.

        Spatial steps give the label the same change (nearest-neighbour for labels); intensity
        steps touch only the image. Random spatial steps draw their parameters once for both.

        Args:
            image: Intensity image.
            label: Label map on the same grid, or None.
            rng: Random generator for ``rand_`` steps.
        """
        if rng is None and self.is_random:
            rng = np.random.default_rng()
        for entry, params in self._steps:
            if entry.random:
                image, label = entry.fn(image, label=label, rng=rng, **params)
            elif entry.kind is TransformKind.SPATIAL:
                image = entry.fn(image, **params)
                if label is not None:
                    label = _spatial_on_label(entry, image, label, params)
            else:
                image = entry.fn(image, **params)
        return image, label


def _spatial_on_label(entry: _Entry, image: Image, label: Image, params: dict[str, Any]) -> Image:
    """Bring the label onto the grid the image now has (exact for permutations and crops)."""
    from medannot.transforms.spatial import resample_to_grid

    if entry.name == "crop_to_foreground":
        # The crop box was found on the image: take the label on the image's new grid.
        return resample_to_grid(label, image.geometry, image.spatial_shape, order=0)
    fixed = {k: v for k, v in params.items() if k != "order"}
    return entry.fn(label, **fixed)


def build_transforms(specs: Sequence[Mapping[str, Any]]) -> Compose:
    """Build a :class:`Compose` from transform specs (see :class:`Compose`)."""
    return Compose(specs)
