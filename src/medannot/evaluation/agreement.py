"""Agreement between annotators (readers): pairwise metrics, kappa and majority vote.

Readers' label maps are plain integer numpy arrays of one shape (2D or 3D; 0 is
background) on the same grid; spacing is in mm, one value per array axis.

- :func:`pairwise_agreement` / :func:`agreement_summary`: Dice, HD95 (both
  definitions), ASSD per reader pair and label, from
  :func:`medannot.evaluation.metrics.segmentation_metrics` (same empty rules:
  finite, flagged, never dropped from a summary).
- :func:`cohen_kappa` (two raters, optional linear/quadratic weights) and
  :func:`fleiss_kappa` (any number of raters) for image-level labels or voxels.
- :func:`majority_vote`: per-voxel most frequent label, with an explicit tie rule.
- STAPLE consensus lives in :mod:`medannot.evaluation.staple`.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medannot.errors import InputError
from medannot.evaluation.metrics import Empty, segmentation_metrics
from medannot.evaluation.record import Record

__all__ = [
    "AgreementPair",
    "AgreementLabelSummary",
    "Kappa",
    "Tie",
    "agreement_summary",
    "cohen_kappa",
    "fleiss_kappa",
    "majority_vote",
    "pairwise_agreement",
]


AGREEMENT_FIELDS = ("reader_a", "reader_b", "label", "label_name", "dice", "iou", "hd95", "hd95_pooled", "assd", "surface_dice", "empty")


@dataclass(frozen=True, eq=False, repr=False)
class AgreementPair(Record):
    """Agreement of two readers on one label (see :func:`pairwise_agreement`; ratios 0..1, distances in mm)."""

    reader_a: str
    reader_b: str
    label: int
    label_name: str
    dice: float
    iou: float
    hd95: float
    hd95_pooled: float
    assd: float
    surface_dice: float
    empty: Empty


@dataclass(frozen=True, eq=False, repr=False)
class AgreementLabelSummary(Record):
    """Agreement over all reader pairs of one label (see :func:`agreement_summary`)."""

    label: int
    label_name: str
    n_pairs: int
    n_empty: int
    mean_dice: float
    min_dice: float
    mean_hd95: float
    max_hd95: float
    mean_hd95_pooled: float
    mean_assd: float
    mean_surface_dice: float
    worst_pair: str


# --------------------------------------------------------------------------- input checks


def _label_maps(masks: Sequence[Any], what: str, min_count: int = 2) -> list[np.ndarray]:
    arrays = [np.asarray(m) for m in masks]
    if len(arrays) < min_count:
        raise InputError(f"{what} needs at least {min_count} readers' masks, got {len(arrays)}; pass one mask per reader")
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.ndim not in (2, 3):
            raise InputError(f"{what}: mask {i} must be a 2D or 3D array, got shape {a.shape}; drop channel axes first")
        if a.shape != shape:
            raise InputError(f"{what}: all masks must have the same shape, got {shape} and {a.shape} (mask {i}); resample them onto one grid")
        if not (a.dtype == bool or np.issubdtype(a.dtype, np.integer)):
            raise InputError(f"{what}: masks must be integer or boolean label maps, got dtype {a.dtype} (mask {i}); round or threshold them first")
    return arrays


# --------------------------------------------------------------------------- pairwise metrics


def pairwise_agreement(
    masks: Mapping[str, Any],
    spacing: Sequence[float],
    labels: Mapping[int, str] | None = None,
    tolerance_mm: float = 1.0,
) -> list[AgreementPair]:
    """Metrics between every pair of readers, per label.

    Each unordered pair (in the mapping's order, ``reader_a`` before ``reader_b``)
    is compared label by label with :func:`~medannot.evaluation.metrics.segmentation_metrics`
    (``reader_a`` plays the prediction, ``reader_b`` the truth; every reported
    metric is symmetric in the two).

    Args:
        masks: Reader name -> label map (2D or 3D integer array, 0 = background), one shape.
        spacing: Voxel spacing in mm, one value per array axis.
        labels: Label value -> name. ``None``: every non-zero value found in any mask,
            named by its value. Background (0) is never compared.
        tolerance_mm: Tolerance of the surface Dice in mm.

    Returns:
        One :class:`AgreementPair` per (pair, label) with ``reader_a, reader_b, label, label_name, dice,
        iou`` (0..1), ``hd95, hd95_pooled, assd`` (mm), ``surface_dice`` (0..1) and
        ``empty``. Empty rule (from ``segmentation_metrics``): a label neither
        reader drew gives dice 1.0 and distances 0.0 mm with ``empty="both"``;
        a label only one reader drew gives dice 0.0 and the finite worst-case
        distance with ``empty="truth"`` (reader_b empty) or ``"prediction"``
        (reader_a empty). Such rows are kept, never dropped.

    Raises:
        InputError: Fewer than two readers, shape mismatch, non-integer maps,
            or a label value present in a mask but missing from ``labels``.
    """
    names = list(masks)
    arrays = _label_maps([masks[n] for n in names], "pairwise agreement")
    present = sorted(set().union(*(np.unique(a).tolist() for a in arrays)) - {0})
    if labels is None:
        label_map = {int(v): str(v) for v in present}
    else:
        label_map = {int(k): str(v) for k, v in labels.items() if int(k) != 0}
        unknown = sorted(set(int(v) for v in present) - set(label_map))
        if unknown:
            raise InputError(f"label values {unknown} occur in the readers' masks but not in the label map {sorted(label_map)}; add them to --labels")
    rows: list[AgreementPair] = []
    for (na, a), (nb, b) in itertools.combinations(zip(names, arrays, strict=True), 2):
        for value, name in label_map.items():
            m = segmentation_metrics(a == value, b == value, spacing, tolerance_mm=tolerance_mm)
            rows.append(AgreementPair(reader_a=na, reader_b=nb, label=value, label_name=name, dice=m.dice, iou=m.iou, hd95=m.hd95,
                                      hd95_pooled=m.hd95_pooled, assd=m.assd, surface_dice=m.surface_dice, empty=m.empty))
    return rows


def agreement_summary(rows: Sequence[Mapping[str, Any]]) -> list[AgreementLabelSummary]:
    """Per-label summary of :func:`pairwise_agreement` rows.

    Every row counts, including pairs with an empty mask (their flagged finite
    values, see :func:`pairwise_agreement`), so a reader who missed a structure
    lowers the mean Dice instead of disappearing from it.

    Returns:
        One :class:`AgreementLabelSummary` per label: ``label, label_name, n_pairs, n_empty`` (pairs where
        at least one reader drew nothing), ``mean_dice, min_dice`` (0..1),
        ``mean_hd95, max_hd95, mean_hd95_pooled, mean_assd`` (mm),
        ``mean_surface_dice`` (0..1), and ``worst_pair`` ("a|b", lowest Dice).
    """
    by_label: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_label.setdefault(int(row["label"]), []).append(row)
    out: list[AgreementLabelSummary] = []
    for value, group in by_label.items():
        dice = np.array([r["dice"] for r in group], float)
        worst = group[int(np.argmin(dice))]
        out.append(
            AgreementLabelSummary(
                label=value,
                label_name=str(group[0]["label_name"]),
                n_pairs=len(group),
                n_empty=sum(1 for r in group if r["empty"]),
                mean_dice=float(dice.mean()),
                min_dice=float(dice.min()),
                mean_hd95=float(np.mean([r["hd95"] for r in group])),
                max_hd95=float(np.max([r["hd95"] for r in group])),
                mean_hd95_pooled=float(np.mean([r["hd95_pooled"] for r in group])),
                mean_assd=float(np.mean([r["assd"] for r in group])),
                mean_surface_dice=float(np.mean([r["surface_dice"] for r in group])),
                worst_pair=f"{worst['reader_a']}|{worst['reader_b']}",
            )
        )
    return out


# --------------------------------------------------------------------------- kappa


@dataclass(frozen=True)
class Kappa:
    """A kappa statistic with its parts.

    Attributes:
        kappa: ``(p_o - p_e) / (1 - p_e)`` (weighted: ``1 - sum(w*O) / sum(w*E)``);
            1.0 for the degenerate single-category case (see ``degenerate``).
        observed: Observed agreement ``p_o`` (unweighted) or ``1 - sum(w*O)/n``-style
            weighted observed agreement (0..1).
        expected: Chance agreement ``p_e`` (0..1).
        n_items: Number of rated items (images, or voxels).
        categories: The categories, sorted; weights use their index in this list.
        degenerate: True when every rating is the same single category: chance
            agreement is then 1, kappa is 0/0 (NaN, as sklearn and statsmodels
            return) and medannot reports 1.0 (perfect agreement) with this flag,
            as it does for two empty masks (Dice 1.0, ``empty="both"``).
        reason: Why the value is degenerate ("" otherwise).
    """

    kappa: float
    observed: float
    expected: float
    n_items: int
    categories: tuple[int, ...]
    degenerate: bool = False
    reason: str = ""

    def __float__(self) -> float:
        return self.kappa


class KappaWeights(enum.StrEnum):
    """Disagreement weights of Cohen's kappa (index distance between categories)."""

    NONE = "none"
    LINEAR = "linear"
    QUADRATIC = "quadratic"


def _categories(values: np.ndarray, labels: Sequence[int] | None, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted categories and each value's index among them."""
    found = np.unique(values)
    if labels is None:
        cats = found
    else:
        cats = np.unique(np.asarray(list(labels)))
        missing = np.setdiff1d(found, cats)
        if missing.size:
            raise InputError(f"{what}: values {missing.tolist()} are not among labels {cats.tolist()}; add them to labels")
    return cats, np.searchsorted(cats, values)


def _ratings(array: Any, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.size == 0:
        raise InputError(f"{what}: no ratings given; pass at least one rated item")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{what}: ratings must be integer category labels, got dtype {arr.dtype}; map categories to integers first")
    return arr.astype(np.int64, copy=False)


def cohen_kappa(a: Any, b: Any, labels: Sequence[int] | None = None, weights: str | None = None) -> Kappa:
    """Cohen's kappa between two raters, unweighted or with linear/quadratic weights.

    Items are the elements of ``a`` and ``b`` (image-level labels, or the voxels
    of two label maps: arrays of any shape are flattened). With ``O`` the
    confusion matrix of counts (rows rater a, columns rater b, ``n`` items) and
    ``E = outer(row sums, column sums) / n`` the counts expected by chance::

        unweighted: kappa = (p_o - p_e) / (1 - p_e),  p_o = trace(O)/n,  p_e = trace(E)/n
        weighted:   kappa = 1 - sum(w * O) / sum(w * E),
                    w_ij = |i - j| (linear) or (i - j)^2 (quadratic)

    where ``i, j`` are indices in the sorted category list (sklearn's
    ``cohen_kappa_score`` convention; for ordinal scores 0..K-1 index = value).

    Degenerate case: ``p_e = 1`` (weighted: ``sum(w*E) = 0``) happens only when
    both raters use one and the same category for every item; kappa is then
    0/0. sklearn returns NaN (``replace_undefined_by``), medannot returns 1.0
    with ``degenerate=True`` and a reason (:class:`Kappa`).

    Args:
        a: Ratings of rater a (integer categories), any shape.
        b: Ratings of rater b, same shape.
        labels: All categories. ``None``: the values found. Values not in
            ``labels`` raise (sklearn would silently drop those items).
        weights: ``None``/"none", "linear" or "quadratic".

    Returns:
        :class:`Kappa`.

    Raises:
        InputError: Shape mismatch, no items, non-integer ratings, values
            missing from ``labels`` or an unknown weighting.
    """
    x, y = _ratings(a, "cohen_kappa"), _ratings(b, "cohen_kappa")
    if x.shape != y.shape:
        raise InputError(f"cohen_kappa: both raters must rate the same items, got shapes {x.shape} and {y.shape}")
    try:
        w_kind = KappaWeights(weights or "none")
    except ValueError:
        raise InputError(f"cohen_kappa: weights must be one of {[w.value for w in KappaWeights]} or None, got {weights!r}") from None
    cats, idx = _categories(np.concatenate([x.ravel(), y.ravel()]), labels, "cohen_kappa")
    k, n = cats.size, x.size
    ia, ib = idx[:n], idx[n:]
    O = np.bincount(ia * k + ib, minlength=k * k).reshape(k, k).astype(np.float64)
    E = np.outer(O.sum(axis=1), O.sum(axis=0)) / n
    i, j = np.indices((k, k))
    if w_kind is KappaWeights.NONE:
        w = (i != j).astype(np.float64)
    elif w_kind is KappaWeights.LINEAR:
        w = np.abs(i - j).astype(np.float64)
    else:
        w = ((i - j) ** 2).astype(np.float64)
    observed = float(np.trace(O) / n)
    expected = float(np.trace(E) / n)
    disagree_expected = float((w * E).sum())
    if disagree_expected == 0.0:
        return Kappa(1.0, observed, expected, n, tuple(int(c) for c in cats), True, f"both raters gave every item category {int(cats[ia[0]])}: chance agreement is 1, kappa is 0/0")
    kappa = 1.0 - float((w * O).sum()) / disagree_expected
    return Kappa(kappa, observed, expected, n, tuple(int(c) for c in cats))


def fleiss_kappa(ratings: Any, labels: Sequence[int] | None = None) -> Kappa:
    """Fleiss' kappa for any number of raters, each rating every item once.

    With ``n_ij`` the number of the ``m`` raters who put item ``i`` (of ``N``)
    in category ``j``::

        P_i   = (sum_j n_ij^2 - m) / (m (m - 1))       agreement on item i
        P_bar = mean_i P_i                             observed agreement
        p_j   = sum_i n_ij / (N m)                     category proportions
        P_e   = sum_j p_j^2                            chance agreement
        kappa = (P_bar - P_e) / (1 - P_e)

    (statsmodels ``fleiss_kappa(method="fleiss")`` on the counts table.)
    Degenerate case: ``P_e = 1`` exactly when every rating is the same single
    category; kappa is 0/0 (statsmodels returns NaN with a RuntimeWarning);
    medannot returns 1.0 with ``degenerate=True`` (:class:`Kappa`).

    Args:
        ratings: ``(n_items, n_raters)`` integer categories (items may be voxels).
        labels: All categories; ``None``: the values found.

    Raises:
        InputError: Not 2D, fewer than two raters, no items, non-integer
            ratings or values missing from ``labels``.
    """
    r = _ratings(ratings, "fleiss_kappa")
    if r.ndim != 2 or r.shape[1] < 2:
        raise InputError(f"fleiss_kappa: ratings must be (n_items, n_raters) with at least 2 raters, got shape {r.shape}")
    n_items, m = r.shape
    cats, idx = _categories(r.ravel(), labels, "fleiss_kappa")
    k = cats.size
    rows = np.repeat(np.arange(n_items, dtype=np.int64), m)
    table = np.bincount(rows * k + idx, minlength=n_items * k).reshape(n_items, k).astype(np.float64)
    p_i = ((table**2).sum(axis=1) - m) / (m * (m - 1))
    p_bar = float(p_i.mean())
    p_j = table.sum(axis=0) / (n_items * m)
    p_e = float((p_j**2).sum())
    cat_tuple = tuple(int(c) for c in cats)
    if k == 1:
        return Kappa(1.0, p_bar, p_e, n_items, cat_tuple, True, f"every rating is category {cat_tuple[0]}: chance agreement is 1, kappa is 0/0")
    return Kappa((p_bar - p_e) / (1.0 - p_e), p_bar, p_e, n_items, cat_tuple)


# --------------------------------------------------------------------------- majority vote


class Tie(enum.StrEnum):
    """What :func:`majority_vote` does where several labels share the most votes."""

    BACKGROUND = "background"
    LOWEST = "lowest"
    RANDOM_SEEDED = "random-seeded"


def majority_vote(masks: Sequence[Any], tie: str = "background", seed: int = 0) -> np.ndarray:
    """Per-voxel most frequent label among readers' label maps (plurality vote).

    Ties (several labels with the same highest count at a voxel):

    - ``"background"``: the voxel gets 0. Equals SimpleITK's
      ``LabelVotingImageFilter`` with ``SetLabelForUndecidedPixels(0)`` (its
      default undecided value is max label + 1).
    - ``"lowest"``: the smallest tied label (so background wins ties with it).
    - ``"random-seeded"``: one of the tied labels uniformly at random from
      ``numpy.random.default_rng(seed)``; reproducible for a given seed.

    With two readers every disagreement is a tie. Memory: one vote-count array
    (uint8/uint16) per distinct label at a time plus the result.

    Args:
        masks: Readers' label maps (2D or 3D integer arrays, one shape).
        tie: Tie rule, see above.
        seed: Seed of the ``"random-seeded"`` rule.

    Returns:
        Label map of the common shape and the inputs' (promoted) integer dtype.

    Raises:
        InputError: Fewer than two masks, shape mismatch, non-integer maps, unknown tie rule.
    """
    arrays = _label_maps(masks, "majority_vote")
    try:
        rule = Tie(tie)
    except ValueError:
        raise InputError(f"majority_vote: tie must be one of {[t.value for t in Tie]}, got {tie!r}") from None
    dtype = np.result_type(*arrays)
    if dtype == bool:
        dtype = np.dtype(np.uint8)
    count_dtype = np.uint8 if len(arrays) < 256 else np.uint16
    values = np.unique(np.concatenate([np.unique(a) for a in arrays]))
    best_count = np.zeros(arrays[0].shape, count_dtype)
    best = np.zeros(arrays[0].shape, dtype)
    n_tied = np.zeros(arrays[0].shape, count_dtype)
    rng = np.random.default_rng(seed)
    for value in values:  # ascending: a strict '>' keeps the lowest label among ties
        count = np.zeros(arrays[0].shape, count_dtype)
        for a in arrays:
            count += a == value
        more = count > best_count
        best[more] = value
        best_count[more] = count[more]
        n_tied[more] = 1
        same = (count == best_count) & ~more & (count > 0)
        n_tied[same] += 1
        if rule is Tie.RANDOM_SEEDED and same.any():
            # Reservoir sampling: the k-th tied label replaces the choice with probability 1/k.
            where = np.flatnonzero(same)
            take = rng.random(where.size) * n_tied.flat[where] < 1.0
            best.flat[where[take]] = value
    if rule is Tie.BACKGROUND:
        best[n_tied > 1] = 0
    return best
