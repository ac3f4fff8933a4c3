#!/usr/bin/python3
"""Figure 8: extractive QA under masking: token F1 (percent, mean over the task's items) vs the number K
of masked heads, the top-K retrieval heads vs K random non-retrieval heads (mean over the random draws
with a min..max band, or --band std), the unmasked score dashed; one panel per model, task of kind "qa"
and mask mode, from RUN_DIR/ablate.h5's /summary/<model>/tasks (checked against the task cells).
Writes fig8_qa.png; draws nothing (a note) when the store has no QA task."""

import sys

import numpy as np

import ablate_data as ad
import figcommon
import rhead_stores

METRIC_LABELS = {"f1": "F1 (%)", "exact_match": "exact match (%)"}


def task_panels(run_dir: str, kinds, metric: str, models=None, figure="Figure 8"):
    """[(model, task, kind, mode, series_vs_k dict, items)] for the tasks whose kind is in ``kinds``,
    tasks grouped by kind (ablate_data.tasks_by_kind) in the order of ``kinds``; raises NothingToDraw
    when there is none. Summary rows that disagree with the task cells are noted."""
    a = rhead_stores.read_ablate(rhead_stores.store_path(run_dir, "ablate"))
    panels = []
    for name, s in a.summaries.items():
        if models and name not in models:
            continue
        grouped = ad.tasks_by_kind({t: ts.kind for t, ts in s.tasks.items()})
        for kind in kinds:
            for task in grouped.get(kind, []):
                ts = s.tasks[task]
                values = getattr(ts, metric)
                cells = [c for c in a.task_cells if c["model"] == name and c["task"] == task]
                diff = ad.compare_rows(ts.rows, ts.k, ts.n_items, values, ad.rows_from_cells(cells, metric))
                if diff:
                    figcommon.note(f"{figure}: {name} / {task}: summary disagrees with the task cells "
                                   f"({len(diff)} rows): " + "; ".join(diff[:3])
                                   + (" ..." if len(diff) > 3 else ""))
                items = int(np.max(ts.n_items)) if len(ts.n_items) else 0
                for mode, series in ad.series_vs_k(ts.rows, ts.k, ad.with_counts(values, ts.n_items)).items():
                    panels.append((name, task, kind, mode, series, items))
    if not panels:
        what = " or ".join(f'"{k}"' for k in kinds)
        raise figcommon.NothingToDraw(f"{a.path} has no task of kind {what}"
                                      + (f" for models {models}" if models else ""))
    return panels


def y_limits(ax, series_list):
    """0 .. a little above the largest value shown (at most 100)."""
    vals = np.concatenate([np.concatenate([s["top"], s["rand_max"], [s["baseline"]]]) for s in series_list])
    vals = vals[~np.isnan(vals)]
    top = float(vals.max()) if vals.size else 100.0
    ax.set_ylim(0, min(102.0, max(5.0, top * 1.12 + 2.0)))


def plotted_data(run_dir: str, metric: str = "f1", models=None):
    return task_panels(run_dir, ("qa",), metric, models, "Figure 8")


def draw(run_dir: str, out_dir: str, metric="f1", band="minmax", models=None):
    panels = plotted_data(run_dir, metric, models)
    several_modes = len({p[3] for p in panels}) > 1
    fig, axes = figcommon.panel_grid(len(panels))
    for ax, (name, task, kind, mode, series, items) in zip(axes.ravel(), panels):
        figcommon.plot_vs_k(ax, series, band, ylabel=METRIC_LABELS[metric])
        y_limits(ax, [series])
        ax.set_title(f"{name}: {task} ({items} items)" + (f" [{mode} mask]" if several_modes else ""),
                     fontsize=10)
    figcommon.shared_legend(axes, len(panels))
    modes = sorted({p[3] for p in panels})
    fig.suptitle(f"Figure 8: extractive QA {METRIC_LABELS[metric].split(' (')[0]} vs heads masked"
                 + ("" if several_modes else f" ({modes[0]} mask)"), fontsize=12)
    return [figcommon.save(fig, out_dir, "fig8_qa.png")]


def _parser():
    p = figcommon.parser(__doc__)
    p.add_argument("--metric", choices=("f1", "exact_match"), default="f1", help="score to plot (default f1)")
    p.add_argument("--band", choices=("minmax", "std"), default="minmax",
                   help="band around the random mean: min..max over draws (default) or +/- one std")
    p.add_argument("--models", nargs="+", default=None, help="only these models (default: all)")
    return p


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, _parser()))
