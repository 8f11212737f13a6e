"""Inference engines: PyTorch (the default) or ONNX Runtime running the bundle's ONNX export.

``Engine.ONNXRUNTIME`` runs ``model.onnx`` (fp32) and ``Engine.ONNXRUNTIME_INT8`` runs ``model.int8.onnx``
(static int8 quantisation) with ONNX Runtime's CPU provider, on as many threads as PyTorch uses
(``torch.get_num_threads()``). Everything around the network stays as it is: the segmentation sliding window is
still MONAI's ``sliding_window_inference`` (it calls :class:`OnnxNetwork` like a module), the detector is still
MONAI's ``RetinaNetDetector`` (anchors, box coding, selection and NMS in PyTorch around the ONNX head outputs:
:class:`OnnxRetinaNet`), and a classifier's explanation maps still come from the PyTorch network (Grad-CAM needs
gradients).

The default engine is PyTorch until ONNX Runtime is measured faster on the machine (``benchmarks/onnx.py``).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medannot.errors import ConfigError, ModelError
from medannot.models.bundle import Bundle
from medannot.models.onnx_export import OnnxVariant, onnx_file

__all__ = ["Engine", "OnnxNetwork", "OnnxRetinaNet", "onnx_network"]


class Engine(enum.StrEnum):
    """Which runtime runs the network."""

    PYTORCH = "pytorch"
    ONNXRUNTIME = "onnxruntime"
    ONNXRUNTIME_INT8 = "onnxruntime-int8"

    @classmethod
    def parse(cls, value: str | Engine) -> Engine:
        """Accept a name once; a typo lists the valid names.

        Raises:
            ConfigError: Unknown engine.
        """
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ConfigError(f"unknown engine {value!r}; expected one of: {', '.join(e.value for e in cls)}") from None

    @property
    def variant(self) -> OnnxVariant | None:
        """The ONNX file it runs (None for PyTorch)."""
        return {Engine.ONNXRUNTIME: OnnxVariant.FP32, Engine.ONNXRUNTIME_INT8: OnnxVariant.INT8}.get(self)


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types
        raise ModelError(f"ONNX Runtime cannot load the export ({str(exc).splitlines()[0]}); export it again", path) from None


class OnnxNetwork:
    """An ONNX Runtime session that is called like the PyTorch network: tensor in, tensor(s) out.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads (None: ``torch.get_num_threads()``).

    Attributes:
        path: The file; ``output_names``: its outputs in order.
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = _session(self.path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """All outputs for one float32 batch ``(N, C, *spatial)``."""
        return list(self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}))

    def __call__(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outs = [torch.from_numpy(o) for o in self.run(x.detach().cpu().numpy())]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def eval(self) -> OnnxNetwork:
        """No-op (the graph is exported in eval mode); mirrors ``torch.nn.Module.eval``."""
        return self

    def to(self, device: Any) -> OnnxNetwork:
        """CPU only; mirrors ``torch.nn.Module.to``.

        Raises:
            ConfigError: A device other than the CPU.
        """
        if torch.device(device).type != "cpu":
            raise ConfigError("the onnxruntime engine runs on the CPU; use --engine pytorch for a GPU")
        return self


class OnnxRetinaNet(torch.nn.Module):
    """MONAI's RetinaNet contract (``spatial_dims``, ``num_classes``, keys, anchors) around an ONNX export of its heads.

    MONAI's ``RetinaNetDetector`` calls it as it calls the network: it returns the classification and box
    regression maps of every pyramid level, here computed by ONNX Runtime.

    Args:
        skeleton: The PyTorch RetinaNet (its attributes are copied; its weights are not used).
        network: The ONNX export of ``skeleton``'s heads (outputs: class maps of every level, then box maps).
    """

    def __init__(self, skeleton: torch.nn.Module, network: OnnxNetwork) -> None:
        super().__init__()
        for name in ("spatial_dims", "num_classes", "cls_key", "box_reg_key", "num_anchors", "size_divisible"):
            setattr(self, name, getattr(skeleton, name))
        self.onnx = network

    def forward(self, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        outs = [torch.from_numpy(o) for o in self.onnx.run(images.detach().cpu().numpy())]
        half = len(outs) // 2
        return {self.cls_key: outs[:half], self.box_reg_key: outs[half:]}  # type: ignore[dict-item]


def onnx_network(bundle: Bundle, engine: Engine, threads: int | None = None) -> OnnxNetwork:
    """The checked ONNX export of ``bundle`` that ``engine`` runs, loaded in ONNX Runtime.

    Raises:
        ModelError: No export, a stale or corrupt one, or one ONNX Runtime cannot load.
        ConfigError: ``engine`` is PyTorch.
    """
    variant = engine.variant
    if variant is None:
        raise ConfigError("the PyTorch engine runs weights.pt, not an ONNX file")
    return OnnxNetwork(onnx_file(bundle.path, bundle.spec.sha256, variant, bundle.name), threads)
