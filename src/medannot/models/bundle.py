"""A trained model as a folder that rebuilds itself.

A bundle folder ``<name>/`` holds:

- ``bundle.json``: name, version, task, spatial_dims, in_channels, network
  ``{"name", "params"}``, labels ``{"0": {"name", "color"}, ...}`` (values 0..K-1 are the
  network's output channels), preprocessing (transform specs), inference
  ``{"patch_size", "overlap", "sw_batch_size", "tta_flips"}``, postprocessing,
  instances, training (the resolved training config), metrics (validation on
  held-out data) and ``sha256`` of ``weights.pt``; task ``detection`` bundles add
  ``detection`` (anchors, score threshold, NMS IoU: :mod:`medannot.models.detection_spec`), their
  labels name the object classes (``"0"`` background, network classes 0..K-1 = label values 1..K);
- ``weights.pt``: the network's ``state_dict`` (float32, or float16 to halve the size;
  always loaded back as float32);
- ``MODEL_CARD.md``: what it was trained on, how well it did on unseen data, how to re-train it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medannot.data.palette import default_color
from medannot.data.task import Task
from medannot.errors import ModelError
from medannot.models.classification_spec import ClassificationSection
from medannot.models.detection_spec import DetectionSpec
from medannot.models.registry import NetworkSpec, create_network, get_network_spec

__all__ = ["Bundle", "BundleSpec", "InferenceSpec", "bundled_root", "list_bundles"]

BUNDLE_JSON = "bundle.json"
WEIGHTS = "weights.pt"
MODEL_CARD = "MODEL_CARD.md"


def bundled_root() -> Path:
    """Folder holding the bundles shipped with medannot (``medannot/bundled``)."""
    return Path(__file__).resolve().parent.parent / "bundled"


class LabelSpec(BaseModel):
    """One label value: its name and display colour (RGB 0-255; None: medannot's default palette)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    color: tuple[int, int, int] | None = None


class NetworkRef(BaseModel):
    """A registered network name and its parameters."""

    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class InferenceSpec(BaseModel):
    """Sliding-window settings: patch size (voxels), overlap (fraction), batch, flip TTA."""

    model_config = ConfigDict(extra="forbid")
    patch_size: list[int]
    overlap: float = Field(0.25, ge=0.0, lt=1.0)
    sw_batch_size: int = Field(1, ge=1)
    tta_flips: bool = False

    @field_validator("patch_size")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(int(s) < 1 for s in v):
            raise ValueError(f"patch_size must be positive voxel counts, got {v}")
        return v


def check_spatial_dims(v: int) -> int:
    """Pydantic check shared by bundles and training configs: 2 or 3."""
    if v not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {v}")
    return v


def check_label_keys(labels: dict[str, Any]) -> None:
    """Label maps are keyed '0'..'K-1', one per network output channel, background '0' first."""
    want = {str(i) for i in range(len(labels))}
    if set(labels) != want or len(labels) < 2:
        raise ValueError(
            f"labels must be keyed '0'..'{max(len(labels) - 1, 1)}' (one per output channel, background '0' first), got {sorted(labels)}"
        )


def check_task_sections(model: BaseModel, task: Task, spatial_dims: int, network: NetworkRef) -> None:
    """A bundle or training config holds the section named after its task (if that task has one) and no other task's.

    A section that knows more about itself (e.g. :meth:`DetectionSpec.check_network`) checks itself against the
    dimensionality and the network parameters.
    """
    fields = type(model).model_fields
    for other in Task:
        if other is not task and other.value in fields and getattr(model, other.value) is not None:
            raise ValueError(f"a {other.value!r} section is only allowed with task {other.value!r}, got task {task.value!r}")
    if task.value in fields:
        section = getattr(model, task.value)
        if section is None:
            raise ValueError(f"task {task.value!r} needs a {task.value!r} section")
        check = getattr(section, "check_network", None)
        if check is not None:
            check(spatial_dims, network.params)


class BundleSpec(BaseModel):
    """Validated content of ``bundle.json``."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str = "0.1.0"
    task: Task = Task.SEGMENTATION
    spatial_dims: int
    in_channels: int = Field(1, ge=1)
    network: NetworkRef
    labels: dict[str, LabelSpec]
    preprocessing: list[dict[str, Any]] = Field(default_factory=list)
    inference: InferenceSpec
    postprocessing: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    instances: dict[str, Any] = Field(default_factory=dict)
    detection: DetectionSpec | None = None  # task "detection": anchors, thresholds, NMS IoU
    classification: ClassificationSection | None = None  # task "classification": input rules, calibration
    promptable: dict[str, Any] | None = None  # task "promptable": crop size, prompt encoding (medannot.inference.promptable)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    sha256: str | None = None

    _dims = field_validator("spatial_dims")(check_spatial_dims)

    @model_validator(mode="after")
    def _consistent(self) -> BundleSpec:
        check_label_keys(self.labels)
        if len(self.inference.patch_size) != self.spatial_dims:
            raise ValueError(f"inference.patch_size has {len(self.inference.patch_size)} values for spatial_dims={self.spatial_dims}")
        check_task_sections(self, self.task, self.spatial_dims, self.network)
        return self


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@dataclass
class Bundle:
    """A trained model: its description (``spec``), its weights and where it lives.

    Args:
        spec: The validated ``bundle.json`` content.
        state_dict: Weights in memory (float32). If None they are read from ``path/weights.pt``.
        path: The bundle folder, if it was loaded from or saved to disk.
    """

    spec: BundleSpec
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    path: Path | None = None

    # -- convenient read-only views of the spec ---------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def task(self) -> Task:
        return self.spec.task

    @property
    def spatial_dims(self) -> int:
        return self.spec.spatial_dims

    @property
    def in_channels(self) -> int:
        return self.spec.in_channels

    @property
    def network_spec(self) -> NetworkSpec:
        """The registry entry of the bundle's network (it must serve the bundle's task).

        Raises:
            ModelError: Unknown network, or one registered for another task.
        """
        try:
            return get_network_spec(self.spec.network.name, self.spec.task)
        except ModelError as exc:
            raise ModelError(f"{exc.reason}; fix network.name in bundle.json", self.path / BUNDLE_JSON if self.path else None) from None

    @property
    def out_channels(self) -> int:
        """Network output channels: one per label, or one per object class when the network has no background output."""
        return self.network_spec.output_channels(len(self.spec.labels))

    @property
    def labels(self) -> dict[int, str]:
        """Label value -> name (0 is background)."""
        return {int(k): v.name for k, v in sorted(self.spec.labels.items(), key=lambda kv: int(kv[0]))}

    @property
    def colors(self) -> dict[int, tuple[int, int, int]]:
        """Label value -> RGB colour (0-255); labels without one take :func:`medannot.data.palette.default_color`."""
        return {int(k): (v.color if v.color is not None else default_color(int(k))) for k, v in self.spec.labels.items()}

    @property
    def card_path(self) -> Path | None:
        """The model card, if the bundle lives in a folder that has one."""
        if self.path is None:
            return None
        p = self.path / MODEL_CARD
        return p if p.exists() else None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None, path: Path | None = None) -> Bundle:
        """Validate a ``bundle.json``-like dict.

        Raises:
            ModelError: Naming the offending field(s).
        """
        try:
            spec = BundleSpec.model_validate(data)
        except ValidationError as exc:
            where = path / BUNDLE_JSON if path is not None else None
            raise ModelError(f"invalid bundle description: {_format_validation(exc)}; fix bundle.json", where) from None
        return cls(spec=spec, state_dict=state_dict, path=path)

    @classmethod
    def load(cls, path_or_name: str | Path) -> Bundle:
        """Load a bundle folder, or a bundled model by name.

        Args:
            path_or_name: A folder holding ``bundle.json`` and ``weights.pt``, or the
                name of a model in ``medannot/bundled/`` (see :func:`list_bundles`).

        Returns:
            The bundle, its weights verified against the stored sha256 (read lazily
            by :meth:`build_network`).

        Raises:
            ModelError: Unknown name, missing or corrupt ``bundle.json`` / ``weights.pt``,
                or a weights checksum mismatch.
        """
        folder = _resolve(path_or_name)
        json_path = folder / BUNDLE_JSON
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError("bundle.json is missing; a bundle folder needs bundle.json, weights.pt and MODEL_CARD.md", json_path) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"bundle.json is unreadable or not valid JSON ({exc}); restore it from the original bundle", json_path) from None
        if not isinstance(data, dict):
            raise ModelError(f"bundle.json must hold a JSON object, got {type(data).__name__}", json_path)
        bundle = cls.from_dict(data, path=folder)
        weights = folder / WEIGHTS
        if not weights.is_file():
            raise ModelError("weights.pt is missing; copy the complete bundle folder", weights)
        return bundle

    def read_weights(self) -> dict[str, torch.Tensor]:
        """The weights (float32 state_dict): in memory, or read from ``weights.pt`` and checked against the stored sha256.

        Raises:
            ModelError: No weights anywhere, unreadable or corrupt ``weights.pt``, or a checksum mismatch.
        """
        if self.state_dict is not None:
            return self.state_dict
        if self.path is None:
            raise ModelError(f"bundle {self.name!r} has neither in-memory weights nor a folder; train or load it first")
        weights = self.path / WEIGHTS
        try:
            raw = weights.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read weights ({exc.strerror or exc}); copy the complete bundle folder", weights) from None
        digest = _sha256(raw)
        if self.spec.sha256 is not None and digest != self.spec.sha256:
            raise ModelError(
                f"weights.pt checksum mismatch: bundle.json expects sha256 {self.spec.sha256[:12]}..., file has {digest[:12]}...; "
                "the file is corrupt or from another model, copy the bundle again",
                weights,
            )
        try:
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt archives
            raise ModelError(f"weights.pt is not a readable PyTorch state_dict ({type(exc).__name__}); copy the bundle again", weights) from None
        if not isinstance(state, dict):
            raise ModelError(f"weights.pt must hold a state_dict, got {type(state).__name__}", weights)
        return {k: (v.float() if torch.is_floating_point(v) else v) for k, v in state.items()}

    def build_network(self) -> torch.nn.Module:
        """Create the network, load the weights (float32) and put it in eval mode on the CPU.

        Raises:
            ModelError: If the weights do not fit the network described in ``bundle.json``.
        """
        spec = self.network_spec
        net = create_network(spec.name, self.spatial_dims, self.in_channels, self.out_channels, **self.spec.network.params)
        state = self.read_weights()
        head = state.get(f"{spec.head}.weight") if spec.head else None
        if head is not None and int(head.shape[0]) != self.out_channels:
            raise ModelError(f"the label map in bundle.json lists {self.out_channels} classes but the weights have "
                             f"{int(head.shape[0])} outputs; restore the bundle's own label map", self.path)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ModelError(f"weights do not fit network {self.spec.network.name!r} with the bundle's params: {first}", self.path) from None
        return net.eval().cpu()

    # -- output ---------------------------------------------------------------------------------
    def save(self, folder: str | Path, card: str | None = None, half: bool = False) -> Path:
        """Write ``weights.pt``, ``bundle.json`` (with the weights' sha256) and optionally ``MODEL_CARD.md``.

        Each file is written atomically (temporary file + rename).

        Args:
            folder: Destination bundle folder (created if missing).
            card: Model card text (Markdown); if None an existing card is left as is.
            half: Store floating-point weights as float16 (about half the size).

        Returns:
            The folder.

        Raises:
            OutputError: If a file cannot be written.
        """
        from medannot.io.atomic import atomic_write_bytes, atomic_write_text

        out = Path(folder)
        state = self.read_weights()
        to_save = {k: (v.detach().cpu().half() if half and torch.is_floating_point(v) else v.detach().cpu()) for k, v in state.items()}
        buf = io.BytesIO()
        torch.save(to_save, buf)
        raw = buf.getvalue()
        atomic_write_bytes(out / WEIGHTS, raw)
        self.spec = self.spec.model_copy(update={"sha256": _sha256(raw)})
        atomic_write_text(out / BUNDLE_JSON, json.dumps(self.to_dict(), indent=2) + "\n")
        if card is not None:
            atomic_write_text(out / MODEL_CARD, card)
        self.state_dict = {k: (v.float() if torch.is_floating_point(v) else v) for k, v in to_save.items()}
        self.path = out
        return out

    def to_dict(self) -> dict[str, Any]:
        """The ``bundle.json`` content as a JSON-ready dict."""
        return self.spec.model_dump(mode="json")


def _resolve(path_or_name: str | Path) -> Path:
    candidate = Path(path_or_name)
    if candidate.is_dir():
        return candidate
    name = str(path_or_name)
    bundled = bundled_root() / name
    if "/" not in name and "\\" not in name and (bundled / BUNDLE_JSON).is_file():
        return bundled
    names = ", ".join(b.name for b in list_bundles()) or "none"
    raise ModelError(f"unknown model {name!r}: not a bundled model name (bundled: {names}) and not a folder; pass a bundle folder path or one of the bundled names")


def list_bundles() -> list[Bundle]:
    """The bundles shipped in ``medannot/bundled/`` (folders with a valid ``bundle.json``), sorted by name.

    Invalid folders are skipped, and so are hidden ones (``.NAME.tmp-*``: the staging folder a killed training run
    leaves behind). Each bundle exposes ``name``, ``version``, ``task``, ``labels`` and ``card_path``; weights are
    only read by ``build_network``.
    """
    root = bundled_root()
    out = []
    if root.is_dir():
        for sub in sorted(root.iterdir()):
            if not sub.name.startswith(".") and (sub / BUNDLE_JSON).is_file():
                try:
                    out.append(Bundle.load(sub))
                except ModelError:
                    continue
    return out
