#!/usr/bin/python3
"""Figure 4: retrieval score vs activation frequency per head (heads sorted by retrieval score, top N),
always-on heads (frequency == 1) marked; one panel per model, from RUN_DIR/score.h5.
Writes fig4_frequency.png."""

import sys

import numpy as np

import figcommon
from figcommon import plt
import figure_data as fd
import rhead_stores

SCORE_COLOUR = "#1f77b4"   # paper: blue score curve
FREQ_COLOUR = "#2ca02c"    # paper: green frequency curve
ALWAYS_COLOUR = "#d62728"


def plotted_data(run_dir: str, top: int = 100, models=None):
    score = rhead_stores.read_score(rhead_stores.store_path(run_dir, "score"))
    names = [m for m in score.models if not models or m in models]
    return {n: fd.frequency_series(score.models[n].mean, score.models[n].frequency, top) for n in names}


def draw(run_dir: str, out_dir: str, top: int = 100, models=None):
    data = plotted_data(run_dir, top, models)
    if not data:
        raise rhead_stores.StoreError(f"{run_dir}: none of the models {models} in score.h5")
    n = len(data)
    ncols = 1 if n == 1 else 2
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.2 * ncols, 3.1 * nrows + 0.9),
                             layout="constrained", squeeze=False)
    for ax, (name, d) in zip(axes.ravel(), data.items()):
        x = np.arange(1, d["score"].size + 1)
        ax.plot(x, d["score"], color=SCORE_COLOUR, lw=1.4, label="retrieval score")
        ax.plot(x, d["frequency"], color=FREQ_COLOUR, lw=1.1, label="activation frequency")
        on = d["always_on"]
        ax.scatter(x[on], d["frequency"][on], marker="v", s=22, color=ALWAYS_COLOUR, zorder=3,
                   label="always on (frequency = 1)")
        ax.axhline(fd.RETRIEVAL_THRESHOLD, color="0.5", lw=0.8, ls="--", label="score 0.1 threshold")
        ax.set_ylim(-0.03, 1.08)
        ax.set_xlim(0, x.size + 1)
        ax.set_xlabel(f"heads ranked by retrieval score (top {x.size})")
        ax.set_ylabel("score / frequency")
        top3 = ", ".join(fd.head_label(l, h) for l, h in d["heads"][:3])
        ax.set_title(f"{name}: {d['always_on_total']} always-on heads ({int(on.sum())} in the top "
                     f"{x.size}); top heads {top3}", fontsize=9.5)
        ax.grid(alpha=0.25)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if n < axes.size:  # an empty slot holds the legend
        axes.ravel()[n].legend(handles, labels, loc="center", fontsize=10, frameon=False)
    else:  # below the last panel, inside the layout
        axes.ravel()[-1].legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.22),
                                ncol=2, fontsize=8.5, frameon=False)
    fig.suptitle("Figure 4: retrieval score and activation frequency per head", fontsize=12)
    return [figcommon.save(fig, out_dir, "fig4_frequency.png")]


def _parser():
    p = figcommon.parser(__doc__)
    p.add_argument("--top", type=int, default=100, help="heads per panel, by score (0: all; default 100)")
    p.add_argument("--models", nargs="+", default=None, help="only these models (default: all)")
    return p


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, _parser()))
