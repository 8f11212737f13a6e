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
    def extend(cls, value: str) -> Task:
        """Add a task name for a plug-in (``COUNT = Task.extend("count")``); an existing name returns its member.

        The new member behaves like the built-in ones: ``Task("count")``, pydantic fields typed :class:`Task` and
        ``bundle.json`` files naming it all resolve to it. Names are lower-case words joined by ``-``.

        Raises:
            ConfigError: A name that is not lower-case letters, digits and ``-``.
        """
        value = str(value).strip()
        if value in cls._value2member_map_:
            return cls(value)
        if not value or not all(c.isdigit() or c == "-" or ("a" <= c <= "z") for c in value) or not value[0].isalpha():
            raise ConfigError(f"a task name is lower-case letters, digits and '-', starting with a letter; got {value!r}")
        member = str.__new__(cls, value)
        member._name_ = value.upper().replace("-", "_")
        member._value_ = value
        cls._member_map_[member._name_] = member
        cls._value2member_map_[value] = member
        cls._member_names_.append(member._name_)
        return member

    @classmethod
    def parse(cls, value: str | Task) -> Task:
        """Convert a string once; a typo lists the valid names.

        Raises:
            ConfigError: Unknown task name.
        """
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            valid = ", ".join(t.value for t in cls)
            raise ConfigError(f"unknown task {value!r}; expected one of: {valid}") from None
