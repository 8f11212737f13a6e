"""The ``detection`` section of a detection bundle and training config (pydantic, no torch import).

Anchors follow MONAI's :class:`~monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape`:
level ``l`` of the feature pyramid gets anchors of shape ``base_anchor_shapes[a] * feature_map_scales[l]``
(voxels of the network's input grid, array axis order). Thresholds are those of MONAI's
``RetinaNetDetector.set_box_selector_parameters`` (score threshold, top-k per level, NMS IoU,
detections per image) plus the training-only matcher (ATSS) and hard-negative sampler settings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AnchorSpec", "DetectionSpec", "BoxSource"]


class AnchorSpec(BaseModel):
    """Anchor shapes (voxels) at the finest level and the scale of every pyramid level."""

    model_config = ConfigDict(extra="forbid")
    feature_map_scales: list[int] = Field(default_factory=lambda: [1, 2, 4])
    base_anchor_shapes: list[list[int]] = Field(default_factory=lambda: [[8, 8], [12, 12], [16, 16]])

    @model_validator(mode="after")
    def _positive(self) -> AnchorSpec:
        if not self.feature_map_scales or any(s < 1 for s in self.feature_map_scales):
            raise ValueError(f"anchors.feature_map_scales must be positive integers, got {self.feature_map_scales}")
        if not self.base_anchor_shapes or any(not shape or any(v < 1 for v in shape) for shape in self.base_anchor_shapes):
            raise ValueError(f"anchors.base_anchor_shapes must be non-empty lists of positive voxel sizes, got {self.base_anchor_shapes}")
        if len({len(s) for s in self.base_anchor_shapes}) != 1:
            raise ValueError(f"anchors.base_anchor_shapes must all have the same length, got {self.base_anchor_shapes}")
        return self


class BoxSource(BaseModel):
    """How training boxes are derived from a label patch.

    ``instances``: every distinct nonzero value is one object of class 1 (an instance mask,
    e.g. the stardist nuclei). ``components``: every connected component of label value ``v``
    is one object of class ``v``. A box covers the object's voxels inside the patch (objects cut
    by the patch edge keep their visible part); objects smaller than ``min_voxels`` are dropped.

    ``min_extent`` (voxels, training patches only): an object whose visible box is thinner than this
    along some axis (a sliver cut off by the patch edge) is not a training box, so its voxels count
    as background. With 1 (the default) every sliver is a positive, which teaches the network to box
    1-3 voxel slivers at any edge with high confidence, also at the real image border where experts
    usually leave cut objects unlabelled. Validation truth always keeps every object.
    """

    model_config = ConfigDict(extra="forbid")
    mode: str = "instances"
    min_voxels: int = Field(1, ge=1)
    min_extent: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _mode(self) -> BoxSource:
        if self.mode not in ("instances", "components"):
            raise ValueError(f"boxes.mode must be 'instances' or 'components', got {self.mode!r}")
        return self


class DetectionSpec(BaseModel):
    """Everything a RetinaNet detector needs besides the network weights.

    Attributes:
        anchors: Anchor shapes and pyramid scales (voxels).
        score_threshold: Candidate boxes scoring below this are dropped (before NMS).
        nms_iou: IoU above which the lower-scoring box of the same class is suppressed.
        topk_candidates_per_level: Candidates kept per pyramid level before NMS.
        detections_per_image: Boxes kept per image after NMS (highest scores).
        overlay_threshold: Boxes at or above this score are drawn on the overlay (all are written to JSON).
        sliding_window: Use MONAI's sliding-window inferer (patch = ``inference.patch_size``) when the
            image is larger than the patch; otherwise the whole image goes through the network at once.
        atss_candidates, center_in_gt: ATSS matcher settings (training).
        hard_negative: ``batch_size_per_image``, ``positive_fraction``, ``min_neg``, ``pool_size`` of
            MONAI's hard-negative sampler (training).
        box_coder_weights: Box coder weights (one per box coordinate); None = all 1.
        boxes: How training boxes come from label patches.
    """

    model_config = ConfigDict(extra="forbid")
    anchors: AnchorSpec = Field(default_factory=AnchorSpec)
    score_threshold: float = Field(0.05, ge=0.0, le=1.0)
    nms_iou: float = Field(0.5, gt=0.0, le=1.0)
    topk_candidates_per_level: int = Field(1000, ge=1)
    detections_per_image: int = Field(300, ge=1)
    overlay_threshold: float = Field(0.5, ge=0.0, le=1.0)
    sliding_window: bool = True
    atss_candidates: int = Field(4, ge=1)
    center_in_gt: bool = False
    hard_negative: dict[str, Any] = Field(
        default_factory=lambda: {"batch_size_per_image": 64, "positive_fraction": 0.3, "min_neg": 16, "pool_size": 20}
    )
    box_coder_weights: list[float] | None = None
    boxes: BoxSource = Field(default_factory=BoxSource)

    def check_dims(self, spatial_dims: int) -> None:
        """Raise ValueError when anchor shapes or coder weights do not fit ``spatial_dims``."""
        n = len(self.anchors.base_anchor_shapes[0])
        if n != spatial_dims:
            raise ValueError(f"detection.anchors.base_anchor_shapes have {n} values each for spatial_dims={spatial_dims}")
        if self.box_coder_weights is not None and len(self.box_coder_weights) != 2 * spatial_dims:
            raise ValueError(f"detection.box_coder_weights needs {2 * spatial_dims} values, got {len(self.box_coder_weights)}")
        unknown = set(self.hard_negative) - {"batch_size_per_image", "positive_fraction", "min_neg", "pool_size"}
        if unknown:
            raise ValueError(f"detection.hard_negative has unknown keys {sorted(unknown)}")

    def check_network(self, spatial_dims: int, network_params: dict[str, Any]) -> None:
        """Raise ValueError when the section does not fit the dimensionality or the network's ``num_anchors``."""
        self.check_dims(spatial_dims)
        anchors = network_params.get("num_anchors")
        if anchors is not None and int(anchors) != self.num_anchors:
            raise ValueError(f"network.params.num_anchors={anchors} but detection.anchors lists {self.num_anchors} anchor shapes")

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map location (the network's ``num_anchors``)."""
        return len(self.anchors.base_anchor_shapes)
