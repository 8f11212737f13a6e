"""Label maps: value -> name and display colour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medannot.data.palette import default_color
from medannot.errors import ConfigError


@dataclass(frozen=True)
class LabelInfo:
    """Name and RGB colour (0-255) of one label value."""

    value: int
    name: str
    color: tuple[int, int, int]


class LabelMap(dict[int, LabelInfo]):
    """Mapping from label value to :class:`LabelInfo`; value 0 is background."""

    @classmethod
    def parse(cls, labels: Mapping[Any, Any] | None, values: list[int] | None = None) -> LabelMap:
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
            r, g, b = (int(c) for c in color)
            out[value] = LabelInfo(value, name, (r, g, b))
        if 0 not in out:
            out[0] = LabelInfo(0, "background", (0, 0, 0))
        return cls(sorted(out.items()))

    @classmethod
    def from_text(cls, text: str | None, option: str = "--labels") -> LabelMap | None:
        """The one ``--labels`` syntax of every command: ``1=liver,2=tumour`` or a JSON object ``{"1": "liver"}``.

        JSON values may also be ``{"name": ..., "color": [r, g, b]}``. Empty or None -> None.

        Raises:
            ConfigError: Invalid JSON, an entry that is not ``value=name``, or a value that is not an integer (naming ``option``).
        """
        import json

        if text is None or not text.strip():
            return None
        text = text.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{option} is not valid JSON ({exc.msg}): {text!r}; or write value=name pairs, e.g. 1=liver,2=tumour") from None
            if not isinstance(data, dict):
                raise ConfigError(f"{option} must map label values to names, got {text!r}")
            try:
                return cls.parse(data)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{option}: {exc}") from None
        names: dict[int, str] = {}
        for entry in text.split(","):
            value, sep, name = entry.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"{option} expects value=name pairs separated by commas (e.g. 1=liver,2=tumour) or JSON, got {entry!r}")
            try:
                names[int(value)] = name.strip()
            except ValueError:
                raise ConfigError(f"{option}: {value.strip()!r} is not an integer label value (in {entry!r})") from None
        return cls.parse(names)

    @property
    def foreground(self) -> list[LabelInfo]:
        """Every label except background, by value."""
        return [info for v, info in sorted(self.items()) if v != 0]

    def names(self) -> dict[int, str]:
        """``{value: name}`` for every foreground label."""
        return {info.value: info.name for info in self.foreground}
