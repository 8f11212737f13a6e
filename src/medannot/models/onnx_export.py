"""A bundle's network as ONNX, beside its weights: export, int8 quantisation, and the record that ties them.

A bundle folder may hold, next to ``weights.pt``:

- ``model.onnx``: the network exported with PyTorch's ``torch.export``-based ONNX exporter (opset
  :data:`ONNX_OPSET`), batch and spatial axes dynamic where the network allows;
- ``model.int8.onnx``: the same graph quantised by ONNX Runtime's static quantisation (QDQ, int8 weights per
  channel, uint8 activations) calibrated on the bundle's own data;
- ``onnx.json``: the :class:`OnnxRecord`: the sha256 of the ``weights.pt`` it was exported from (an export of
  other weights is refused as stale), each file's sha256 and size, the opset, the largest difference from
  PyTorch measured at export, and the int8 calibration and accuracy notes.

ONNX Runtime itself runs the files (:mod:`medannot.inference.engines`); this module only writes and checks them.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import io
import json
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medannot.errors import ConfigError, ModelError

__all__ = ["ONNX_OPSET", "OnnxRecord", "OnnxVariant", "export_module", "onnx_file", "quantize_int8", "read_record",
           "write_record"]

ONNX_OPSET = 18
"""Opset of the exports (checked with onnxruntime 1.31.1: every bundled network runs and matches PyTorch)."""
RECORD = "onnx.json"


class OnnxVariant(enum.StrEnum):
    """Which ONNX file of a bundle: ``fp32`` (``model.onnx``) or ``int8`` (``model.int8.onnx``)."""

    FP32 = "fp32"
    INT8 = "int8"

    @property
    def filename(self) -> str:
        """The file's name inside the bundle folder."""
        return "model.onnx" if self is OnnxVariant.FP32 else "model.int8.onnx"


@dataclass
class OnnxRecord:
    """``onnx.json``: what the ONNX files of a bundle were made from and how close they are to PyTorch.

    Attributes:
        weights_sha256: sha256 of the ``weights.pt`` exported (the bundle's ``sha256`` at export time).
        opset: ONNX opset.
        inputs: Input names in order; ``outputs``: output names in order.
        files: Variant -> ``{"file", "sha256", "bytes"}``.
        max_abs_diff: Variant -> largest |ONNX Runtime - PyTorch| of the raw outputs on the export check input.
        notes: Free-form facts (calibration data, held-out accuracy of each variant, versions).
    """

    weights_sha256: str
    opset: int = ONNX_OPSET
    inputs: list[str] = field(default_factory=lambda: ["image"])
    outputs: list[str] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content."""
        return asdict(self)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_record(folder: Path) -> OnnxRecord | None:
    """The ``onnx.json`` of a bundle folder, or None when it has none.

    Raises:
        ModelError: The file is not a valid record.
    """
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return OnnxRecord(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"onnx.json is unreadable ({exc}); export again with `medannot models export NAME --format onnx`", path) from None


def write_record(folder: Path, record: OnnxRecord) -> Path:
    """Write ``onnx.json`` atomically."""
    from medannot.io.atomic import atomic_write_text

    return atomic_write_text(Path(folder) / RECORD, json.dumps(record.to_dict(), indent=2) + "\n")


def onnx_file(folder: Path | None, weights_sha256: str | None, variant: OnnxVariant, name: str) -> Path:
    """The checked path of a bundle's ONNX file.

    Args:
        folder: The bundle folder.
        weights_sha256: The bundle's current weights checksum (``bundle.json`` ``sha256``).
        variant: fp32 or int8.
        name: The bundle's name (for messages).

    Raises:
        ModelError: No folder, no export, an export of other weights (stale), or a file whose checksum differs.
    """
    how = f"run `medannot models export {name} --format onnx{' --int8' if variant is OnnxVariant.INT8 else ''}`"
    if folder is None:
        raise ModelError(f"model {name!r} has no folder, so no ONNX export; save it, then {how}")
    record = read_record(folder)
    entry = record.files.get(variant.value) if record else None
    if record is None or entry is None:
        raise ModelError(f"model {name!r} has no {variant.value} ONNX export ({variant.filename}); {how}", folder)
    if weights_sha256 is not None and record.weights_sha256 != weights_sha256:
        raise ModelError(f"the ONNX export of {name!r} was made from other weights (stale); {how}", folder / variant.filename)
    path = Path(folder) / str(entry["file"])
    try:
        digest = _sha256(path.read_bytes())
    except OSError:
        raise ModelError(f"{variant.filename} is missing; {how}", path) from None
    if digest != entry["sha256"]:
        raise ModelError(f"{variant.filename} checksum mismatch (corrupt or replaced); {how}", path)
    return path


def export_module(module: torch.nn.Module, example: torch.Tensor, dynamic_axes: Sequence[int], output_names: Sequence[str],
                  path: Path) -> bytes:
    """Export ``module(example)`` to ONNX with ``torch.export`` (opset :data:`ONNX_OPSET`) and write it to ``path``.

    Args:
        module: In eval mode; returns a tensor or a tuple of tensors.
        example: One input batch ``(N, C, *spatial)``.
        dynamic_axes: Input axes left free (0 = batch; 2.. = spatial where the network allows).
        output_names: One name per output.
        path: Destination file.

    Returns:
        The file's bytes.

    Raises:
        ModelError: The exporter cannot trace the network.
    """
    from medannot.io.atomic import atomic_write_bytes

    dims: dict[int, Any] = {a: (torch.export.Dim("batch", min=1, max=4096) if a == 0 else torch.export.Dim.AUTO)
                            for a in dynamic_axes}
    arg = next(iter(inspect.signature(module.forward).parameters))
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # exporter progress notes and deprecations of torch internals
            program = torch.onnx.export(module.eval(), (example,), dynamo=True, opset_version=ONNX_OPSET, input_names=["image"],
                                        output_names=list(output_names), dynamic_shapes={arg: dims}, verbose=False)
            if program is None:
                raise ModelError("torch.onnx.export returned no program")
            program.optimize()
            proto = program.model_proto
    except ModelError:
        raise
    except Exception as exc:  # the exporter raises many types
        raise ModelError(f"the network cannot be exported to ONNX ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    raw: bytes = proto.SerializeToString()
    atomic_write_bytes(path, raw)
    return raw


class _Reader:
    """ONNX Runtime calibration reader over prepared network inputs (one batch of one per call)."""

    def __init__(self, name: str, batches: Iterable[np.ndarray]) -> None:
        self.name = name
        self.items = iter([np.ascontiguousarray(b, dtype=np.float32) for b in batches])

    def get_next(self) -> Mapping[str, np.ndarray] | None:
        item = next(self.items, None)
        return None if item is None else {self.name: item}

    def rewind(self) -> None:  # pragma: no cover - ORT calls it only for some calibration methods
        raise NotImplementedError


def quantize_int8(fp32_path: Path, out_path: Path, calibration: Sequence[np.ndarray]) -> bytes:
    """ONNX Runtime static quantisation of ``fp32_path`` (QDQ: int8 weights per channel, uint8 activations, MinMax).

    Args:
        fp32_path: The fp32 export.
        out_path: Destination file.
        calibration: Network inputs ``(1, C, *spatial)`` float32 (the bundle's own data, prepared as at inference).

    Returns:
        The file's bytes.

    Raises:
        ConfigError: No calibration input.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from medannot.io.atomic import atomic_write_bytes

    if not calibration:
        raise ConfigError("int8 quantisation needs calibration images; give the bundle's own validation images")
    tmp = out_path.with_name(out_path.name + ".part")
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.ERROR)  # the quantiser logs advice at WARNING on the root logger
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(fp32_path), str(tmp), _Reader("image", calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        raw = tmp.read_bytes()
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
    atomic_write_bytes(out_path, raw)
    return raw


def file_entry(path: Path, raw: bytes) -> dict[str, Any]:
    """``{"file", "sha256", "bytes"}`` of one written file."""
    return {"file": path.name, "sha256": _sha256(raw), "bytes": len(raw)}
