"""Default display colours of label values (used wherever a label map gives none)."""

from __future__ import annotations

__all__ = ["default_color"]

# A qualitative palette that stays readable on grey images (Glasbey-like, high saturation).
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 64, 64), (64, 160, 255), (255, 200, 0), (0, 210, 110), (200, 80, 255),
    (255, 128, 0), (0, 220, 220), (255, 90, 180), (150, 210, 40), (140, 110, 255),
)


def default_color(value: int) -> tuple[int, int, int]:
    """Display colour (RGB 0-255) of label ``value`` when the label map gives none; background (0) is black."""
    return (0, 0, 0) if value == 0 else _PALETTE[(value - 1) % len(_PALETTE)]
