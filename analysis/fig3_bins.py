#!/usr/bin/python3
"""Figure 3: share of heads in each retrieval-score bin (= 0, (0, 0.1], (0.1, 0.5], > 0.5), one pie per
model, from RUN_DIR/score.h5. Writes fig3_bins.png."""

import math
import sys

import numpy as np

import figcommon
from figcommon import plt
import figure_data as fd
import rhead_stores


def plotted_data(run_dir: str):
    """{model: {"counts": int[4], "percent": float[4], "shape": (L, H), "retrieval": (n, pct)}}."""
    score = rhead_stores.read_score(rhead_stores.store_path(run_dir, "score"))
    out = {}
    for name, m in score.models.items():
        counts = fd.bin_counts(m.mean)
        if not np.array_equal(counts, m.bins):
            print(f"fig3_bins: warning: {name}: bins recomputed from /mean {counts.tolist()} differ "
                  f"from the store's /bins {m.bins.tolist()}; plotting the recomputed ones",
                  file=sys.stderr)
        out[name] = {"counts": counts, "percent": fd.bin_percentages(counts), "shape": m.shape,
                     "retrieval": fd.retrieval_fraction(m.mean, m.retrieval_threshold)}
    return out


def draw(run_dir: str, out_dir: str):
    data = plotted_data(run_dir)
    n = len(data)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.9 * nrows + 0.6),
                             layout="constrained", squeeze=False)
    for ax, (name, d) in zip(axes.ravel(), data.items()):
        pct = d["percent"]
        wedges, _ = ax.pie(d["counts"], colors=figcommon.BIN_COLOURS, startangle=90, counterclock=False,
                           wedgeprops={"linewidth": 0.8, "edgecolor": "white"})
        for w, p in zip(wedges, pct):  # in-wedge labels for the wedges large enough to hold them
            if p >= 8:
                ang = np.deg2rad((w.theta1 + w.theta2) / 2)
                ax.text(0.6 * np.cos(ang), 0.6 * np.sin(ang), f"{p:.1f}%", ha="center", va="center",
                        fontsize=9)
        L, H = d["shape"]
        nret, pret = d["retrieval"]
        ax.set_title(f"{name}\n{L}x{H} heads; {nret} ({pret:.1f}%) > 0.1", fontsize=9.5)
        ax.legend(wedges, [f"{lab}: {p:.1f}%" for lab, p in zip(fd.BIN_LABELS, pct)],
                  loc="upper center", bbox_to_anchor=(0.5, 0.02), fontsize=8, ncol=2,
                  frameon=False, handlelength=1.0, columnspacing=0.8)
        ax.set_aspect("equal")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle("Figure 3: heads by mean retrieval score (share of all heads)", fontsize=12)
    return [figcommon.save(fig, out_dir, "fig3_bins.png")]


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, figcommon.parser(__doc__)))
