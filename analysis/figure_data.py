"""The numbers behind every figure, no plotting (docs/PAPER_NOTES.md, "Figures").

All functions take numpy arrays / plain dicts (as returned by rhead_stores) and return numpy arrays /
dicts, so they can be tested on hand-made inputs.
"""

import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

# Figure 3 / Figure 5 bins on the per-head mean retrieval score: == 0, (0, 0.1], (0.1, 0.5], > 0.5.
BIN_EDGES = (0.1, 0.5)
BIN_LABELS = ("= 0", "(0, 0.1]", "(0.1, 0.5]", "> 0.5")
RETRIEVAL_THRESHOLD = 0.1

# NIAH heatmap colours of the official viz notebook (docs/PAPER_NOTES.md, "Figures").
NIAH_COLOURS = ("#F0496E", "#EBB839", "#0CD79F")


# --------------------------------------------------------------------------------- Fig 3 / Fig 5


def bin_classes(mean: np.ndarray) -> np.ndarray:
    """Class 0..3 of every head: 0 for == 0, 1 for (0, 0.1], 2 for (0.1, 0.5], 3 for > 0.5.

    Edges belong to the lower bin (0.1 -> 1, 0.5 -> 2), as in the paper's shipped-file check.
    Negative scores (impossible for retrieval scores) fall in class 0 with the zeros.
    """
    m = np.asarray(mean, dtype=np.float64)
    if np.isnan(m).any():
        raise ValueError("bin_classes: NaN in mean scores")
    cls = np.zeros(m.shape, dtype=np.int64)
    cls[m > 0] = 1
    cls[m > BIN_EDGES[0]] = 2
    cls[m > BIN_EDGES[1]] = 3
    return cls


def bin_counts(mean: np.ndarray) -> np.ndarray:
    """int64 [4]: number of heads in each Figure-3 bin."""
    return np.bincount(bin_classes(mean).ravel(), minlength=4).astype(np.int64)


def bin_percentages(counts: Sequence[int]) -> np.ndarray:
    """float64 [4]: counts as percentages of all heads (sum 100)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        raise ValueError("bin_percentages: no heads")
    return 100.0 * c / total


def retrieval_fraction(mean: np.ndarray, threshold: float = RETRIEVAL_THRESHOLD) -> Tuple[int, float]:
    """(number, percentage) of heads with mean score > threshold."""
    m = np.asarray(mean)
    n = int((m > threshold).sum())
    return n, 100.0 * n / m.size


# ----------------------------------------------------------------------------------------- Fig 4


def ranking(mean: np.ndarray) -> np.ndarray:
    """int64 [layer*head, 2]: (layer, head) by mean descending, ties by (layer, head) ascending.

    The same order as score.h5's /ranking (docs/STORE.md)."""
    m = np.asarray(mean, dtype=np.float64)
    n_layer, n_head = m.shape
    flat = m.ravel()
    idx = np.arange(flat.size)
    # lexsort: last key is primary. Flat index order == (layer, head) order.
    order = np.lexsort((idx, -flat))
    return np.stack([order // n_head, order % n_head], axis=1).astype(np.int64)


def frequency_series(mean: np.ndarray, frequency: np.ndarray, top_n: Optional[int] = 100,
                     always_on_threshold: float = 1.0) -> Dict[str, np.ndarray]:
    """Figure 4 data: the top_n heads by retrieval score (all heads if top_n is None or <= 0).

    Returns dict with heads (int [n, 2]), score, frequency (float [n]), always_on (bool [n]: frequency
    >= always_on_threshold, i.e. == 1 by default), and always_on_total (heads over the whole model)."""
    m = np.asarray(mean, dtype=np.float64)
    fr = np.asarray(frequency, dtype=np.float64)
    if m.shape != fr.shape:
        raise ValueError(f"frequency_series: mean {m.shape} vs frequency {fr.shape}")
    order = ranking(m)
    if top_n is not None and top_n > 0:
        order = order[:top_n]
    score = m[order[:, 0], order[:, 1]]
    freq = fr[order[:, 0], order[:, 1]]
    return {"heads": order, "score": score, "frequency": freq,
            "always_on": freq >= always_on_threshold,
            "always_on_total": int((fr >= always_on_threshold).sum())}


def frequency_from_tests(test_scores: np.ndarray) -> np.ndarray:
    """Activation frequency from per-test scores [test, layer, head]: fraction of tests with score > 0."""
    t = np.asarray(test_scores, dtype=np.float64)
    if t.shape[0] == 0:
        return np.zeros(t.shape[1:])
    return (t > 0).mean(axis=0)


def head_label(layer: int, head: int) -> str:
    """The official "layer-head" key, 0-indexed (head_score JSON)."""
    return f"{int(layer)}-{int(head)}"


# ----------------------------------------------------------------------------------------- Fig 6


def select_matrix(models: Sequence[str], matrix: np.ndarray, order: Optional[Sequence[str]] = None
                  ) -> Tuple[List[str], np.ndarray]:
    """Reorder / subset a [model, model] matrix to ``order`` (names absent from models are dropped)."""
    models = list(models)
    mat = np.asarray(matrix)
    if mat.shape != (len(models), len(models)):
        raise ValueError(f"select_matrix: matrix {mat.shape} for {len(models)} models")
    if order is None:
        return models, mat.copy()
    keep = [m for m in order if m in models]
    idx = [models.index(m) for m in keep]
    return keep, mat[np.ix_(idx, idx)]


def matrix_from_pairs(models: Sequence[str], pairs: Dict[Tuple[str, str], float],
                      diagonal: float = 1.0) -> np.ndarray:
    """Symmetric [model, model] matrix from {(a, b): value}; NaN where no pair gives a value."""
    models = list(models)
    n = len(models)
    out = np.full((n, n), np.nan)
    np.fill_diagonal(out, diagonal)
    for (a, b), v in pairs.items():
        if a not in models or b not in models:
            raise ValueError(f"matrix_from_pairs: pair ({a}, {b}) names a model not in {models}")
        i, j = models.index(a), models.index(b)
        out[i, j] = out[j, i] = float(v)
    return out


def pearson_flat(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two same-shape [layer, head] maps flattened in (layer, head) order."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"pearson_flat: shapes {np.shape(a)} and {np.shape(b)} differ")
    x = x - x.mean()
    y = y - y.mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else float("nan")


def pearson_matrix(maps: Dict[str, np.ndarray]) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """Pearson over every pair of same-shape maps; (models, matrix, mismatch). Different shapes: NaN and
    mismatch = True (the store's own value for those cells follows its shape_policy)."""
    names = list(maps)
    n = len(names)
    mat = np.full((n, n), np.nan)
    mismatch = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            if maps[names[i]].shape != maps[names[j]].shape:
                mismatch[i, j] = True
            else:
                mat[i, j] = pearson_flat(maps[names[i]], maps[names[j]])
    return names, mat, mismatch


def off_diagonal_summary(matrix: np.ndarray, mismatch: Optional[np.ndarray] = None) -> Dict[str, float]:
    """min / max / mean over the off-diagonal cells (same-shape cells only when mismatch is given)."""
    m = np.asarray(matrix, dtype=np.float64)
    mask = ~np.eye(m.shape[0], dtype=bool)
    if mismatch is not None:
        mask &= ~np.asarray(mismatch, dtype=bool)
    vals = m[mask]
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return {"n": 0, "min": float("nan"), "max": float("nan"), "mean": float("nan")}
    return {"n": int(vals.size), "min": float(vals.min()), "max": float(vals.max()),
            "mean": float(vals.mean())}


# ------------------------------------------------------------------------------------- Fig 5 pairs


def heatmap_pairs(models: Sequence[str], named_pairs: Iterable[Tuple[str, str, str]]
                  ) -> List[Tuple[str, str, str]]:
    """Fig 5 panels: [(base, variant, label)] from named pairs whose both models are in ``models``;
    when none qualify, every model alone as (model, "", "")."""
    models = list(models)
    out = [(a, b, label) for a, b, label in named_pairs if a in models and b in models]
    return out if out else [(m, "", "") for m in models]


# -------------------------------------------------------------------------------------- NIAH maps


def niah_pivot(cells: Iterable[Dict[str, object]], model: Optional[str] = None,
               value: str = "rouge1_recall") -> Dict[str, np.ndarray]:
    """Mean ROUGE-1 recall per (depth, context length), as the viz notebook's pivot_table.

    cells: dicts with model, context_length, depth_percent and ``value`` (rouge_stores.read_generate).
    Repeated (depth, length) cells (several needles) are averaged. Returns depths (sorted ascending,
    rows), lengths (sorted ascending, columns), mean (float [depth, length], NaN where no cell), count
    (int [depth, length]) and overall (mean over all cells)."""
    rows = [c for c in cells if model is None or c["model"] == model]
    if not rows:
        raise ValueError(f"niah_pivot: no cells{' for model ' + model if model else ''}")
    depths = np.array(sorted({float(c["depth_percent"]) for c in rows}))
    lengths = np.array(sorted({int(c["context_length"]) for c in rows}))
    di = {d: i for i, d in enumerate(depths)}
    li = {l: j for j, l in enumerate(lengths)}
    total = np.zeros((depths.size, lengths.size))
    count = np.zeros((depths.size, lengths.size), dtype=np.int64)
    for c in rows:
        i, j = di[float(c["depth_percent"])], li[int(c["context_length"])]
        total[i, j] += float(c[value])
        count[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    overall = float(np.mean([float(c[value]) for c in rows]))
    return {"depths": depths, "lengths": lengths, "mean": mean, "count": count, "overall": overall}


def models_of_cells(cells: Iterable[Dict[str, object]]) -> List[str]:
    """Model names in first-seen order."""
    seen = []
    for c in cells:
        if c["model"] not in seen:
            seen.append(c["model"])
    return seen
