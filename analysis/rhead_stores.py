"""Readers for rhead's HDF5 stores (layouts: docs/STORE.md).

Each reader opens one store, checks its header (stage name, ``schema_version`` not newer than this
module understands, ``status == complete``) and returns plain numpy arrays and dicts, so that the
figure code never touches h5py. Every error names the file.

    score = read_score("runs/published/score.h5")
    score.models["llama-2-7b-80k"].mean          # float64 [layer, head]
"""

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import h5py
import numpy as np

# Newest schema_version of each stage that these readers understand (docs/STORE.md).
SUPPORTED_SCHEMA = {"train": 1, "generate": 2, "score": 1, "correlate": 1, "ablate": 2}

# Root attributes of every store (docs/STORE.md, "Root attributes").
HEADER_KEYS = ("schema_version", "stage", "project", "project_version", "git_revision", "job_file",
               "job_text", "created_utc", "world_size", "comm_backend", "status", "seconds",
               "cells_total", "cells_resumed", "cells_computed_last_attempt", "attempts")


class StoreError(Exception):
    """A store is missing, incomplete, of another stage or of a newer schema."""


def _py(value):
    """h5py attribute/dataset value -> plain Python (str for strings, int/float for scalars)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in ("O", "S"):
            return [_py(v) for v in value.tolist()]
        if value.shape == ():
            return value.item()
        if value.size == 1 and value.ndim == 1:
            return value[0].item()
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _strings(dataset) -> List[str]:
    """A variable-length string dataset -> list of str."""
    return [_py(v) for v in dataset[()].tolist()] if dataset.shape else [_py(dataset[()])]


def _pairs(dataset) -> np.ndarray:
    """An int32 [n, 2] (layer, head) dataset; empty datasets come back as shape (0, 2)."""
    a = np.asarray(dataset[()], dtype=np.int64)
    return a.reshape(-1, 2)


def open_store(path: str, stage: str) -> h5py.File:
    """Open ``path`` read-only after checking its header; raises StoreError naming the file."""
    if not os.path.exists(path):
        partial = path + ".partial"
        hint = (f" (only {partial} exists: the stage is still running or was killed; rerun the job to "
                f"finish it)") if os.path.exists(partial) else ""
        raise StoreError(f"{path}: no such store{hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise StoreError(f"{path}: not a readable HDF5 file ({e})") from None
    try:
        attrs = f.attrs
        for key in ("schema_version", "stage", "status"):
            if key not in attrs:
                raise StoreError(f"{path}: root attribute '{key}' missing; not an rhead store")
        got_stage = _py(attrs["stage"])
        if got_stage != stage:
            raise StoreError(f"{path}: store of stage '{got_stage}', expected '{stage}'")
        version = int(_py(attrs["schema_version"]))
        supported = SUPPORTED_SCHEMA[stage]
        if version > supported:
            raise StoreError(f"{path}: {stage} store schema_version {version} is newer than the "
                             f"{supported} these readers support; update analysis/")
        status = _py(attrs["status"])
        if status != "complete":
            raise StoreError(f"{path}: status is '{status}', not 'complete'; the stage did not finish")
    except Exception:
        f.close()
        raise
    return f


def read_header(f: h5py.File) -> Dict[str, object]:
    """The root attributes of an open store (those present) as plain Python values."""
    return {k: _py(f.attrs[k]) for k in HEADER_KEYS if k in f.attrs}


# ------------------------------------------------------------------------------------------ score


@dataclass
class ModelScore:
    name: str
    source: str
    rule: str
    success_threshold: float
    retrieval_threshold: float
    n_tests_total: int
    n_tests_success: int
    mean: np.ndarray               # float64 [layer, head]
    frequency: np.ndarray          # float64 [layer, head]
    ranking: np.ndarray            # int64 [rank, 2] (layer, head)
    retrieval_heads: np.ndarray    # int64 [n, 2]
    always_on_heads: np.ndarray    # int64 [n, 2]
    bins: np.ndarray               # int64 [4]
    test_scores: Optional[np.ndarray] = None  # float64 [test, layer, head], only when asked for
    test_cells: Optional[List[str]] = None

    @property
    def shape(self):
        return self.mean.shape


@dataclass
class ScoreStore:
    path: str
    header: Dict[str, object]
    models: Dict[str, ModelScore] = field(default_factory=dict)  # in store order


def read_score(path: str, with_tests: bool = False) -> ScoreStore:
    """score.h5 -> ScoreStore. ``with_tests`` also loads the per-test score cubes (can be large)."""
    with open_store(path, "score") as f:
        out = ScoreStore(path=path, header=read_header(f))
        if "models" not in f:
            raise StoreError(f"{path}: group /models missing")
        for name in f["models"]:
            g = f["models"][name]
            try:
                a = g.attrs
                m = ModelScore(
                    name=name, source=_py(a["source"]), rule=_py(a["rule"]),
                    success_threshold=float(_py(a["success_threshold"])),
                    retrieval_threshold=float(_py(a["retrieval_threshold"])),
                    n_tests_total=int(_py(a["n_tests_total"])),
                    n_tests_success=int(_py(a["n_tests_success"])),
                    mean=np.asarray(g["mean"][()], dtype=np.float64),
                    frequency=np.asarray(g["frequency"][()], dtype=np.float64),
                    ranking=_pairs(g["ranking"]),
                    retrieval_heads=_pairs(g["retrieval_heads"]),
                    always_on_heads=_pairs(g["always_on_heads"]),
                    bins=np.asarray(g["bins"][()], dtype=np.int64))
                if with_tests:
                    m.test_scores = np.asarray(g["test_scores"][()], dtype=np.float64)
                    m.test_cells = _strings(g["test_cells"])
            except KeyError as e:
                raise StoreError(f"{path}: /models/{name}: {e}") from None
            if m.mean.ndim != 2 or m.frequency.shape != m.mean.shape:
                raise StoreError(f"{path}: /models/{name}: mean {m.mean.shape} and frequency "
                                 f"{m.frequency.shape} must be the same [layer, head] shape")
            out.models[name] = m
    return out


# -------------------------------------------------------------------------------------- correlate


@dataclass
class Pair:
    a: str
    b: str
    label: str
    pearson: float
    spearman: float
    top_k_jaccard: float
    shape_mismatch: bool


@dataclass
class CorrelateStore:
    path: str
    header: Dict[str, object]
    models: List[str]
    matrices: Dict[str, np.ndarray]  # pearson, spearman, top_k_jaccard: float64 [model, model]
    shape_mismatch: np.ndarray       # bool [model, model]
    top_k: Optional[int]
    shape_policy: Optional[str]
    pairs: List[Pair]                # the job's named pairs, in store (name) order


def read_correlate(path: str) -> CorrelateStore:
    with open_store(path, "correlate") as f:
        try:
            models = _strings(f["models"])
            matrices = {k: np.asarray(f[k][()], dtype=np.float64)
                        for k in ("pearson", "spearman", "top_k_jaccard") if k in f}
            if "pearson" not in matrices:
                raise KeyError("pearson")
            mismatch = np.asarray(f["shape_mismatch"][()]).astype(bool)
        except KeyError as e:
            raise StoreError(f"{path}: dataset {e} missing") from None
        n = len(models)
        for k, m in list(matrices.items()) + [("shape_mismatch", mismatch)]:
            if m.shape != (n, n):
                raise StoreError(f"{path}: /{k} has shape {m.shape}, expected ({n}, {n}) for {n} models")
        pairs = []
        if "pairs" in f:
            for key in f["pairs"]:
                a = f["pairs"][key].attrs
                if "__" not in key:
                    raise StoreError(f"{path}: /pairs/{key}: name is not '<a>__<b>'")
                left, right = key.split("__", 1)
                pairs.append(Pair(a=left, b=right, label=_py(a.get("label", "")),
                                  pearson=float(_py(a["pearson"])),
                                  spearman=float(_py(a.get("spearman", np.nan))),
                                  top_k_jaccard=float(_py(a.get("top_k_jaccard", np.nan))),
                                  shape_mismatch=bool(_py(a.get("shape_mismatch", 0)))))
        top_k = int(_py(f.attrs["top_k"])) if "top_k" in f.attrs else None
        policy = _py(f.attrs["shape_policy"]) if "shape_policy" in f.attrs else None
        return CorrelateStore(path=path, header=read_header(f), models=models, matrices=matrices,
                              shape_mismatch=mismatch, top_k=top_k, shape_policy=policy, pairs=pairs)


# --------------------------------------------------------------------------------------- generate


@dataclass
class GenerateStore:
    path: str
    header: Dict[str, object]
    models: Dict[str, Dict[str, object]]  # /models/<model> attrs
    cells: List[Dict[str, object]]        # one dict per cell: id + attrs (+ response)


def read_generate(path: str, with_responses: bool = False) -> GenerateStore:
    """generate.h5 -> cell coordinates and ROUGE-1 recall (captures are not loaded)."""
    with open_store(path, "generate") as f:
        models = {}
        if "models" in f:
            for name in f["models"]:
                models[name] = {k: _py(v) for k, v in f["models"][name].attrs.items()}
        cells = []
        if "cells" not in f:
            raise StoreError(f"{path}: group /cells missing")
        for cid in f["cells"]:
            g = f["cells"][cid]
            c = {k: _py(v) for k, v in g.attrs.items()}
            c["id"] = cid
            for key in ("model", "context_length", "depth_percent", "rouge1_recall"):
                if key not in c:
                    raise StoreError(f"{path}: /cells/{cid}: attribute '{key}' missing")
            if with_responses and "response" in g:
                c["response"] = _py(g["response"][()])
            cells.append(c)
        return GenerateStore(path=path, header=read_header(f), models=models, cells=cells)


# ----------------------------------------------------------------------------------------- ablate

# Order of /summary/<model>/error_counts columns when the store does not say (@error_types).
ERROR_TYPES = ("correct", "incomplete", "wrong_extraction", "hallucination")


@dataclass
class TaskSummary:
    """/summary/<model>/tasks/<task>: one row per mode/selection and K (downstream QA / CoT tasks)."""
    name: str
    kind: str                  # qa | cot | direct
    rows: List[str]            # "mode/selection"
    k: np.ndarray              # int64 [row]
    n_items: np.ndarray        # int64 [row]
    f1: np.ndarray             # float64 [row], percent
    exact_match: np.ndarray    # float64 [row], percent


@dataclass
class AblateSummary:
    """/summary/<model>: the masked-NIAH rows (empty when the model ran tasks only) and its tasks."""
    model: str
    rows: List[str]                 # "mode/selection"
    k: np.ndarray                   # int64 [row]
    n_cells: np.ndarray             # int64 [row]
    mean_recall: np.ndarray         # float64 [row]
    error_counts: np.ndarray        # int64 [row, n_error_types]
    error_types: List[str]
    tracked_heads: np.ndarray       # int64 [tracked_head, 2]
    tasks: Dict[str, TaskSummary] = field(default_factory=dict)


@dataclass
class AblateStore:
    path: str
    header: Dict[str, object]
    summaries: Dict[str, AblateSummary]   # per model, store order
    cells: List[Dict[str, object]]        # masked-NIAH cells: id + attrs
    task_cells: List[Dict[str, object]]   # task cells: id + attrs

    @property
    def has_tasks(self) -> bool:
        return any(s.tasks for s in self.summaries.values())


def _row_arrays(path, where, g, names, dtypes):
    """Datasets ``names`` of group g as 1-D arrays of equal length (0 when absent)."""
    out = {}
    for name, dtype in zip(names, dtypes):
        out[name] = np.asarray(g[name][()], dtype=dtype).reshape(-1) if name in g else np.zeros(0, dtype)
    n = {len(v) for v in out.values()}
    if len(n) > 1:
        raise StoreError(f"{path}: {where}: {', '.join(names)} differ in length "
                         f"({', '.join(str(len(v)) for v in out.values())})")
    return out


def _read_ablate_summary(path: str, name: str, g) -> AblateSummary:
    where = f"/summary/{name}"
    rows = _strings(g["rows"]) if "rows" in g else []
    arr = _row_arrays(path, where, g, ("k", "n_cells", "mean_recall"), (np.int64, np.int64, np.float64))
    if len(arr["k"]) != len(rows):
        raise StoreError(f"{path}: {where}: {len(rows)} rows but {len(arr['k'])} K values")
    types = list(ERROR_TYPES)
    if "error_types" in g.attrs:
        types = [t.strip() for t in _py(g.attrs["error_types"]).split(",")]
    if "error_counts" in g:
        errors = np.asarray(g["error_counts"][()], dtype=np.int64).reshape(-1, len(types))
    else:
        errors = np.zeros((len(rows), len(types)), dtype=np.int64)
    if errors.shape[0] != len(rows):
        raise StoreError(f"{path}: {where}/error_counts has {errors.shape[0]} rows, expected {len(rows)}")
    tracked = _pairs(g["tracked_heads"]) if "tracked_heads" in g else np.zeros((0, 2), dtype=np.int64)
    s = AblateSummary(model=name, rows=rows, k=arr["k"], n_cells=arr["n_cells"],
                      mean_recall=arr["mean_recall"], error_counts=errors, error_types=types,
                      tracked_heads=tracked)
    if "tasks" in g:
        for task in g["tasks"]:
            t = g["tasks"][task]
            tw = f"{where}/tasks/{task}"
            if "kind" not in t.attrs or "rows" not in t:
                raise StoreError(f"{path}: {tw}: attribute 'kind' or dataset 'rows' missing")
            trows = _strings(t["rows"])
            ta = _row_arrays(path, tw, t, ("k", "n_items", "f1", "exact_match"),
                             (np.int64, np.int64, np.float64, np.float64))
            if len(ta["k"]) != len(trows):
                raise StoreError(f"{path}: {tw}: {len(trows)} rows but {len(ta['k'])} K values")
            s.tasks[task] = TaskSummary(name=task, kind=_py(t.attrs["kind"]), rows=trows, k=ta["k"],
                                        n_items=ta["n_items"], f1=ta["f1"], exact_match=ta["exact_match"])
    return s


_ABLATE_CACHE: Dict[tuple, "AblateStore"] = {}


def read_ablate(path: str) -> AblateStore:
    """ablate.h5 -> summaries (NIAH rows, error counts, tracked heads, tasks) and every cell's attributes
    (no arrays: read_ablate_cell loads one cell's). Cells with a ``task`` attribute are task cells.
    Remembered per (file, size, mtime), so several figures of one report read the store once."""
    try:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _ABLATE_CACHE:
        return _ABLATE_CACHE[key]
    with open_store(path, "ablate") as f:
        summaries = {}
        if "summary" in f:
            for name in f["summary"]:
                summaries[name] = _read_ablate_summary(path, name, f["summary"][name])
        if "cells" not in f:
            raise StoreError(f"{path}: group /cells missing")
        cells, task_cells = [], []
        for cid in f["cells"]:
            c = {k: _py(v) for k, v in f["cells"][cid].attrs.items()}
            c["id"] = cid
            is_task = "task" in c
            need = (("model", "mode", "selection", "k", "task", "f1", "exact_match") if is_task else
                    ("model", "mode", "selection", "k", "context_length", "depth_percent", "rouge1_recall"))
            for a in need:
                if a not in c:
                    raise StoreError(f"{path}: /cells/{cid}: attribute '{a}' missing")
            (task_cells if is_task else cells).append(c)
        out = AblateStore(path=path, header=read_header(f), summaries=summaries, cells=cells,
                          task_cells=task_cells)
    if key is not None:
        _ABLATE_CACHE[key] = out
    return out


def read_ablate_cell(path: str, cell_id: str) -> Dict[str, object]:
    """One ablate cell: its attributes plus response (str), generated_ids (int [step]), masked_heads
    (int [k, 2]) and top_head_argmax (int [step, tracked_head]) where present."""
    with open_store(path, "ablate") as f:
        if "cells" not in f or cell_id not in f["cells"]:
            raise StoreError(f"{path}: no cell /cells/{cell_id}")
        g = f["cells"][cell_id]
        c = {k: _py(v) for k, v in g.attrs.items()}
        c["id"] = cell_id
        if "response" in g:
            c["response"] = _py(g["response"][()])
        if "generated_ids" in g:
            c["generated_ids"] = np.asarray(g["generated_ids"][()], dtype=np.int64).reshape(-1)
        if "masked_heads" in g:
            c["masked_heads"] = _pairs(g["masked_heads"])
        if "top_head_argmax" in g:
            a = np.asarray(g["top_head_argmax"][()], dtype=np.int64)
            if a.ndim != 2:
                raise StoreError(f"{path}: /cells/{cell_id}/top_head_argmax has shape {a.shape}, "
                                 f"expected [step, tracked_head]")
            c["top_head_argmax"] = a
        return c


# ------------------------------------------------------------------------------------------- runs

STAGES = ("generate", "score", "correlate", "ablate")


def store_path(run_dir: str, stage: str) -> str:
    return os.path.join(run_dir, f"{stage}.h5")


def available_stores(run_dir: str) -> Dict[str, str]:
    """{stage: path} for every ``<stage>.h5`` present in run_dir (not yet checked)."""
    return {s: store_path(run_dir, s) for s in STAGES if os.path.exists(store_path(run_dir, s))}
