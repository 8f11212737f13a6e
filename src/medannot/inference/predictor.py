"""Predictor: a bundle loaded for inference; ``predict(image) -> Prediction``.

The path an image takes: check channels and dimensionality against the bundle ->
bundle preprocessing (``medannot.transforms.build_transforms``; may reorient/resample/normalise)
-> MONAI ``sliding_window_inference`` (Gaussian blending of logits, patch = the bundle's
patch size) under ``torch.inference_mode`` -> softmax (float32) -> optional flip TTA (mean of the
softmax over the identity and a flip of each spatial axis) -> probabilities mapped back onto the
input's own grid by world coordinates (linear, per channel) -> argmax -> post-processing ->
instances.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from medannot.data.image import Image, ImageKind
from medannot.errors import InputError, ModelError
from medannot.inference.engines import Engine, OnnxNetwork, onnx_network
from medannot.io.colour import colour_note
from medannot.models.bundle import Bundle

__all__ = ["Prediction", "Predictor"]


@dataclass
class Prediction:
    """Result of :meth:`Predictor.predict`.

    Attributes:
        labels: Label map (uint8, or uint16 past 255 labels) on the input image's own grid.
        probabilities: Softmax probabilities (float32, ``(K, *working_shape)``) on the working
            (preprocessed) grid, or None unless ``keep_probabilities`` was asked.
        instances: Label value -> instance array (int32, 1..N, 0 background) on the input grid,
            for the label values listed in the bundle's ``instances``.
        timings: Seconds per stage (preprocess, network, resample, postprocess, instances, total).
        bundle: The bundle that produced it.
    """

    labels: Image
    probabilities: Image | None = None
    instances: dict[int, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    bundle: Bundle | None = None


class Predictor:
    """Runs a bundle's network on images.

    Args:
        bundle: The bundle (its weights are used unless ``network`` is given).
        network: An already built network (e.g. the one being trained); put in eval mode.
        device: Torch device for the network (``"cpu"``, ``"cuda"``).
        tta: Flip test-time augmentation; None = the bundle's ``inference.tta_flips``.
        sw_batch_size: Windows per forward pass; None = the bundle's value.
        progress: Show a tqdm progress bar over the windows.
        engine: ``pytorch`` (``weights.pt``), ``onnxruntime`` (``model.onnx``) or ``onnxruntime-int8``
            (``model.int8.onnx``); ignored when ``network`` is given.

    Raises:
        ModelError: The engine's ONNX export is missing, stale or corrupt.
    """

    def __init__(
        self,
        bundle: Bundle,
        network: torch.nn.Module | None = None,
        device: str | torch.device = "cpu",
        tta: bool | None = None,
        sw_batch_size: int | None = None,
        progress: bool = False,
        engine: Engine | str = Engine.PYTORCH,
    ) -> None:
        from medannot.transforms import build_transforms

        self.bundle = bundle
        self.device = torch.device(device)
        self.engine = Engine.PYTORCH if network is not None else Engine.parse(engine)
        self.network: torch.nn.Module | OnnxNetwork
        if self.engine is Engine.PYTORCH:
            self.network = (network if network is not None else bundle.build_network()).to(self.device)
        else:
            self.network = onnx_network(bundle, self.engine).to(self.device)
        self.tta = bundle.spec.inference.tta_flips if tta is None else bool(tta)
        self.sw_batch_size = int(sw_batch_size or bundle.spec.inference.sw_batch_size)
        self.progress = progress
        self.preprocess = build_transforms(bundle.spec.preprocessing)

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle | str | Path,
        device: str | torch.device = "cpu",
        tta: bool | None = None,
        sw_batch_size: int | None = None,
        progress: bool = False,
        engine: Engine | str = Engine.PYTORCH,
    ) -> Predictor:
        """Load a bundle (folder, bundled name, or :class:`Bundle`) and build its network.

        Raises:
            ModelError: Unknown/corrupt bundle.
        """
        b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        return cls(b, device=device, tta=tta, sw_batch_size=sw_batch_size, progress=progress, engine=engine)

    # ------------------------------------------------------------------------------------------
    def check_input(self, image: Image) -> None:
        """Raise a clear error when ``image`` does not fit the bundle (dimensionality, channels, kind)."""
        b = self.bundle
        if image.ndim != b.spatial_dims:
            what = "a 2D image" if image.ndim == 2 else "a 3D volume"
            raise ModelError(
                f"model {b.name!r} is {b.spatial_dims}D but was given {what} of shape {image.spatial_shape}; "
                f"use a {b.spatial_dims}D model or a {b.spatial_dims}D input"
            )
        if image.channels != b.in_channels:
            raise InputError(
                f"model {b.name!r} expects {b.in_channels} channel(s), got {image.channels} (array shape {image.array.shape})"
                + (f"{colour_note(image.channels)}; convert the image to grey first" if b.in_channels == 1
                   else "; stack the channels the model was trained on")
            )
        if image.is_label:
            raise InputError(f"model {b.name!r} segments intensity images, got a label map; pass the image, not its labels")

    def network_probabilities(self, array: np.ndarray) -> np.ndarray:
        """Softmax probabilities (float32, ``(K, *spatial)``) of a preprocessed channel-first array.

        Sliding window (Gaussian blending of logits) at the bundle's patch size and overlap;
        with TTA the softmax is averaged over the identity and one flip per spatial axis.
        """
        inf = self.bundle.spec.inference
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(self.device)
        nd = x.ndim - 2
        flips: list[tuple[int, ...]] = [()]
        if self.tta:
            flips += [(2 + a,) for a in range(nd)]
        self.network.eval()
        acc = torch.zeros(0)
        with torch.inference_mode():
            for dims in flips:
                xi = torch.flip(x, dims) if dims else x
                logits = sliding_window_inference(
                    xi,
                    roi_size=list(inf.patch_size),
                    sw_batch_size=self.sw_batch_size,
                    predictor=self.network,
                    overlap=inf.overlap,
                    mode="gaussian",
                    progress=self.progress and not dims,  # one bar, not one per TTA flip
                )
                probs = torch.softmax(torch.as_tensor(logits).float(), dim=1)
                del logits
                if dims:
                    probs = torch.flip(probs, dims)
                acc = probs if not acc.numel() else acc.add_(probs)
            if len(flips) > 1:
                acc /= len(flips)
        return acc[0].cpu().numpy().astype(np.float32, copy=False)

    def predict(self, image: Image, keep_probabilities: bool = False) -> Prediction:
        """Segment one image.

        Args:
            image: Intensity image with the bundle's dimensionality and channel count.
            keep_probabilities: Also return the softmax probabilities (working grid, float32).

        Returns:
            A :class:`Prediction` whose ``labels`` lie voxel-for-voxel on ``image``'s grid.

        Raises:
            ModelError: Dimensionality mismatch. InputError: wrong channel count or a label map.
        """
        self.check_input(image)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        work = self.preprocess(image)
        t1 = time.perf_counter()
        timings["preprocess"] = t1 - t0
        probs = self.network_probabilities(work.array)
        t2 = time.perf_counter()
        timings["network"] = t2 - t1
        labels = self._labels_on_input_grid(probs, work, image)
        t3 = time.perf_counter()
        timings["resample"] = t3 - t2
        labels = self._postprocess(labels, image.spacing)
        t4 = time.perf_counter()
        timings["postprocess"] = t4 - t3
        instances = self._instances(labels, image.spacing)
        t5 = time.perf_counter()
        timings["instances"] = t5 - t4
        timings["total"] = t5 - t0
        meta = {"model": self.bundle.name, "model_version": self.bundle.version, "labels": {str(k): v for k, v in self.bundle.labels.items()}}
        label_img = Image(labels[None], image.geometry, ImageKind.LABEL, meta)
        prob_img = Image(probs, work.geometry, ImageKind.INTENSITY, {"model": self.bundle.name}) if keep_probabilities else None
        return Prediction(labels=label_img, probabilities=prob_img, instances=instances, timings=timings, bundle=self.bundle)

    # ------------------------------------------------------------------------------------------
    def _labels_on_input_grid(self, probs: np.ndarray, work: Image, image: Image) -> np.ndarray:
        dtype = np.uint8 if probs.shape[0] <= 256 else np.uint16
        if work.spatial_shape == image.spatial_shape and work.geometry.isclose(image.geometry, atol=1e-5):
            return np.argmax(probs, axis=0).astype(dtype)
        from medannot.transforms.spatial import resampled_argmax

        # One pass: interpolated only where neighbouring working voxels disagree (equal to resampling each channel).
        return resampled_argmax(probs, work.geometry, image.geometry, image.spatial_shape).astype(dtype, copy=False)

    def _postprocess(self, labels: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
        spec = self.bundle.spec.postprocessing
        if not spec:
            return labels
        from medannot.postprocess import apply_postprocessing

        out = apply_postprocessing(labels, spacing, spec)
        return np.asarray(out).astype(labels.dtype, copy=False)

    def _instances(self, labels: np.ndarray, spacing: tuple[float, ...]) -> dict[int, np.ndarray]:
        spec = self.bundle.spec.instances
        if not spec:
            return {}
        from medannot.inference.instances import split_instances

        return {int(k): split_instances(labels == int(k), v, spacing) for k, v in spec.items()}
