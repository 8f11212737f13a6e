"""Classical promptable engines: clicks, boxes and scribbles -> the mask of one object, no training.

Each engine implements :class:`~medannot.data.prompts.PromptableEngine` (``name``,
``segment(image, prompts) -> bool mask``) and works on a crop around the prompts that grows while the
mask reaches its sides (:mod:`.roi`), so its cost follows the object, not the volume:

- ``region-growing``: SimpleITK ConfidenceConnected from the positive seeds (:class:`RegionGrowingEngine`).
- ``random-walker``: scikit-image random walker, object vs background seeds (:class:`RandomWalkerEngine`).
- ``growcut``: grow from seeds, FastGrowCut's shortest-path competition (:class:`GrowCutEngine`).

``create_engine(name, **params)`` builds one by name; ``list_engines()`` names them.
"""

from __future__ import annotations

import enum
from typing import Any

from medannot.classical.interactive.base import CropEngine, CropSettings
from medannot.classical.interactive.growcut import GrowCutEngine
from medannot.classical.interactive.random_walker import RandomWalkerEngine
from medannot.classical.interactive.region_growing import RegionGrowingEngine
from medannot.errors import ConfigError

__all__ = [
    "ClassicalEngineName",
    "CropEngine",
    "CropSettings",
    "GrowCutEngine",
    "RandomWalkerEngine",
    "RegionGrowingEngine",
    "create_engine",
    "list_engines",
]


class ClassicalEngineName(enum.StrEnum):
    """Names of the classical promptable engines."""

    REGION_GROWING = "region-growing"
    RANDOM_WALKER = "random-walker"
    GROWCUT = "growcut"

    @classmethod
    def parse(cls, value: str) -> ClassicalEngineName:
        """Convert a string once; a typo lists the valid names."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"unknown classical engine {value!r}; expected one of: {', '.join(list_engines())}") from None


_ENGINES: dict[ClassicalEngineName, type[CropEngine]] = {
    ClassicalEngineName.REGION_GROWING: RegionGrowingEngine,
    ClassicalEngineName.RANDOM_WALKER: RandomWalkerEngine,
    ClassicalEngineName.GROWCUT: GrowCutEngine,
}


def list_engines() -> list[str]:
    """Names of the classical engines."""
    return [e.value for e in ClassicalEngineName]


def create_engine(name: str, **params: Any) -> CropEngine:
    """Build a classical engine by name.

    Args:
        name: One of :func:`list_engines`.
        **params: The engine's fields (e.g. ``multiplier=2.0``; ``crop=CropSettings(...)``).

    Raises:
        ConfigError: Unknown name or parameter (the message lists the accepted ones).
    """
    cls = _ENGINES[ClassicalEngineName.parse(name)]
    try:
        return cls(**params)
    except TypeError:
        accepted = sorted(cls.__dataclass_fields__)
        raise ConfigError(f"classical engine {cls.name!r}: bad params {sorted(params)}; accepted: {accepted}") from None
