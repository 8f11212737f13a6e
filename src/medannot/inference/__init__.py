"""Inference: a bundle loaded as a :class:`Predictor`; ``predict(image) -> Prediction``."""

from medannot.inference.predictor import Prediction, Predictor

__all__ = ["Prediction", "Predictor"]
