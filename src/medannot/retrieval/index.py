"""A similar-case index on disk, built from a folder, and exact cosine search over it.

An index folder holds:

- ``features.npy``: float32 matrix ``(N, D)``, one L2-normalised row per case (:mod:`medannot.retrieval.features`);
- ``cases.json``: ``{"version", "features": extractor description, "cases": [{"id", "name", "path", "label",
  "group", "thumbnail"}]}`` (row ``i`` of the matrix is ``cases[i]``);
- ``thumbs/<id>.png``: a 128-pixel grey thumbnail of each case (a volume's middle slice along the last axis).

``label`` is the class folder in a folder-per-class layout (``FOLDER/<class>/<images>``), else "";
``group`` is the source a case came from (the part of its name before ``__``, else the name), so an
evaluation can leave out neighbours from the same source. The folder is assembled under a temporary name and
renamed into place. Search is exact: one matrix-vector product (``features @ q``) and a partial sort.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medannot.errors import InputError, MedannotError
from medannot.io.atomic import atomic_folder

__all__ = ["Index", "build_index", "load_index", "precision_at_k", "search"]

FEATURES = "features.npy"
CASES = "cases.json"
INDEX_VERSION = 1


@dataclass
class Index:
    """An index in memory: features ``(N, D)`` float32, case records, the extractor description and its folder."""

    features: np.ndarray
    cases: list[dict[str, Any]]
    info: dict[str, Any]
    folder: Path | None = None

    def __len__(self) -> int:
        return len(self.cases)


def search(index: Index, query: np.ndarray, k: int = 10, exclude: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The ``k`` rows most similar to ``query`` by cosine similarity (rows and query are unit vectors).

    Args:
        index: The index.
        query: ``(D,)`` float32 unit vector.
        k: Number of neighbours (at most N).
        exclude: Boolean mask ``(N,)`` of rows not to return.

    Returns:
        ``[(row, score), ...]`` best first; ties broken by the lower row number.
    """
    if query.shape != (index.features.shape[1],):
        raise InputError(f"query has {query.shape} features; the index has {index.features.shape[1]} per case (built with other settings?)")
    scores = index.features @ np.asarray(query, np.float32)
    if exclude is not None:
        scores = np.where(exclude, -np.inf, scores)
    n = int(np.isfinite(scores).sum())
    k = max(0, min(int(k), n))
    if k == 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = sorted(top.tolist(), key=lambda i: (-float(scores[i]), i))[:k]
    return [(i, float(scores[i])) for i in order]


def _group(name: str) -> str:
    return name.split("__")[0] if "__" in name else name


def _layout(folder: Path) -> list[tuple[str, Path]]:
    """``[(label, path)]``: class sub-folders when the folder holds no images itself, else the folder unlabelled."""
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if subdirs and not files:
        return [(d.name, d) for d in subdirs]
    return [("", folder)]


def _thumbnail(image: Any, path: Path, size: int = 128) -> None:
    from PIL import Image as PILImage

    from medannot.annotations.overlay import display_grey
    from medannot.io.atomic import atomic_path

    a = np.asarray(image.array, np.float32)
    a = a[:3].mean(axis=0) if image.channels in (3, 4) else a[0]
    if a.ndim == 3:
        a = a[..., a.shape[-1] // 2]
    pic = PILImage.fromarray(display_grey(a))
    pic.thumbnail((size, size))
    with atomic_path(path) as tmp:
        pic.save(tmp, format="PNG")


def _annotation_for(annotations: Path | None, name: str) -> dict[str, Any] | None:
    if annotations is None:
        return None
    p = annotations / name / "annotation.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"annotation.json is unreadable ({exc})", p) from None


def build_index(folder: str | Path, out: str | Path, model: str | None = "modality", weights: dict[str, float] | None = None,
                annotations: str | Path | None = None, on_case: Callable[[str, str | None], None] | None = None) -> Index:
    """Index every image under ``folder`` (see :func:`medannot.io.discover_inputs`) into the index folder ``out``.

    Args:
        folder: Images, a folder-per-class layout, DICOM series folders...
        out: Index folder to write (replaced atomically if it exists).
        model: Classification bundle for the embedding block (None: classical features only).
        weights: Block weights (default :data:`medannot.retrieval.features.DEFAULT_WEIGHTS`).
        annotations: A ``medannot annotate --out`` folder: ``annotations/<case>/annotation.json`` gives the text block.
        on_case: Called with ``(case id, error or None)`` after each input (progress display).

    Returns:
        The index.

    Raises:
        InputError: Nothing readable under ``folder``. OutputError: the index cannot be written.
    """
    from medannot.io import discover_inputs
    from medannot.retrieval.features import DEFAULT_WEIGHTS, FeatureExtractor

    src = Path(folder)
    if not src.is_dir():
        raise InputError("index needs a folder of images", src)
    ext = FeatureExtractor(model=model, weights=dict(weights or DEFAULT_WEIGHTS))
    dest = Path(out)
    rows: list[np.ndarray] = []
    cases: list[dict[str, Any]] = []
    ann_root = Path(annotations) if annotations is not None else None
    with atomic_folder(dest, "index") as staging:
        (staging / "thumbs").mkdir()
        for label, sub in _layout(src):
            for item in discover_inputs(sub):
                cid = f"{label}/{item.name}" if label else item.name
                try:
                    image = item.load().image
                    vec = ext.vector(image, _annotation_for(ann_root, item.name))
                    thumb = f"thumbs/{len(cases):06d}.png"
                    _thumbnail(image, staging / thumb)
                except MedannotError as exc:
                    if on_case is not None:
                        on_case(cid, str(exc))
                    continue
                rows.append(vec)
                path = item.paths[0] if item.paths else sub
                cases.append({"id": cid, "name": item.name, "path": str(path), "label": label, "group": f"{label}/{_group(item.name)}",
                              "thumbnail": thumb})
                if on_case is not None:
                    on_case(cid, None)
        if not cases:
            raise InputError("no readable image to index", src)
        feats = np.stack(rows).astype(np.float32)
        np.save(staging / FEATURES, feats)
        info = {"version": INDEX_VERSION, "features": ext.describe(), "source": str(src)}
        (staging / CASES).write_text(json.dumps({**info, "cases": cases}, indent=1))
    return Index(feats, cases, info, dest)


def load_index(folder: str | Path) -> Index:
    """Read an index folder.

    Raises:
        InputError: Missing or inconsistent files (named).
    """
    p = Path(folder)
    try:
        meta = json.loads((p / CASES).read_text(encoding="utf-8"))
        feats = np.load(p / FEATURES, allow_pickle=False)
    except FileNotFoundError as exc:
        raise InputError(f"not an index folder: {Path(exc.filename).name} is missing; build one with `medannot index FOLDER --out INDEX`", p) from None
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise InputError(f"the index is unreadable ({exc}); build it again", p) from None
    cases = meta.pop("cases", [])
    if feats.ndim != 2 or feats.shape[0] != len(cases):
        raise InputError(f"features.npy has shape {feats.shape} but cases.json lists {len(cases)} cases; build the index again", p)
    return Index(feats.astype(np.float32, copy=False), cases, meta, p)


def query_extractor(index: Index) -> Any:
    """The :class:`FeatureExtractor` with the settings an index was built with."""
    from medannot.retrieval.features import FeatureExtractor

    f = index.info.get("features", {})
    model = (f.get("model") or {}).get("name")
    return FeatureExtractor(model=model, weights=dict(f.get("weights", {})))


def precision_at_k(index: Index, k: int = 5, exclude_same_group: bool = True, queries: Sequence[int] | None = None) -> dict[str, Any]:
    """Precision at ``k`` of the labelled cases of an index, each used as a query against all the others.

    A neighbour is relevant when it has the query's label. The query itself is never counted; with
    ``exclude_same_group`` neither are cases from its source group (slices of the same volume, crops of the same
    picture), which would make retrieval look easy. Queries with fewer than ``k`` candidates use what there is.
    ``chance`` is what random neighbours would score: per query, the fraction of its candidates that are relevant,
    averaged like the precision.

    Args:
        index: The index.
        k: Neighbours per query (>= 1).
        exclude_same_group: Leave out the query's own source group.
        queries: Rows used as queries (None = every labelled row); all rows stay candidates.

    Returns:
        ``{"k", "queries", "precision_at_k" (mean over queries), "chance", "per_label": {label: mean},
        "exclude_same_group"}``; ``precision_at_k`` and ``chance`` are None when no query is labelled.
    """
    labels = np.array([c.get("label", "") for c in index.cases])
    groups = np.array([c.get("group", c["id"]) for c in index.cases])
    rows = np.flatnonzero(labels != "") if queries is None else np.array([q for q in queries if labels[q] != ""], dtype=int)
    per: dict[str, list[float]] = {}
    chance: list[float] = []
    for i in rows:
        exclude = (groups == groups[i]) if exclude_same_group else np.zeros(len(labels), bool)
        exclude[i] = True
        exclude |= labels == ""
        hits = search(index, index.features[i], k, exclude=exclude)
        if hits:
            per.setdefault(str(labels[i]), []).append(float(np.mean([labels[j] == labels[i] for j, _ in hits])))
            chance.append(float(np.mean(labels[~exclude] == labels[i])))
    all_p = [v for vs in per.values() for v in vs]
    return {
        "k": int(k), "queries": len(all_p), "exclude_same_group": exclude_same_group,
        "precision_at_k": float(np.mean(all_p)) if all_p else None,
        "chance": float(np.mean(chance)) if chance else None,
        "per_label": {lab: float(np.mean(v)) for lab, v in sorted(per.items())},
    }
