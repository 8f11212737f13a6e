"""Importing this module registers medannot's built-in tasks (each module registers its own plug-in)."""

from medannot.tasks import classification, detection, promptable, segmentation  # noqa: F401

__all__: list[str] = []
