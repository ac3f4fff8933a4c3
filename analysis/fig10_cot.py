#!/usr/bin/python3
"""Figure 10: chain-of-thought vs answer-only prompting under masking: task score (exact match, percent;
--metric f1) vs the number K of masked heads, the top-K retrieval heads vs K random non-retrieval heads
(mean over the random draws with a min..max band, or --band std), the unmasked score dashed. One row per
model, benchmark and mask mode: the task of kind "cot" on the left, its answer-only ("direct") partner on
the right (paired by name: gsm8k_cot with gsm8k or gsm8k_direct), from RUN_DIR/ablate.h5's
/summary/<model>/tasks. Writes fig10_cot.png; draws nothing (a note) when the store has no such task."""

import sys

import ablate_data as ad
import fig8_qa
import figcommon
from figcommon import plt

SIDES = (("cot", "with chain of thought"), ("direct", "answer only"))


def plotted_data(run_dir: str, metric: str = "exact_match", models=None):
    """[(model, benchmark, mode, {"cot": (task, series, items) or None, "direct": ...})]."""
    panels = fig8_qa.task_panels(run_dir, ("cot", "direct"), metric, models, "Figure 10")
    rows = []
    for model in dict.fromkeys(p[0] for p in panels):
        mine = [p for p in panels if p[0] == model]
        pairs = ad.pair_cot_tasks({p[1]: p[2] for p in mine})
        for mode in dict.fromkeys(p[3] for p in mine):
            for bench, cot, direct in pairs:
                cols = {}
                for kind, task in (("cot", cot), ("direct", direct)):
                    hit = [p for p in mine if p[1] == task and p[3] == mode] if task else []
                    cols[kind] = (task, hit[0][4], hit[0][5]) if hit else None
                if cols["cot"] or cols["direct"]:
                    rows.append((model, bench, mode, cols))
    return rows


def draw(run_dir: str, out_dir: str, metric="exact_match", band="minmax", models=None):
    rows = plotted_data(run_dir, metric, models)
    several_modes = len({r[2] for r in rows}) > 1
    fig = plt.figure(figsize=(10.4, 3.0 * len(rows) + 1.5), layout="constrained")
    gs = fig.add_gridspec(len(rows) + 1, 2, height_ratios=[3.0] * len(rows) + [0.45])
    axes = [[fig.add_subplot(gs[r, j]) for j in range(2)] for r in range(len(rows))]
    for r, (model, bench, mode, cols) in enumerate(rows):
        shown = [c[1] for c in cols.values() if c]
        for j, (kind, side) in enumerate(SIDES):
            ax = axes[r][j]
            if cols[kind] is None:
                ax.text(0.5, 0.5, f"no {side} task for {bench}", ha="center", va="center",
                        transform=ax.transAxes, fontsize=9, color="0.4")
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            task, series, items = cols[kind]
            figcommon.plot_vs_k(ax, series, band, ylabel=fig8_qa.METRIC_LABELS[metric])
            fig8_qa.y_limits(ax, shown)  # both sides of a benchmark on one scale
            ax.set_title(f"{model}: {task}, {side} ({items} items)"
                         + (f" [{mode} mask]" if several_modes else ""), fontsize=9.5)
    handles, labels = max((ax.get_legend_handles_labels() for row in axes for ax in row),
                          key=lambda hl: len(hl[1]))
    leg = fig.add_subplot(gs[len(rows), :])
    leg.axis("off")
    leg.legend(handles, labels, loc="center", ncol=2, fontsize=9, frameon=False)
    modes = sorted({r[2] for r in rows})
    fig.suptitle("Figure 10: chain of thought vs answer only under masking"
                 + ("" if several_modes else f" ({modes[0]} mask)"), fontsize=12)
    return [figcommon.save(fig, out_dir, "fig10_cot.png")]


def _parser():
    p = figcommon.parser(__doc__)
    p.add_argument("--metric", choices=("exact_match", "f1"), default="exact_match",
                   help="score to plot (default exact_match)")
    p.add_argument("--band", choices=("minmax", "std"), default="minmax",
                   help="band around the random mean: min..max over draws (default) or +/- one std")
    p.add_argument("--models", nargs="+", default=None, help="only these models (default: all)")
    return p


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, _parser()))
