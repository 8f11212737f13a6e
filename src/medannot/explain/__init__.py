"""Explanations for reviewers: where a classifier looked (Grad-CAM, occlusion) and where a segmentation is unsure."""

from medannot.explain.saliency import gradcam_map, occlusion_map
from medannot.explain.uncertainty import mc_dropout_probabilities, softmax_entropy, uncertainty_summary

__all__ = ["gradcam_map", "mc_dropout_probabilities", "occlusion_map", "softmax_entropy", "uncertainty_summary"]
