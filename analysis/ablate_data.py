"""The numbers behind the ablation figures (1, 7, 8, 9, 10; docs/PAPER_NOTES.md, "Masking"), no plotting.

Inputs are plain lists / numpy arrays as rhead_stores.read_ablate returns them: summary rows are
labelled "mode/selection" ("none/none" = unmasked baseline at K = 0, "uniform/top" = the top-K
retrieval heads masked, "uniform/rand<s>" = random draw s of K non-retrieval heads), cells are dicts of
their attributes. Every function is tested on hand-made inputs (tests/analysis/test_ablate_data.py).
"""

import math
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

ERROR_TYPES = ("correct", "incomplete", "wrong_extraction", "hallucination")
TASK_KINDS = ("qa", "cot", "direct")
BASELINE = "none"   # mode and selection of the unmasked rows / cells
N_SINK = 4          # first tokens counted as the attention sink (docs/PAPER_NOTES.md, "Figures")

# Failure-case preference (Figure 9): the paper's two cases are a hallucination (heads on the first
# tokens) and an incomplete retrieval; wrong extraction sits between.
FAILURE_PRIORITY = ("hallucination", "wrong_extraction", "incomplete")


# -------------------------------------------------------------------------------------- row labels


def split_row(label: str) -> Tuple[str, str]:
    """"uniform/rand3" -> ("uniform", "rand3"); a label without '/' is an error."""
    mode, sep, selection = label.partition("/")
    if not sep or not mode or not selection:
        raise ValueError(f"summary row {label!r}: expected 'mode/selection'")
    return mode, selection


def selection_kind(selection: str) -> Tuple[str, Optional[int]]:
    """"none" -> ("none", None); "top" -> ("top", None); "rand<s>" -> ("random", s)."""
    if selection in (BASELINE, "top"):
        return selection, None
    m = re.fullmatch(r"rand(\d+)", selection)
    if not m:
        raise ValueError(f"selection {selection!r}: expected none, top or rand<seed>")
    return "random", int(m.group(1))


def masked_modes(rows: Sequence[str]) -> List[str]:
    """Mask modes of the rows (the baseline's "none" excluded), first-seen order."""
    out = []
    for r in rows:
        mode, _ = split_row(r)
        if mode != BASELINE and mode not in out:
            out.append(mode)
    return out


# ------------------------------------------------------------------------------ score vs K (7, 8, 10)


def _spread(values: Sequence[float]) -> Dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def series_vs_k(rows: Sequence[str], k: Sequence[int], values: Sequence[float]
                ) -> Dict[str, Dict[str, np.ndarray]]:
    """Score vs K per mask mode: {mode: series}, modes in first-seen order.

    series: ks (int, ascending, 0 first when the store has the baseline), top (top-K row's value),
    rand_mean, rand_std (sample std, ddof 1; 0 for one draw), rand_min, rand_max (over the random
    draws of that K), rand_n (draws), all float [K] with NaN where a K has no such row, and baseline
    (the none/none value, NaN without one). The baseline is the K = 0 point of both curves (rand_n 0).
    Rows whose value is NaN (no cells behind them, see with_counts) are left out. Two top rows for one
    (mode, K) are an error."""
    if not (len(rows) == len(k) == len(values)):
        raise ValueError(f"series_vs_k: {len(rows)} rows, {len(k)} K, {len(values)} values")
    keep = [i for i, v in enumerate(values) if not math.isnan(float(v))]
    rows, k, values = [rows[i] for i in keep], [k[i] for i in keep], [values[i] for i in keep]
    baseline = [float(v) for r, v in zip(rows, values) if split_row(r) == (BASELINE, BASELINE)]
    base = float(np.mean(baseline)) if baseline else math.nan
    out = {}
    for mode in masked_modes(rows):
        top: Dict[int, float] = {}
        rand: Dict[int, List[float]] = {}
        for r, kk, v in zip(rows, k, values):
            m, sel = split_row(r)
            if m != mode:
                continue
            kind, _ = selection_kind(sel)
            if kind == "top":
                if int(kk) in top:
                    raise ValueError(f"series_vs_k: two rows {r!r} with K = {int(kk)}")
                top[int(kk)] = float(v)
            elif kind == "random":
                rand.setdefault(int(kk), []).append(float(v))
        ks = sorted(set(top) | set(rand) | ({0} if baseline else set()))
        s = {"ks": np.array(ks, dtype=np.int64), "baseline": base}
        for key in ("top", "rand_mean", "rand_std", "rand_min", "rand_max"):
            s[key] = np.full(len(ks), math.nan)
        s["rand_n"] = np.zeros(len(ks), dtype=np.int64)
        for i, kk in enumerate(ks):
            if kk == 0 and baseline and kk not in top and kk not in rand:
                s["top"][i] = s["rand_mean"][i] = s["rand_min"][i] = s["rand_max"][i] = base
                s["rand_std"][i] = 0.0
                continue
            if kk in top:
                s["top"][i] = top[kk]
            if kk in rand:
                sp = _spread(rand[kk])
                s["rand_mean"][i], s["rand_std"][i] = sp["mean"], sp["std"]
                s["rand_min"][i], s["rand_max"][i], s["rand_n"][i] = sp["min"], sp["max"], sp["n"]
        out[mode] = s
    return out


def with_counts(values: Sequence[float], counts: Sequence[int]) -> np.ndarray:
    """float [row]: the summary values with NaN where no cell stands behind the row (count 0; the stage
    writes 0.0 there, e.g. the NIAH rows of a run with tasks only)."""
    v = np.asarray(values, dtype=np.float64).copy()
    c = np.asarray(counts, dtype=np.int64)
    if v.shape != c.shape:
        raise ValueError(f"with_counts: {v.shape[0]} values, {c.shape[0]} counts")
    v[c == 0] = math.nan
    return v


def band(series: Dict[str, np.ndarray], kind: str = "minmax") -> Tuple[np.ndarray, np.ndarray]:
    """(low, high) of the random curve's band: min..max over draws, or mean -/+ one sample std."""
    if kind == "minmax":
        return series["rand_min"], series["rand_max"]
    if kind == "std":
        return series["rand_mean"] - series["rand_std"], series["rand_mean"] + series["rand_std"]
    raise ValueError(f"band: kind {kind!r}: expected minmax or std")


# -------------------------------------------------------------------------- summaries from the cells


def rows_from_cells(cells: Iterable[Dict[str, object]], value: str) -> Dict[Tuple[str, str, int], Dict]:
    """{(mode, selection, k): {"n": cells, "mean": mean of ``value``}}: the summary recomputed."""
    acc: Dict[Tuple[str, str, int], List[float]] = {}
    for c in cells:
        acc.setdefault((str(c["mode"]), str(c["selection"]), int(c["k"])), []).append(float(c[value]))
    return {key: {"n": len(v), "mean": float(np.mean(v))} for key, v in acc.items()}


def error_counts_from_cells(cells: Iterable[Dict[str, object]], types: Sequence[str] = ERROR_TYPES
                            ) -> Dict[Tuple[str, str, int], np.ndarray]:
    """{(mode, selection, k): int [len(types)]} cells per error type (unknown types are not counted)."""
    out: Dict[Tuple[str, str, int], np.ndarray] = {}
    for c in cells:
        key = (str(c["mode"]), str(c["selection"]), int(c["k"]))
        counts = out.setdefault(key, np.zeros(len(types), dtype=np.int64))
        t = c.get("error_type")
        if t in types:
            counts[list(types).index(t)] += 1
    return out


def compare_rows(rows: Sequence[str], k: Sequence[int], n: Optional[Sequence[int]],
                 values: Sequence[float], recomputed: Dict[Tuple[str, str, int], Dict],
                 tol: float = 1e-6) -> List[str]:
    """Differences between a summary and the same rows recomputed from the cells, one line each
    (empty when they agree): values beyond tol, cell counts (when n is given), rows on one side only."""
    problems = []
    seen = set()
    for i, (r, kk, v) in enumerate(zip(rows, k, values)):
        mode, sel = split_row(r)
        key = (mode, sel, int(kk))
        seen.add(key)
        got = recomputed.get(key)
        if got is None:
            if n is None or int(n[i]) != 0:  # a row of 0 cells without cells is consistent
                problems.append(f"row {r} K={int(kk)}: no cells")
            continue
        if n is not None and int(n[i]) != got["n"]:
            problems.append(f"row {r} K={int(kk)}: summary counts {int(n[i])} cells, the store has {got['n']}")
        if not (abs(float(v) - got["mean"]) <= tol):
            problems.append(f"row {r} K={int(kk)}: summary {float(v):.4f}, cells give {got['mean']:.4f}")
    for key in sorted(set(recomputed) - seen):
        problems.append(f"cells of {key[0]}/{key[1]} K={key[2]} have no summary row")
    return problems


# --------------------------------------------------------------------------------- error types (9)


def error_fractions(rows: Sequence[str], k: Sequence[int], error_counts: np.ndarray
                    ) -> Dict[str, Dict[str, np.ndarray]]:
    """Figure 9 bars per mask mode: {mode: {"ks", "top", "random", "top_n", "random_n"}}.

    top / random: float [K, type] fractions of the cells at that K (rows sum to 1; NaN where no cell);
    the random draws of one K are pooled (counts summed over seeds, then divided). The baseline row is
    the K = 0 bar of both. top_n / random_n: int [K] cells behind each bar. Rows without cells (all
    counts 0) are left out."""
    counts = np.asarray(error_counts, dtype=np.int64).reshape(len(rows), -1)
    keep = [i for i in range(len(rows)) if counts[i].sum() > 0]
    rows, k, counts = [rows[i] for i in keep], [k[i] for i in keep], counts[keep]
    n_types = counts.shape[1]
    base = np.zeros(n_types, dtype=np.int64)
    has_base = False
    for r, c in zip(rows, counts):
        if split_row(r) == (BASELINE, BASELINE):
            base += c
            has_base = True
    out = {}
    for mode in masked_modes(rows):
        top: Dict[int, np.ndarray] = {}
        rand: Dict[int, np.ndarray] = {}
        for r, kk, c in zip(rows, k, counts):
            m, sel = split_row(r)
            if m != mode:
                continue
            kind, _ = selection_kind(sel)
            if kind == "top":
                top[int(kk)] = top.get(int(kk), np.zeros(n_types, dtype=np.int64)) + c
            elif kind == "random":
                rand[int(kk)] = rand.get(int(kk), np.zeros(n_types, dtype=np.int64)) + c
        if has_base:
            top.setdefault(0, base)
            rand.setdefault(0, base)
        ks = sorted(set(top) | set(rand))
        res = {"ks": np.array(ks, dtype=np.int64)}
        for name, d in (("top", top), ("random", rand)):
            tot = np.array([d[kk].sum() if kk in d else 0 for kk in ks], dtype=np.int64)
            frac = np.full((len(ks), n_types), math.nan)
            for i, kk in enumerate(ks):
                if tot[i] > 0:
                    frac[i] = d[kk] / tot[i]
            res[name], res[name + "_n"] = frac, tot
        out[mode] = res
    return out


def failed(cell: Dict[str, object]) -> bool:
    """A cell failed when its error type is not "correct" (recall < 100 when the type is absent)."""
    t = cell.get("error_type")
    if t is not None:
        return t != "correct"
    return float(cell["rouge1_recall"]) < 100.0


def _coords(c: Dict[str, object]) -> Tuple:
    return (c["model"], int(c.get("needle_index", 0)), int(c["context_length"]), float(c["depth_percent"]))


def _baselines(cells: Iterable[Dict[str, object]]) -> Dict[Tuple, Dict[str, object]]:
    out = {}
    for c in cells:
        if c["mode"] == BASELINE and c["selection"] == BASELINE:
            out.setdefault(_coords(c), c)
    return out


def unmasked_counterpart(cells: Iterable[Dict[str, object]], cell: Dict[str, object]
                         ) -> Optional[Dict[str, object]]:
    """The baseline (none/none, K 0) cell of the same model, needle, context length and depth."""
    return _baselines(cells).get(_coords(cell))


def pick_failure_case(cells: Sequence[Dict[str, object]], model: Optional[str] = None,
                      k: Optional[int] = None, mode: Optional[str] = None
                      ) -> Optional[Dict[str, object]]:
    """Figure 9's case: a failed cell with the top-K retrieval heads masked (None when there is none).

    Candidates: selection "top" (of ``model`` / ``k`` / ``mode`` when given) that failed. Preference,
    in order: the unmasked cell at the same coordinates exists and is correct (the mask caused the
    failure), then exists at all; error type hallucination, wrong extraction, incomplete; larger share of
    the tracked heads on the attention sink (sink_fraction); smaller K; needle farther from the start (so
    that the needle and the sink are told apart in the plot); smaller cell id."""
    cand = [c for c in cells if c["selection"] == "top" and failed(c)
            and (model is None or c["model"] == model) and (k is None or int(c["k"]) == int(k))
            and (mode is None or c["mode"] == mode)]
    if not cand:
        return None
    baselines = _baselines(cells)

    def key(c):
        base = baselines.get(_coords(c))
        base_rank = 2 if base is None else (1 if failed(base) else 0)
        t = c.get("error_type")
        t_rank = FAILURE_PRIORITY.index(t) if t in FAILURE_PRIORITY else len(FAILURE_PRIORITY)
        return (base_rank, t_rank, -float(c.get("sink_fraction", 0.0)), int(c["k"]),
                -int(c.get("needle_begin", 0)), str(c["id"]))

    return min(cand, key=key)


REGIONS = ("needle", "sink", "elsewhere")


def argmax_regions(argmax: np.ndarray, needle_begin: int, needle_end: int, n_sink: int = N_SINK,
                   keep: Optional[Sequence[bool]] = None) -> np.ndarray:
    """int [step, 3]: per decode step, how many tracked heads' argmax positions fall in the needle's
    answer span [begin, end), in the attention sink (position < n_sink, outside the span) and elsewhere.
    A span with begin < 0 (answer not found in the prompt) is empty. ``keep`` (one bool per tracked head)
    leaves heads out: a head under the uniform mask attends evenly, so its argmax is 0 by the tie rule and
    says nothing about where it looked (the stage's sink_fraction leaves masked heads out the same way)."""
    a = np.asarray(argmax, dtype=np.int64)
    if a.ndim != 2:
        raise ValueError(f"argmax_regions: argmax of shape {a.shape}, expected [step, head]")
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (a.shape[1],):
            raise ValueError(f"argmax_regions: keep of shape {keep.shape}, expected ({a.shape[1]},)")
        a = a[:, keep]
    in_needle = (a >= needle_begin) & (a < needle_end) if needle_begin >= 0 else np.zeros(a.shape, bool)
    in_sink = (a < n_sink) & ~in_needle
    other = ~in_needle & ~in_sink
    return np.stack([in_needle.sum(1), in_sink.sum(1), other.sum(1)], axis=1).astype(np.int64)


# ------------------------------------------------------------------------------------ heatmaps (1)


def select_cells(cells: Iterable[Dict[str, object]], model: str, kind: str, k: int = 0,
                 mode: Optional[str] = None, seed: Optional[int] = None) -> List[Dict[str, object]]:
    """Cells of one Figure-1 panel: kind "none" (unmasked), "top" or "random" (every draw, or only
    rand<seed>); mode and k are ignored for "none"."""
    out = []
    for c in cells:
        if c["model"] != model:
            continue
        ck, cs = selection_kind(str(c["selection"]))
        if ck != kind:
            continue
        if kind != BASELINE and (int(c["k"]) != int(k) or (mode is not None and c["mode"] != mode)):
            continue
        if kind == "random" and seed is not None and cs != int(seed):
            continue
        out.append(c)
    return out


def masked_ks(cells: Iterable[Dict[str, object]], model: str, mode: Optional[str] = None
              ) -> Dict[str, List[int]]:
    """{"top": sorted K with top-K cells, "random": sorted K with random cells} of one model (and mode)."""
    top, rand = set(), set()
    for c in cells:
        if c["model"] != model or (mode is not None and c["mode"] != mode):
            continue
        kind, _ = selection_kind(str(c["selection"]))
        if kind == "top":
            top.add(int(c["k"]))
        elif kind == "random":
            rand.add(int(c["k"]))
    return {"top": sorted(top), "random": sorted(rand)}


def default_k(top_ks: Sequence[int], random_ks: Sequence[int]) -> Optional[int]:
    """Figure 1's K: the largest K that has both top-K and random cells, else the largest top K."""
    both = set(top_ks) & set(random_ks)
    if both:
        return max(both)
    return max(top_ks) if len(top_ks) else None


# ----------------------------------------------------------------------------------- tasks (8, 10)


def tasks_by_kind(kinds: Dict[str, str]) -> Dict[str, List[str]]:
    """{task: kind} -> {kind: sorted task names} for every kind present (qa, cot, direct first)."""
    out: Dict[str, List[str]] = {}
    for kind in list(TASK_KINDS) + sorted(set(kinds.values()) - set(TASK_KINDS)):
        names = sorted(t for t, kd in kinds.items() if kd == kind)
        if names:
            out[kind] = names
    return out


_COT_MARK = re.compile(r"(^|[_.-])(cot|chain_of_thought)($|[_.-])", re.I)
_DIRECT_MARK = re.compile(r"(^|[_.-])(direct|nocot|no_cot|answer_only|answeronly)($|[_.-])", re.I)


def task_base(name: str) -> str:
    """A task name without its CoT / answer-only marker: gsm8k_cot, cot-gsm8k, gsm8k_direct -> gsm8k."""
    for pat in (_COT_MARK, _DIRECT_MARK):
        m = pat.search(name)
        if m:
            joined = name[:m.start()] + (m.group(1) if m.start() > 0 and m.end() < len(name) else "") \
                + name[m.end():]
            return joined.strip("_.-") or name
    return name


def pair_cot_tasks(kinds: Dict[str, str]) -> List[Tuple[str, Optional[str], Optional[str]]]:
    """Figure 10 rows: [(benchmark, cot task or None, direct task or None)], sorted by benchmark. A CoT and
    an answer-only task pair up when their names agree without the marker (gsm8k_cot + gsm8k); a task
    without a partner gets its own row."""
    def by_base(kind):
        names = sorted(t for t, kd in kinds.items() if kd == kind)
        bases = [task_base(t) for t in names]
        # two tasks of one kind with the same base keep their full names (no guessing which pairs)
        return {(b if bases.count(b) == 1 else t): t for t, b in zip(names, bases)}

    cot, direct = by_base("cot"), by_base("direct")
    return [(b, cot.get(b), direct.get(b)) for b in sorted(set(cot) | set(direct))]
