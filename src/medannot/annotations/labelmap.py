"""Label maps: value -> name and display colour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from medannot.errors import ConfigError

# A qualitative palette that stays readable on grey images (Glasbey-like, high saturation).
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 64, 64), (64, 160, 255), (255, 200, 0), (0, 210, 110), (200, 80, 255),
    (255, 128, 0), (0, 220, 220), (255, 90, 180), (150, 210, 40), (140, 110, 255),
)


def default_color(value: int) -> tuple[int, int, int]:
    """Display colour of a label value when the label map gives none (background is black)."""
    return (0, 0, 0) if value == 0 else _PALETTE[(value - 1) % len(_PALETTE)]


@dataclass(frozen=True)
class LabelInfo:
    """Name and RGB colour (0-255) of one label value."""

    value: int
    name: str
    color: tuple[int, int, int]


class LabelMap(dict[int, LabelInfo]):
    """Mapping from label value to :class:`LabelInfo`; value 0 is background."""

    @classmethod
    def parse(cls, labels: Mapping[Any, Any] | None, values: list[int] | None = None) -> "LabelMap":
        """Build from a bundle's ``labels`` dict or from a plain ``{value: name}`` dict.

        Args:
            labels: ``{"1": {"name": "grey matter", "color": [r, g, b]}}`` or ``{1: "grey matter"}``;
                ``None`` names every value of ``values`` as ``label_<v>``.
            values: Label values present in the data, used when ``labels`` is None.

        Raises:
            ConfigError: If a key is not an integer or a colour is not three 0-255 values.
        """
        out = cls()
        if labels is None:
            for v in sorted(set(values or []) | {0}):
                out[v] = LabelInfo(v, "background" if v == 0 else f"label_{v}", default_color(v))
            return out
        for key, spec in labels.items():
            try:
                value = int(key)
            except (TypeError, ValueError):
                raise ConfigError(f"label map key {key!r} is not an integer label value") from None
            if isinstance(spec, str):
                name, color = spec, None
            else:
                name, color = str(spec.get("name", f"label_{value}")), spec.get("color")
            if color is None:
                color = default_color(value)
            if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color):
                raise ConfigError(f"label {value} ({name}): colour must be three values 0-255, got {color!r}")
            out[value] = LabelInfo(value, name, tuple(int(c) for c in color))
        if 0 not in out:
            out[0] = LabelInfo(0, "background", (0, 0, 0))
        return cls(sorted(out.items()))

    @property
    def foreground(self) -> list[LabelInfo]:
        """Every label except background, by value."""
        return [info for v, info in sorted(self.items()) if v != 0]

    def names(self) -> dict[int, str]:
        """``{value: name}`` for every foreground label."""
        return {info.value: info.name for info in self.foreground}
