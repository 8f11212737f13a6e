"""The kinds of work a model does (:class:`Task`): the names every layer may use, no behaviour.

What differs between tasks (config model, networks, training hooks, predictor, case writer, evaluator)
lives in the task registry, :mod:`medannot.tasks`; code below it stays task-agnostic and code above it
asks the registry (``medannot.tasks.get_task(Task.DETECTION)``) instead of comparing names.
"""

from __future__ import annotations

import enum

from medannot.errors import ConfigError

__all__ = ["Task"]


class Task(enum.StrEnum):
    """What a model (or a classical method) produces for an image.

    - ``segmentation``: a label map on the image's grid (and instances of chosen labels);
    - ``detection``: boxes with scores and classes;
    - ``classification``: one class (with probabilities) for the whole image;
    - ``promptable``: the mask of the one object a person points at (clicks, a box, scribbles).
    """

    SEGMENTATION = "segmentation"
    DETECTION = "detection"
    CLASSIFICATION = "classification"
    PROMPTABLE = "promptable"

    @classmethod
    def parse(cls, value: "str | Task") -> "Task":
        """Convert a string once; a typo lists the valid names.

        Raises:
            ConfigError: Unknown task name.
        """
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            valid = ", ".join(t.value for t in cls)
            raise ConfigError(f"unknown task {value!r}; expected one of: {valid}") from None
