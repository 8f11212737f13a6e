"""Export a bundle's network to ONNX (and int8) inside the bundle folder, checked against PyTorch.

What is exported depends on the bundle's section, not on a task name:

- a segmentation bundle: the network, ``image (N, C, *spatial) -> logits (N, K, *spatial)``, batch and spatial
  axes dynamic (sizes that the network's strides divide, as with PyTorch);
- a ``detection`` bundle: the RetinaNet heads, ``image -> class maps of every pyramid level, then box maps``
  (anchors, decoding, selection and NMS stay in MONAI's detector);
- a ``classification`` bundle: ``image (N, C, *input_size) -> features (N, D), logits (N, K)``.

int8: ONNX Runtime static quantisation calibrated on network inputs prepared from the bundle's own data exactly
as at inference (segmentation: sliding windows of the preprocessed images; detection: whole preprocessed images;
classification: the prepared images). The bundled models name theirs in :data:`BUNDLED_CALIBRATION`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from medannot.data.image import Image
from medannot.errors import ConfigError, ModelError
from medannot.inference.engines import OnnxNetwork
from medannot.models.bundle import Bundle
from medannot.models.classification import embed
from medannot.models.onnx_export import ONNX_OPSET, OnnxRecord, OnnxVariant, export_module, file_entry, quantize_int8, write_record

__all__ = ["BUNDLED_CALIBRATION", "calibration_inputs", "export_bundle"]


def _nuclei_left() -> list[Image]:
    from medannot.samples import NUCLEI_SPLIT_COLUMN, nuclei_image

    img = nuclei_image()
    return [Image(np.ascontiguousarray(img.array[..., :NUCLEI_SPLIT_COLUMN]), img.geometry, img.kind, dict(img.meta))]


def _mni_t1() -> list[Image]:
    from medannot.samples import mni152_t1

    return [mni152_t1()]


BUNDLED_CALIBRATION: dict[str, tuple[str, Callable[[], list[Image]]]] = {
    "brain-mri": ("MNI152 2009a T1 template (the training source), sliding windows at 2 mm", _mni_t1),
    "nuclei": ("stardist nuclei sample, left half (the training part)", _nuclei_left),
    "nuclei-detect": ("stardist nuclei sample, left half (the training part)", _nuclei_left),
}
"""Bundled model -> (description, images) of its int8 calibration data: never the held-out data it is scored on."""


class _Heads(torch.nn.Module):
    """RetinaNet -> flat tuple (class maps of each level, then box maps of each level)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.network(image)
        return tuple(out[self.network.cls_key]) + tuple(out[self.network.box_reg_key])


class _Embed(torch.nn.Module):
    """Classifier -> (features, logits) in one pass (:func:`medannot.models.classification.embed`)."""

    def __init__(self, network: torch.nn.Module, name: str) -> None:
        super().__init__()
        self.network = network
        self.name = name

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return embed(self.network, self.name, image)


def _windows(array: np.ndarray, patch: Sequence[int], overlap: float) -> list[np.ndarray]:
    """The sliding-window patches MONAI would cut (zero-padded where the image is smaller than the patch)."""
    pads = [(0, 0)] + [(0, max(p - s, 0)) for s, p in zip(array.shape[1:], patch)]
    arr = np.pad(array, pads)
    starts = []
    for s, p in zip(arr.shape[1:], patch):
        stride = max(1, int(p * (1 - overlap)))
        n = max(1, math.ceil((s - p) / stride) + 1)
        starts.append(sorted({min(i * stride, s - p) for i in range(n)}))
    out = []
    for corner in np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(patch)):
        sl = (slice(None), *(slice(int(c), int(c) + p) for c, p in zip(corner, patch)))
        out.append(arr[sl][None].astype(np.float32))
    return out


def calibration_inputs(bundle: Bundle, images: Sequence[Image], max_inputs: int = 48) -> list[np.ndarray]:
    """Network inputs ``(1, C, *spatial)`` prepared from ``images`` as at inference (see the module docstring).

    At most ``max_inputs``, evenly spread over all windows. Empty ``images`` give an empty list.
    """
    from medannot.transforms import build_transforms

    spec = bundle.spec
    out: list[np.ndarray] = []
    if spec.classification is not None:
        from medannot.inference.classifier import Classifier

        clf = Classifier(bundle)
        out = [clf.prepare(im)[None] for im in images]
    else:
        pre = build_transforms(spec.preprocessing)
        for im in images:
            work = pre(im).array.astype(np.float32)
            if spec.detection is not None:
                div = int(bundle.network_spec.divisor(spec.network.params))
                pads = [(0, 0)] + [(0, -s % div) for s in work.shape[1:]]
                out.append(np.pad(work, pads)[None])
            else:
                out.extend(_windows(work, spec.inference.patch_size, spec.inference.overlap))
    if len(out) > max_inputs:
        pick = np.linspace(0, len(out) - 1, max_inputs).round().astype(int)
        out = [out[i] for i in sorted(set(pick.tolist()))]
    return out


def _module(bundle: Bundle) -> tuple[torch.nn.Module, torch.Tensor, list[int], list[str]]:
    """(module to export, example input, dynamic input axes, output names) for the bundle's section."""
    net = bundle.build_network().eval()
    spec = bundle.spec
    gen = torch.Generator().manual_seed(0)
    if spec.classification is not None:
        size = [int(s) for s in spec.classification.input.input_size]
        return _Embed(net, spec.network.name), torch.rand((1, bundle.in_channels, *size), generator=gen), [0], ["features", "logits"]
    patch = [int(p) for p in spec.inference.patch_size]
    example = torch.randn((1, bundle.in_channels, *patch), generator=gen)
    spatial = list(range(2, 2 + bundle.spatial_dims))
    if spec.detection is not None:
        levels = len(spec.detection.anchors.feature_map_scales)
        names = [f"class_{i}" for i in range(levels)] + [f"box_{i}" for i in range(levels)]
        return _Heads(net), example, [0, *spatial], names
    return net, example, [0, *spatial], ["logits"]


def _max_diff(module: torch.nn.Module, onnx: OnnxNetwork, x: torch.Tensor) -> float:
    with torch.inference_mode():
        ref = module(x)
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    got = onnx.run(x.numpy())
    if len(got) != len(refs):
        raise ModelError(f"the ONNX export has {len(got)} outputs, PyTorch {len(refs)}; export again")
    return max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, refs))


def export_bundle(bundle: Bundle, int8: bool = False, calibration: Sequence[Image] | None = None,
                  calibration_note: str = "") -> OnnxRecord:
    """Write ``model.onnx`` (and with ``int8`` ``model.int8.onnx``) and ``onnx.json`` into the bundle's folder.

    Args:
        bundle: A bundle loaded from its folder (``bundle.path``).
        int8: Also quantise (static, calibrated on ``calibration``).
        calibration: Images of the bundle's own data for int8 (None: :data:`BUNDLED_CALIBRATION` for a bundled model).
        calibration_note: What those images are (recorded in ``onnx.json``).

    Returns:
        The record written: the largest |ONNX Runtime - PyTorch| of the raw outputs (logits) per variant, fp32 on a
        random input of the patch size, int8 on one of its calibration inputs (real data).

    Raises:
        ModelError: No folder, a network the exporter cannot trace, or an export ONNX Runtime cannot run.
        ConfigError: int8 without calibration images.
    """
    import onnxruntime

    import onnx

    if bundle.path is None:
        raise ModelError(f"model {bundle.name!r} has no folder to write the export into; save the bundle first")
    if int8 and calibration is not None and not calibration:
        raise ConfigError("int8 quantisation needs calibration images; give the bundle's own validation images")
    folder = Path(bundle.path)
    module, example, axes, names = _module(bundle)
    record = OnnxRecord(weights_sha256=bundle.spec.sha256 or "", opset=ONNX_OPSET, outputs=names,
                        notes={"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                               "exporter": "torch.onnx.export(dynamo=True)"})
    fp32 = folder / OnnxVariant.FP32.filename
    raw = export_module(module, example, axes, names, fp32)
    record.files[OnnxVariant.FP32.value] = file_entry(fp32, raw)
    check = example if len(axes) == 1 else torch.randn(example.shape, generator=torch.Generator().manual_seed(1))
    record.max_abs_diff[OnnxVariant.FP32.value] = _max_diff(module, OnnxNetwork(fp32), check)
    if int8:
        if calibration is None:
            if bundle.name not in BUNDLED_CALIBRATION:
                raise ConfigError(f"int8 needs calibration images of {bundle.name!r}'s own data; pass --calibration FILE_OR_FOLDER")
            calibration_note, load = BUNDLED_CALIBRATION[bundle.name]
            calibration = load()
        inputs = calibration_inputs(bundle, calibration)
        q = folder / OnnxVariant.INT8.filename
        raw8 = quantize_int8(fp32, q, inputs)
        record.files[OnnxVariant.INT8.value] = file_entry(q, raw8)
        record.max_abs_diff[OnnxVariant.INT8.value] = _max_diff(module, OnnxNetwork(q), torch.from_numpy(inputs[len(inputs) // 2]))
        record.notes["int8_calibration"] = f"{calibration_note or 'given images'}: {len(inputs)} network inputs"
        record.notes["int8_method"] = "ONNX Runtime quantize_static: QDQ, int8 weights per channel, uint8 activations, MinMax"
    else:
        (folder / OnnxVariant.INT8.filename).unlink(missing_ok=True)  # an older int8 file would be of other weights
    write_record(folder, record)
    return record
