#!/usr/bin/python3
"""Draw every figure that RUN_DIR's stores allow and write a Markdown report next to them
(OUT/report.md, default OUT = RUN_DIR/figures): stages and provenance, models, key numbers (Figure-3
bins, retrieval-head fractions, top-10 heads, always-on heads, correlations, NIAH means, masked NIAH
vs K, downstream task scores vs K) and the figures. Figures whose store is absent are listed with the
store that would enable them; figures the store has nothing for (e.g. no tasks) with a one-line note.

Exit status: 0 when every drawable figure was drawn, 1 when one failed (the report is still written),
2 on a bad command line or an unwritable output folder."""

import argparse
import os
import sys
import traceback

import numpy as np

import figcommon  # headless matplotlib before any figure module
import ablate_data as ad
import figure_data as fd
import rhead_stores
import fig1_masked_heatmaps
import fig3_bins
import fig4_frequency
import fig5_heatmaps
import fig6_correlation
import fig7_niah_vs_k
import fig8_qa
import fig9_errors
import fig10_cot
import niah_heatmap
import zoo_properties

# (figure, what it shows, module, stores it needs), in the report's order
DRAWN = [
    ("Figure 1", "NIAH heatmaps with no heads, the top-K retrieval heads and K random heads masked",
     fig1_masked_heatmaps, ("ablate",)),
    ("Figure 3", "share of heads per retrieval-score bin", fig3_bins, ("score",)),
    ("Figure 4", "retrieval score vs activation frequency per head", fig4_frequency, ("score",)),
    ("Figure 5", "layer x head retrieval-score maps, base vs variant", fig5_heatmaps, ("score",)),
    ("Figure 6", "model x model Pearson correlation of head maps", fig6_correlation, ("correlate",)),
    ("Figure 7", "NIAH score vs number of masked heads, retrieval vs random", fig7_niah_vs_k, ("ablate",)),
    ("Figure 8", "extractive QA F1 vs number of masked heads, retrieval vs random", fig8_qa, ("ablate",)),
    ("Figure 9", "error types under masking and one failure case with the top heads' attention",
     fig9_errors, ("ablate",)),
    ("Figure 10", "chain of thought vs answer only under masking", fig10_cot, ("ablate",)),
    ("NIAH", "needle-in-a-haystack ROUGE-1 heatmaps (depth x length)", niah_heatmap, ("generate",)),
]


def _md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _num(v, fmt="{:.1f}"):
    return "" if v is None or np.isnan(v) else fmt.format(float(v))


def _range(lo, hi):
    return "" if np.isnan(lo) else f"{float(lo):.1f}..{float(hi):.1f}"


def _short(rev):
    return rev[:12] if isinstance(rev, str) else rev


class Report:
    def __init__(self, run_dir, out_dir):
        self.run_dir = run_dir
        self.out_dir = out_dir
        self.lines = []
        self.failed = []

    def add(self, *text):
        self.lines.extend(text)

    # ------------------------------------------------------------------------------------ stores
    def load(self):
        """Read every present store; remember the ones that cannot be used and why."""
        self.stores, self.problems = {}, {}
        readers = {"generate": rhead_stores.read_generate, "score": rhead_stores.read_score,
                   "correlate": rhead_stores.read_correlate, "ablate": rhead_stores.read_ablate}
        for stage, reader in readers.items():
            path = rhead_stores.store_path(self.run_dir, stage)
            if not os.path.exists(path) and not os.path.exists(path + ".partial"):
                continue
            try:
                self.stores[stage] = reader(path)
            except rhead_stores.StoreError as e:
                self.problems[stage] = str(e)

    def stages_section(self):
        self.add("## Stages", "")
        rows = []
        for stage in rhead_stores.STAGES:
            if stage in self.stores:
                h = self.stores[stage].header
                cells = h.get("cells_total", "")
                if cells != "":
                    cells = f"{cells} ({h.get('cells_resumed', 0)} resumed, {h.get('attempts', 1)} attempt(s))"
                rows.append((f"`{stage}.h5`", h.get("status", "?"), h.get("schema_version", "?"),
                             h.get("created_utc", "?"), f"`{_short(h.get('git_revision', '?'))}`",
                             f"`{h.get('job_file', '?')}`", h.get("world_size", "?"),
                             f"{float(h.get('seconds', float('nan'))):.1f}", cells))
            elif stage in self.problems:
                rows.append((f"`{stage}.h5`", "**unusable**: " + self.problems[stage].replace("|", "/"),
                             "", "", "", "", "", "", ""))
            else:
                rows.append((f"`{stage}.h5`", "not run", "", "", "", "", "", "", ""))
        self.add(_md_table(("store", "status", "schema", "created (UTC)", "git revision", "job file",
                            "ranks", "seconds", "cells"), rows), "")

    def models_section(self):
        score = self.stores.get("score")
        gen = self.stores.get("generate")
        abl = self.stores.get("ablate")
        if not score and not gen and not abl:
            return
        self.add("## Models", "")
        names = list(score.models) if score else []
        if gen:
            names += [m for m in gen.models if m not in names]
        if abl:
            names += [m for m in abl.summaries if m not in names]
        rows = []
        for n in names:
            g = gen.models.get(n, {}) if gen else {}
            m = score.models.get(n) if score else None
            shape = f"{m.shape[0]}x{m.shape[1]}" if m else f"{g.get('n_layer', '?')}x{g.get('n_head', '?')}"
            source = m.source if m else ""
            if source.startswith("import:"):  # the file name is enough; the full path is in the job file
                source = "import:" + os.path.basename(source[len("import:"):])
            rows.append((n, g.get("family", ""), shape, source, m.rule if m else "",
                         f"{m.n_tests_success}/{m.n_tests_total}" if m else ""))
        self.add(_md_table(("model", "family", "layers x heads", "score source", "rule",
                            "successful / all tests"), rows), "")

    # ------------------------------------------------------------------------------- key numbers
    def score_numbers(self):
        score = self.stores.get("score")
        if not score:
            return
        self.add("## Retrieval heads (score.h5)", "",
                 "Bins on the per-head mean retrieval score (docs/PAPER_NOTES.md, 'Published head scores'); "
                 "retrieval heads have mean > "
                 "the store's retrieval_threshold; always-on heads have activation frequency 1.", "")
        rows = []
        for n, m in score.models.items():
            pct = fd.bin_percentages(fd.bin_counts(m.mean))
            nret, pret = fd.retrieval_fraction(m.mean, m.retrieval_threshold)
            rows.append((n, f"{m.shape[0]}x{m.shape[1]}", f"{nret} ({pret:.1f}%)",
                         *[f"{p:.1f}%" for p in pct], len(m.always_on_heads)))
        self.add(_md_table(("model", "heads", "retrieval heads", *[f"bin {b}" for b in fd.BIN_LABELS],
                            "always-on"), rows), "")
        self.add("### Top-10 heads (layer-head, mean score)", "")
        top = {n: fd.ranking(m.mean)[:10] for n, m in score.models.items()}
        rows = []
        for k in range(10):
            row = [k + 1]
            for n, m in score.models.items():
                if k < len(top[n]):
                    l, h = top[n][k]
                    row.append(f"{fd.head_label(l, h)} ({m.mean[l, h]:.3f})")
                else:
                    row.append("")
            rows.append(row)
        self.add(_md_table(("rank", *score.models), rows), "")

    def correlate_numbers(self):
        c = self.stores.get("correlate")
        if not c:
            return
        self.add("## Correlations (correlate.h5)", "",
                 f"Flattened [layer, head] mean maps; top_k = {c.top_k}, shape_policy = `{c.shape_policy}` "
                 "(used for models of different shapes).", "")
        if c.pairs:
            self.add("Named pairs of the job:", "")
            self.add(_md_table(("pair", "label", "Pearson", "Spearman", f"top-{c.top_k} Jaccard",
                                "shapes differ"),
                               [(f"{p.a} vs {p.b}", "" if p.label == f"{p.a} vs {p.b}" else p.label,
                                 f"{p.pearson:.3f}", f"{p.spearman:.3f}",
                                 f"{p.top_k_jaccard:.3f}", "yes" if p.shape_mismatch else "no")
                                for p in c.pairs]), "")
        gen = self.stores.get("generate")
        fam = {m: a.get("family") for m, a in gen.models.items()} if gen else {}
        if fam:
            rows = []
            for i, a in enumerate(c.models):
                for j in range(i + 1, len(c.models)):
                    b = c.models[j]
                    if fam.get(a) and fam.get(a) == fam.get(b):
                        rows.append((f"{a} vs {b}", fam[a], f"{c.matrices['pearson'][i, j]:.3f}"))
            if rows:
                self.add("Within-family pairs (families from generate.h5):", "")
                self.add(_md_table(("pair", "family", "Pearson"), rows), "")
        s = fd.off_diagonal_summary(c.matrices["pearson"], c.shape_mismatch)
        if s["n"]:
            self.add(f"Same-shape off-diagonal Pearson: min {s['min']:.3f}, max {s['max']:.3f}, "
                     f"mean {s['mean']:.3f} over {s['n']} cells.", "")

    def generate_numbers(self):
        g = self.stores.get("generate")
        if not g:
            return
        self.add("## Needle in a haystack (generate.h5)", "")
        rows = []
        for m in fd.models_of_cells(g.cells):
            p = fd.niah_pivot(g.cells, m)
            n = int(p["count"].sum())
            succ = sum(1 for c in g.cells if c["model"] == m and float(c["rouge1_recall"]) > 50)
            rows.append((m, n, f"{p['depths'].size} x {p['lengths'].size}",
                         f"{int(p['lengths'].min())}-{int(p['lengths'].max())}", f"{p['overall']:.1f}",
                         f"{succ} ({100.0 * succ / n:.1f}%)"))
        self.add(_md_table(("model", "cells", "depths x lengths", "lengths (tokens)",
                            "mean ROUGE-1 recall", "cells with recall > 50"), rows), "")

    def ablate_numbers(self):
        a = self.stores.get("ablate")
        if not a:
            return
        self.add("## Masked needle in a haystack (ablate.h5)", "",
                 "Mean ROUGE-1 recall over the (needle, length, depth) grid with the top-K retrieval heads "
                 "masked vs K random non-retrieval heads (mean, min..max and sample std over the random "
                 "draws); error types of the top-K cells: incomplete / wrong extraction / hallucination "
                 "(docs/PAPER_NOTES.md, 'Masking').", "")
        any_rows = False
        for name, s in a.summaries.items():
            if not s.n_cells.sum():  # no NIAH cells (tasks only)
                continue
            any_rows = True
            cells = [c for c in a.cells if c["model"] == name]
            diff = ad.compare_rows(s.rows, s.k, s.n_cells, s.mean_recall,
                                   ad.rows_from_cells(cells, "rouge1_recall"))
            series = ad.series_vs_k(s.rows, s.k, ad.with_counts(s.mean_recall, s.n_cells))
            errs = {}
            for r, kk, e in zip(s.rows, s.k, s.error_counts):
                mode, sel = ad.split_row(r)
                if sel == "top":
                    errs[(mode, int(kk))] = e
            n_base = sum(int(n) for r, n in zip(s.rows, s.n_cells) if ad.split_row(r)[1] == ad.BASELINE)
            base = next(iter(series.values()))["baseline"] if series else float("nan")
            self.add(f"### {name}", "", f"Unmasked: {base:.1f} over {n_base} cells. "
                     + (f"Tracked top heads: {', '.join(fd.head_label(l, h) for l, h in s.tracked_heads)}."
                        if len(s.tracked_heads) else ""), "")
            rows = []
            idx = {t: i for i, t in enumerate(s.error_types)}
            for mode, se in series.items():
                for i, kk in enumerate(se["ks"]):
                    if kk == 0:
                        continue
                    e = errs.get((mode, int(kk)))
                    err = (" / ".join(str(int(e[idx[t]])) if t in idx else "?"
                                      for t in ("incomplete", "wrong_extraction", "hallucination"))
                           if e is not None else "")
                    rows.append((mode, int(kk), _num(se["top"][i]), _num(se["rand_mean"][i]),
                                 _range(se["rand_min"][i], se["rand_max"][i]), _num(se["rand_std"][i]),
                                 int(se["rand_n"][i]), err))
            self.add(_md_table(("mode", "K", "top-K recall", "random recall (mean)", "random min..max",
                                "random std", "draws", "top-K errors (incompl. / wrong / halluc.)"), rows), "")
            if diff:
                self.add(f"**/summary disagrees with the cells** ({len(diff)} rows): "
                         + "; ".join(diff[:5]) + (" ..." if len(diff) > 5 else ""), "")
        if not any_rows:
            self.add("No masked-NIAH rows in this store (tasks only).", "")
        self.task_numbers(a)

    def task_numbers(self, a):
        if not a.has_tasks:
            self.add("Downstream tasks: none in `ablate.h5` (Figures 8 and 10 not drawn).", "")
            return
        self.add("## Downstream tasks under masking (ablate.h5)", "",
                 "Mean over the task's items, percent: F1 and exact match with the top-K retrieval heads "
                 "vs K random heads masked (random: mean and min..max over the draws); K = 0: no mask.", "")
        rows, problems = [], []
        for name, s in a.summaries.items():
            grouped = ad.tasks_by_kind({t: ts.kind for t, ts in s.tasks.items()})
            for kind, tasks in grouped.items():
                for task in tasks:
                    ts = s.tasks[task]
                    cells = [c for c in a.task_cells if c["model"] == name and c["task"] == task]
                    per = {}
                    for metric in ("f1", "exact_match"):
                        values = getattr(ts, metric)
                        per[metric] = ad.series_vs_k(ts.rows, ts.k, ad.with_counts(values, ts.n_items))
                        d = ad.compare_rows(ts.rows, ts.k, ts.n_items, values,
                                            ad.rows_from_cells(cells, metric))
                        problems += [f"{name}/{task} {metric}: {x}" for x in d]
                    # items behind the baseline and the top-K rows (the random draws run the same items)
                    items = {(*ad.split_row(r), int(kk)): int(n) for r, kk, n in zip(ts.rows, ts.k, ts.n_items)}
                    first = next(iter(per["f1"]), None)
                    for mode in per["f1"]:
                        f, e = per["f1"][mode], per["exact_match"][mode]
                        for i, kk in enumerate(f["ks"]):
                            base = kk == 0
                            if base and mode != first:
                                continue  # the baseline once per task
                            n = items.get((ad.BASELINE, ad.BASELINE, 0) if base else (mode, "top", int(kk)), "")
                            rand = [] if base else [
                                f"{_num(x['rand_mean'][i])} ({_range(x['rand_min'][i], x['rand_max'][i])})"
                                for x in (f, e)]
                            rows.append((name, task, kind, ad.BASELINE if base else mode, int(kk), n,
                                         _num(f["top"][i]), rand[0] if rand else "",
                                         _num(e["top"][i]), rand[1] if rand else ""))
        self.add(_md_table(("model", "task", "kind", "mode", "K", "items", "F1 top-K", "F1 random (min..max)",
                            "EM top-K", "EM random (min..max)"), rows), "")
        if problems:
            self.add(f"**Task summaries disagree with the task cells** ({len(problems)} rows): "
                     + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""), "")

    # ----------------------------------------------------------------------------------- figures
    def zoo_section(self):
        """The toy zoo's paper properties (analysis/zoo_properties.py) when the run trained its models."""
        if not os.path.exists(rhead_stores.store_path(self.run_dir, "train")):
            return
        needed = [st for st in ("generate", "score", "ablate") if st not in self.stores]  # correlate: optional
        self.add("## The toy zoo against the paper (zoo_properties.py)", "")
        if needed:
            self.add(f"Needs {', '.join(f'`{st}.h5`' for st in needed)} to be measured.", "")
            return
        try:
            checks, unmeasured = zoo_properties.measure(self.run_dir)
        except (rhead_stores.StoreError, OSError, KeyError) as e:
            self.add(f"**not measured**: `{type(e).__name__}: {e}`", "")
            return
        self.add(_md_table(("property", "measured", "expected", "holds"),
                           [(c.name, c.measured, c.expected, "yes" if c.ok else "**no**") for c in checks]),
                 "", f"{sum(c.ok for c in checks)} of {len(checks)} properties hold.", "")
        for kind, why in sorted(unmeasured.items()):
            self.add(f"Not measured: {kind} (`{why}`).", "")

    def figures_section(self):
        self.add("## Figures", "")
        skipped = []
        for fig, what, module, needs in DRAWN:
            missing = [s for s in needs if s not in self.stores]
            if missing:
                why = "; ".join(f"`{s}.h5` unusable ({self.problems[s]})" if s in self.problems
                                else f"needs `{s}.h5`" for s in missing)
                skipped.append(f"- {fig} ({what}): {why}")
                continue
            figcommon.take_notes()
            try:
                paths = module.draw(self.run_dir, self.out_dir)
            except figcommon.NothingToDraw as e:
                skipped.append(f"- {fig} ({what}): nothing to draw: {e}")
                continue
            except Exception as e:  # keep drawing the others; the report says what failed
                traceback.print_exc()
                self.failed.append(fig)
                self.add(f"### {fig}: {what}", "", f"**failed**: `{type(e).__name__}: {e}`", "")
                continue
            self.add(f"### {fig}: {what}", "")
            notes = figcommon.take_notes()
            if notes:
                self.add(*[f"- note: {n}" for n in notes], "")
            for p in paths:
                rel = os.path.relpath(p, self.out_dir)
                self.add(f"![{fig}: {os.path.basename(p)}]({rel})", "")
            print(f"report: {fig}: " + ", ".join(paths))
        if skipped:
            self.add("### Not drawn", "", *skipped, "")

    def write(self):
        self.add(f"# rhead report: `{os.path.abspath(self.run_dir)}`", "")
        self.load()
        job = next((s.header.get("job_file") for s in self.stores.values() if s.header.get("job_file")), None)
        if job:
            self.add(f"Job file: `{job}`", "")
        self.stages_section()
        self.models_section()
        self.score_numbers()
        self.correlate_numbers()
        self.generate_numbers()
        self.ablate_numbers()
        self.zoo_section()
        self.figures_section()
        path = os.path.join(self.out_dir, "report.md")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(self.lines).rstrip() + "\n")
        return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="run directory holding the stage stores (<stage>.h5)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/figures)")
    args = p.parse_args(argv)
    if not os.path.isdir(args.run_dir):
        p.error(f"{args.run_dir}: no such run directory")
    out = args.out or os.path.join(args.run_dir, "figures")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        print(f"report: cannot create {out}: {e}", file=sys.stderr)
        return 2
    r = Report(args.run_dir, out)
    path = r.write()
    print(f"report: {path}")
    if r.failed:
        print(f"report: failed figures: {', '.join(r.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
