"""The ``classification`` section of a classification bundle: input rules and calibration (config types only).

They live here, below inference and training, because the bundle, the classifier, the trainer and retrieval all
read them; :mod:`medannot.inference.classifier_input` applies the input rules to images.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CalibrationSpec", "ClassificationSection", "ClassifierInput"]


class ClassifierInput(BaseModel):
    """The input rules stored in a classification bundle (``bundle.json`` ``classification.input``).

    Attributes:
        input_size: Network input size in voxels, one value per spatial axis.
        percentiles: Intensities are clipped to these percentiles of the image and scaled to [0, 1].
        grey: An RGB(A) image becomes grey (mean of R, G, B) for a one-channel network.
    """

    model_config = ConfigDict(extra="forbid")
    input_size: list[int]
    percentiles: tuple[float, float] = (1.0, 99.0)
    grey: bool = True


class CalibrationSpec(BaseModel):
    """Temperature scaling fitted on validation data: ``softmax(logits / temperature)``."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(1.0, gt=0)
    calibrated: bool = False
    ece_before: float | None = None
    ece_after: float | None = None
    fitted_on: str = ""


class ClassificationSection(BaseModel):
    """``bundle.json`` ``classification``: how images are prepared and how logits become probabilities."""

    model_config = ConfigDict(extra="forbid")
    input: ClassifierInput
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
