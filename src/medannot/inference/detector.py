"""Detector: a detection bundle loaded for inference; ``detect(image) -> Detections``.

The path an image takes: check dimensionality and channels against the bundle -> the bundle's
preprocessing (``medannot.transforms.build_transforms``) -> MONAI ``RetinaNetDetector`` in eval mode
(whole image, or MONAI's sliding-window inferer over the bundle's patch size when the image is
larger than the patch and the bundle asks for it) -> box selection with the bundle's score
threshold, top-k and per-class NMS IoU (MONAI's ``BoxSelector``, NMS from ``monai.data.box_utils``)
-> boxes mapped from the working grid back onto the input's own grid through world coordinates,
clipped to the image -> sorted by descending score.

Boxes are voxel boxes in array axis order with an exclusive max corner (see :mod:`medannot.data.boxes`);
:attr:`Detections.boxes_mm` gives their world RAS extent in mm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medannot.data.boxes import clip_boxes, map_boxes, voxel_boxes_to_world
from medannot.data.geometry import Geometry
from medannot.data.image import Image
from medannot.errors import InputError, ModelError
from medannot.inference.engines import Engine, OnnxRetinaNet, onnx_network
from medannot.io.colour import colour_note
from medannot.models.bundle import Bundle
from medannot.models.registry import create_network

__all__ = ["Detections", "Detector"]


@dataclass
class Detections:
    """Boxes found in one image, on that image's own grid.

    Attributes:
        boxes: ``(N, 2 * ndim)`` float64 voxel boxes (array axis order, max exclusive), by descending score.
        scores: ``(N,)`` float32 classification scores (sigmoid probabilities) in [0, 1].
        labels: ``(N,)`` int64 label values (1..K; the bundle's label map names them).
        geometry: The input image's geometry (for world coordinates).
        shape: The input image's spatial shape (voxels).
        label_names: Label value -> name.
        timings: Seconds per stage (preprocess, network, boxes, total).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    geometry: Geometry
    shape: tuple[int, ...]
    label_names: dict[int, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def boxes_mm(self) -> np.ndarray:
        """``(N, ndim, 2)`` world RAS extent of each box in mm."""
        return voxel_boxes_to_world(self.boxes, self.geometry)

    def above(self, threshold: float) -> Detections:
        """The detections scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.geometry, self.shape, dict(self.label_names), dict(self.timings))


class Detector:
    """Runs a detection bundle on images.

    Args:
        bundle: A bundle with ``task: detection``.
        network: An already built network (e.g. the one being trained); put in eval mode.
        device: Torch device.
        progress: Show the sliding-window progress bar.
        engine: ``pytorch``, or ``onnxruntime`` / ``onnxruntime-int8``: the RetinaNet's heads run from the bundle's
            ONNX export and MONAI's detector (anchors, box decoding, selection, NMS) runs around them.

    Raises:
        ModelError: If the bundle is not a detection bundle, or the engine's ONNX export is missing or stale.
    """

    def __init__(self, bundle: Bundle, network: torch.nn.Module | None = None, device: str | torch.device = "cpu",
                 progress: bool = False, engine: Engine | str = Engine.PYTORCH) -> None:
        from medannot.models.detection import build_detector
        from medannot.transforms import build_transforms

        if bundle.spec.detection is None:
            raise ModelError(f"model {bundle.name!r} is a {bundle.task} model, not a detection model; use Predictor for it", bundle.path)
        self.bundle = bundle
        self.device = torch.device(device)
        self.engine = Engine.PYTORCH if network is not None else Engine.parse(engine)
        if self.engine is Engine.PYTORCH:
            self.network = (network if network is not None else bundle.build_network()).to(self.device)
        else:
            skeleton = create_network(bundle.network_spec.name, bundle.spatial_dims, bundle.in_channels, bundle.out_channels,
                                      **bundle.spec.network.params)
            self.network = OnnxRetinaNet(skeleton, onnx_network(bundle, self.engine).to(self.device))
        inf = bundle.spec.inference
        self.spec = bundle.spec.detection
        self.detector = build_detector(self.network, self.spec, bundle.spatial_dims, list(inf.patch_size), inf.overlap, inf.sw_batch_size)
        if progress and self.detector.inferer is not None:
            self.detector.inferer.progress = True
        self.preprocess = build_transforms(bundle.spec.preprocessing)
        self.label_names = {k: v for k, v in bundle.labels.items() if k != 0}

    @classmethod
    def from_bundle(cls, bundle: Bundle | str | Path, device: str | torch.device = "cpu", progress: bool = False,
                    engine: Engine | str = Engine.PYTORCH) -> Detector:
        """Load a bundle (folder, bundled name or :class:`Bundle`) and build its network.

        Raises:
            ModelError: Unknown or corrupt bundle, or not a detection bundle.
        """
        b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        return cls(b, device=device, progress=progress, engine=engine)

    def check_input(self, image: Image) -> None:
        """Raise a clear error when ``image`` does not fit the bundle (dimensionality, channels, kind)."""
        b = self.bundle
        if image.ndim != b.spatial_dims:
            what = "a 2D image" if image.ndim == 2 else "a 3D volume"
            raise ModelError(f"model {b.name!r} is {b.spatial_dims}D but was given {what} of shape {image.spatial_shape}; use a {b.spatial_dims}D model or input")
        if image.channels != b.in_channels:
            raise InputError(f"model {b.name!r} expects {b.in_channels} channel(s), got {image.channels} (array shape {image.array.shape})"
                             f"{colour_note(image.channels) if b.in_channels == 1 else ''}; convert the image first")
        if image.is_label:
            raise InputError(f"model {b.name!r} detects objects in intensity images, got a label map; pass the image, not its labels")

    def network_boxes(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and detector classes (0-based) of a preprocessed channel-first array, on its grid."""
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(self.device)
        patch = self.bundle.spec.inference.patch_size
        use_inferer = bool(self.spec.sliding_window) and any(s > p for s, p in zip(x.shape[2:], patch))
        self.detector.eval()
        with torch.inference_mode():
            out = self.detector(x, use_inferer=use_inferer)[0]
        return (out["boxes"].double().cpu().numpy(), out["labels_scores"].float().cpu().numpy(), out["labels"].long().cpu().numpy())

    def detect(self, image: Image) -> Detections:
        """Find the objects of one image.

        Args:
            image: Intensity image with the bundle's dimensionality and channel count.

        Returns:
            :class:`Detections` on ``image``'s own grid (no box when nothing scores above the bundle's threshold).

        Raises:
            ModelError: Dimensionality mismatch. InputError: wrong channel count or a label map.
        """
        self.check_input(image)
        t0 = time.perf_counter()
        work = self.preprocess(image)
        t1 = time.perf_counter()
        boxes, scores, classes = self.network_boxes(work.array)
        t2 = time.perf_counter()
        boxes = map_boxes(boxes, work.geometry, image.geometry)
        boxes, keep = clip_boxes(boxes, image.spatial_shape)
        order = np.argsort(-scores[keep], kind="stable")
        boxes, scores, labels = boxes[keep][order], scores[keep][order], classes[keep][order] + 1
        t3 = time.perf_counter()
        timings = {"preprocess": t1 - t0, "network": t2 - t1, "boxes": t3 - t2, "total": t3 - t0}
        return Detections(boxes, scores.astype(np.float32), labels.astype(np.int64), image.geometry, image.spatial_shape, dict(self.label_names), timings)
