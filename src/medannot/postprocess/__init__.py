"""Post-processing of label maps: connected components, morphology, hole filling, spec pipeline.

All functions work on spatial numpy arrays (2D or 3D, no channel axis) with physical sizes
from ``spacing`` (mm per axis); empty input gives empty output.
"""

from medannot.postprocess.components import component_stats, instances, keep_largest_component, remove_small_objects
from medannot.postprocess.morphology import binary_close, binary_open, fill_holes, structuring_element
from medannot.postprocess.pipeline import PostprocessStep, apply_postprocessing, validate_postprocessing

__all__ = [
    "PostprocessStep",
    "apply_postprocessing",
    "binary_close",
    "binary_open",
    "component_stats",
    "fill_holes",
    "instances",
    "keep_largest_component",
    "remove_small_objects",
    "structuring_element",
    "validate_postprocessing",
]
