#!/usr/bin/python3
"""The toy zoo's paper properties, measured from a run's stores (the embedded default, README):

  1. NIAH passes within the trained context: mean ROUGE-1 recall >= 90 over the generate cells whose
     context length <= the model's trained context (train.h5 @context, else config.json).
  2. Retrieval heads (score mean > the store's retrieval threshold) are a small minority of heads.
  3. Masking them is causal: masking the top-K heads (K = the model's own number of retrieval heads)
     cuts masked NIAH to at most half of the unmasked score, while masking K random non-retrieval heads
     keeps at least 80 % of it (mean over the random seeds).
  4. Retrieval-head maps are intrinsic to a family: Pearson >= 0.8 for base vs long, chat and moe, and
     below 0.3 for base vs other (an independently trained family).
  5. Chain of thought needs retrieval more than answer-only: masking the top-K heads costs the cot task
     a larger share of its exact match than the direct task (paired by name, as Figure 10), and some of
     it (a cot task that does not drop, say from a floor of 12 to 12, does not suffer).

  zoo_properties.py RUN_DIR            print the table (what the quick-start run shows)
  zoo_properties.py RUN_DIR --check    also exit 1 when a property fails
  zoo_properties.py RUN_DIR --check niah,masking    ... when a property of these kinds fails
  zoo_properties.py RUN_DIR --check --except ROW     ... but not for this property (a row of --matrix,
                                                     e.g. a known failure of the shipped zoo; repeatable)
  zoo_properties.py --matrix RUN_DIR...              one row per property, one column per run (e.g. the
                                                     zoo retrained at several seeds: docs/ZOO.md), with
                                                     the runs each property holds in

Thresholds are the issue's; property 2 is checked as "at most MAX_RETRIEVAL_FRACTION of the heads" and
the measured fraction is printed next to the paper's "under 5 %". A run without a correlate store (one
model, as jobs/toy_base.ini) leaves property 4 unmeasured and says so. Exit 2 when a needed store is
missing or unreadable, or when --check asks for a property the run cannot measure."""

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import ablate_data as ad
import rhead_stores as rs

NIAH_PASS = 90.0
MAX_RETRIEVAL_FRACTION = 0.10
TOP_MASK_MAX_SHARE = 0.5
RANDOM_MASK_MIN_SHARE = 0.8
SAME_FAMILY_MIN_PEARSON = 0.8
OTHER_FAMILY_MAX_PEARSON = 0.3


# Property kinds, for --check KINDS.
KINDS = ("niah", "sparsity", "masking", "family", "cot")


@dataclass
class Check:
    name: str
    measured: str
    expected: str
    ok: bool
    kind: str = ""
    # How far the measured value is from the threshold, in the measured unit (positive: holds); the last
    # bits of inference differ between CPU kinds, so a margin near 0 is a coin flip, not a property.
    margin: float = float("nan")
    unit: str = ""
    key: str = ""  # the same property across runs whose names differ (K is each run's own); "" = name

    def row(self) -> str:
        return self.key or self.name

    def margin_text(self) -> str:
        if np.isnan(self.margin):
            return "-"
        digits = {"heads": 0, "r": 3}.get(self.unit, 1)
        return f"{self.margin:+.{digits}f} {self.unit}"


# ------------------------------------------------------------------------------ pure measurements


def niah_within_context(cells: Sequence[Dict[str, object]], model: str, context: int) -> Tuple[float, int]:
    """Mean ROUGE-1 recall of `model`'s generate cells with context_length <= context, and their count."""
    recalls = [float(c["rouge1_recall"]) for c in cells
               if c["model"] == model and int(c["context_length"]) <= context]
    return (float(np.mean(recalls)) if recalls else float("nan"), len(recalls))


def _at_k(rows, ks, values, k: int, mode: str) -> Tuple[float, float, List[float]]:
    """(unmasked, top-K, [random-K per seed]) values of ablate rows at K = k in `mode`; NaN if missing."""
    unmasked = top = float("nan")
    randoms: List[float] = []
    for row, kk, value in zip(rows, ks, values):
        row_mode, selection = ad.split_row(row)
        kind, _ = ad.selection_kind(selection)
        if kind == "none":
            unmasked = float(value)
        elif row_mode == mode and int(kk) == k and kind == "top":
            top = float(value)
        elif row_mode == mode and int(kk) == k and kind == "random":
            randoms.append(float(value))
    return unmasked, top, randoms


def masking_effect(summary: rs.AblateSummary, k: int, mode: str = "uniform"
                   ) -> Tuple[float, float, float, int]:
    """(unmasked, top-K masked, mean over seeds of random-K masked) NIAH recall at K = k in `mode`,
    and the number of random seeds found. NaN where a row is missing."""
    unmasked, top, randoms = _at_k(summary.rows, summary.k, summary.mean_recall, k, mode)
    return unmasked, top, (float(np.mean(randoms)) if randoms else float("nan")), len(randoms)


def task_drop(task: rs.TaskSummary, k: int, mode: str = "uniform") -> Tuple[float, float, float]:
    """(unmasked EM, top-K masked EM, relative drop 1 - masked / unmasked) of a task; NaN if missing."""
    unmasked, top, _ = _at_k(task.rows, task.k, task.exact_match, k, mode)
    drop = 1.0 - top / unmasked if unmasked > 0 else float("nan")
    return unmasked, top, drop


# ------------------------------------------------------------------------------------ the checks


def trained_context(run_dir: str, model: str, model_attrs: Dict[str, object]) -> int:
    """The context a model was trained at: train.h5 when the run trained it, else its config.json."""
    train = rs.store_path(run_dir, "train")
    if os.path.exists(train):
        with rs.open_store(train, "train") as f:
            if "models" in f and model in f["models"]:
                return int(f["models"][model].attrs["context"])
    path = str(model_attrs.get("path", ""))
    with open(os.path.join(path, "config.json")) as cfg:
        return int(json.load(cfg)["max_position_embeddings"])


def measure(run_dir: str) -> Tuple[List[Check], Dict[str, str]]:
    """The checks a run's stores allow, and {kind: why it is not measured} for the others."""
    checks: List[Check] = []
    unmeasured: Dict[str, str] = {}
    gen = rs.read_generate(rs.store_path(run_dir, "generate"))
    for model, attrs in gen.models.items():
        ctx = trained_context(run_dir, model, attrs)
        mean, n = niah_within_context(gen.cells, model, ctx)
        checks.append(Check(f"{model}: NIAH within its {ctx}-token context", f"{mean:.1f} ({n} cells)",
                            f">= {NIAH_PASS:.0f}", n > 0 and mean >= NIAH_PASS, "niah", mean - NIAH_PASS, "pts"))

    score = rs.read_score(rs.store_path(run_dir, "score"))
    n_retrieval: Dict[str, int] = {}
    for model, m in score.models.items():
        n_heads = int(m.mean.size)
        n_retrieval[model] = int(len(m.retrieval_heads))
        frac = n_retrieval[model] / n_heads
        most = int(np.floor(MAX_RETRIEVAL_FRACTION * n_heads + 1e-9))
        checks.append(Check(f"{model}: retrieval heads (mean > {m.retrieval_threshold:g})",
                            f"{n_retrieval[model]} of {n_heads} = {100 * frac:.1f} % (paper: < 5 %)",
                            f"1 .. {100 * MAX_RETRIEVAL_FRACTION:.0f} %",
                            n_retrieval[model] >= 1 and frac <= MAX_RETRIEVAL_FRACTION, "sparsity",
                            min(n_retrieval[model] - 1, most - n_retrieval[model]), "heads"))

    corr_path = rs.store_path(run_dir, "correlate")
    corr = rs.read_correlate(corr_path) if os.path.exists(corr_path) else None
    if corr is None:
        unmeasured["family"] = f"{corr_path}: no such store (the job ran without the correlate stage)"
    for pair in corr.pairs if corr is not None else []:
        if pair.a != "base":
            continue
        r = pair.pearson
        if pair.b == "other":
            checks.append(Check(f"Pearson base vs other", f"{r:.3f}", f"< {OTHER_FAMILY_MAX_PEARSON}",
                                r < OTHER_FAMILY_MAX_PEARSON, "family", OTHER_FAMILY_MAX_PEARSON - r, "r"))
        else:
            checks.append(Check(f"Pearson base vs {pair.b}", f"{r:.3f}", f">= {SAME_FAMILY_MIN_PEARSON}",
                                r >= SAME_FAMILY_MIN_PEARSON, "family", r - SAME_FAMILY_MIN_PEARSON, "r"))

    ablate = rs.read_ablate(rs.store_path(run_dir, "ablate"))
    for model, summary in ablate.summaries.items():
        k = n_retrieval.get(model, 0)
        if k == 0 or not summary.rows:
            continue
        checks += masking_checks(model, k, summary)
        kinds = {name: t.kind for name, t in summary.tasks.items()}
        for _, cot, direct in ad.pair_cot_tasks(kinds):
            if cot is None or direct is None:
                continue
            checks.append(cot_check(model, k, summary.tasks[cot], summary.tasks[direct]))
    return checks, unmeasured


def cot_check(model: str, k: int, cot: rs.TaskSummary, direct: rs.TaskSummary) -> Check:
    """Property 5: top-K masking costs the cot task a larger share of its exact match than the direct
    task, and a share above 0 (from a floor, 12 -> 12, a cot task shows nothing even when the direct one
    happens to gain)."""
    cu, ct, cd = task_drop(cot, k)
    du, dt, dd = task_drop(direct, k)
    return Check(f"{model}: top-{k} masking hurts {cot.name} more than {direct.name}",
                 f"EM {cu:.0f}->{ct:.0f} (-{100 * cd:.0f} %) vs {du:.0f}->{dt:.0f} (-{100 * dd:.0f} %)",
                 "cot drop > direct drop, > 0", bool(cd > dd and cd > 0), "cot", 100 * min(cd - dd, cd), "pts",
                 f"{model}: top-K masking hurts {cot.name} more than {direct.name}")


def masking_checks(model: str, k: int, summary: rs.AblateSummary) -> List[Check]:
    """Top-K masking halves NIAH, K random heads keep most of it. A model that passes no unmasked NIAH
    cell shows nothing about masking: both checks fail then (0 <= half of 0 is no evidence)."""
    unmasked, top, rand, seeds = masking_effect(summary, k)
    return [Check(f"{model}: mask top-{k} retrieval heads", f"NIAH {top:.1f} of {unmasked:.1f}",
                  f"<= {TOP_MASK_MAX_SHARE:.0%} of unmasked",
                  bool(unmasked > 0 and top <= TOP_MASK_MAX_SHARE * unmasked), "masking",
                  TOP_MASK_MAX_SHARE * unmasked - top, "pts", f"{model}: mask top-K retrieval heads"),
            Check(f"{model}: mask {k} random heads ({seeds} seeds)", f"NIAH {rand:.1f} of {unmasked:.1f}",
                  f">= {RANDOM_MASK_MIN_SHARE:.0%} of unmasked",
                  bool(unmasked > 0 and seeds > 0 and rand >= RANDOM_MASK_MIN_SHARE * unmasked), "masking",
                  rand - RANDOM_MASK_MIN_SHARE * unmasked, "pts", f"{model}: mask K random heads")]


def render(checks: Sequence[Check]) -> str:
    w = max((len(c.name) for c in checks), default=8)
    wm = max((len(c.measured) for c in checks), default=8)
    lines = [f"{'property':<{w}}  {'measured':<{wm}}  {'expected':<26} {'margin':>11}  ok"]
    lines += [f"{c.name:<{w}}  {c.measured:<{wm}}  {c.expected:<26} {c.margin_text():>11}  {'yes' if c.ok else 'NO'}"
              for c in checks]
    return "\n".join(lines)


def render_matrix(names: Sequence[str], runs: Sequence[Sequence[Check]]) -> str:
    """Properties (rows, in first-seen order) x runs (columns): the margin where it holds, NO (margin) where
    it fails, - where the run does not measure it; then how many runs it holds in."""
    rows: List[str] = []
    for checks in runs:
        rows += [c.row() for c in checks if c.row() not in rows]
    cells = [{c.row(): c for c in checks} for checks in runs]
    w = max((len(r) for r in rows), default=8)
    cw = max(12, max((len(n) for n in names), default=0))
    out = [f"{'property':<{w}}  " + "  ".join(f"{n:>{cw}}" for n in names) + "  holds"]
    for r in rows:
        got = [cell.get(r) for cell in cells]
        text = ["-" if c is None else (c.margin_text() if c.ok else f"NO {c.margin_text()}") for c in got]
        held = sum(1 for c in got if c is not None and c.ok)
        out.append(f"{r:<{w}}  " + "  ".join(f"{t:>{cw}}" for t in text) + f"  {held} of {len(names)}")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", nargs="+")
    ap.add_argument("--matrix", action="store_true", help="several runs side by side (one column each)")
    ap.add_argument("--names", default="", help="--matrix: column names, comma-separated (default: the folders)")
    ap.add_argument("--except", dest="excepted", action="append", default=[], metavar="ROW",
                    help="--check: a property (its --matrix row) whose failure does not count; repeatable")
    ap.add_argument("--check", nargs="?", const="all", default=None, metavar="KINDS",
                    help="exit 1 when a property of these kinds fails: all (default) or a comma list of "
                         + ", ".join(KINDS))
    args = ap.parse_args(argv)
    kinds = set(KINDS) if args.check in (None, "all") else set(args.check.split(","))
    unknown = kinds - set(KINDS)
    if unknown:
        ap.error(f"--check: unknown kind(s) {', '.join(sorted(unknown))}; expected all or some of {', '.join(KINDS)}")
    if args.matrix or len(args.run_dir) > 1:
        try:
            runs = [measure(d)[0] for d in args.run_dir]
        except (rs.StoreError, OSError, KeyError) as e:
            print(f"zoo_properties: {e}", file=sys.stderr)
            return 2
        names = args.names.split(",") if args.names else [os.path.basename(os.path.normpath(d)) for d in args.run_dir]
        if len(names) != len(args.run_dir):
            ap.error(f"--names: {len(names)} names for {len(args.run_dir)} runs")
        print(render_matrix(names, runs))
        return 0
    try:
        checks, unmeasured = measure(args.run_dir[0])
    except (rs.StoreError, OSError, KeyError) as e:
        print(f"zoo_properties: {e}", file=sys.stderr)
        return 2
    print(render(checks))
    failed = [c for c in checks if not c.ok]
    print(f"zoo properties: {len(checks) - len(failed)} of {len(checks)} hold")
    for kind, why in sorted(unmeasured.items()):
        print(f"zoo properties: {kind} not measured: {why}")
    if args.check is None:
        return 0
    asked_unmeasured = sorted(kinds & set(unmeasured))
    if asked_unmeasured:
        print(f"zoo_properties: --check asks for {', '.join(asked_unmeasured)}, which this run cannot measure; "
              f"run the missing stage or leave the kind out of --check", file=sys.stderr)
        return 2
    unknown_rows = sorted(set(args.excepted) - {c.row() for c in checks})
    if unknown_rows:
        print(f"zoo_properties: --except names no property of this run: {'; '.join(unknown_rows)}", file=sys.stderr)
        return 2
    blocking = [c.name for c in failed if c.kind in kinds and c.row() not in args.excepted]
    for c in failed:
        if c.row() in args.excepted:
            print(f"zoo properties: {c.name} fails, as expected (--except)")
    if blocking:
        print(f"zoo properties: checked ({', '.join(sorted(kinds))}) and failing: {'; '.join(blocking)}")
    return 1 if blocking else 0


if __name__ == "__main__":
    sys.exit(main())
