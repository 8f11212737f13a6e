"""One schema for masks, instances, boxes and labels with provenance, and its writers."""

from medannot.annotations.labelmap import LabelInfo, LabelMap, default_color
from medannot.annotations.schema import Annotation, Instance, LabelSummary, Provenance
from medannot.annotations.writer import write_case

__all__ = [
    "Annotation",
    "Instance",
    "LabelInfo",
    "LabelMap",
    "LabelSummary",
    "Provenance",
    "default_color",
    "write_case",
]
