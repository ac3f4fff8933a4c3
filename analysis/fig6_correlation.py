#!/usr/bin/python3
"""Figure 6: model x model correlation of the flattened [layer, head] mean retrieval-score maps, from
RUN_DIR/correlate.h5, every cell annotated; cells whose models have different shapes are hatched and
marked with a dagger (their value follows the store's shape_policy). Writes fig6_correlation.png
(fig6_<metric>.png for --metric other than pearson)."""

import sys

import numpy as np

import figcommon
from figcommon import plt
import figure_data as fd
import rhead_stores

METRICS = ("pearson", "spearman", "top_k_jaccard")


def plotted_data(run_dir: str, metric: str = "pearson", order=None):
    """{"models", "matrix", "mismatch", "pairs", "top_k", "shape_policy"} in plotting order."""
    c = rhead_stores.read_correlate(rhead_stores.store_path(run_dir, "correlate"))
    if metric not in c.matrices:
        raise rhead_stores.StoreError(f"{c.path}: no /{metric} matrix")
    models, mat = fd.select_matrix(c.models, c.matrices[metric], order)
    _, mism = fd.select_matrix(c.models, c.shape_mismatch, order)
    return {"models": models, "matrix": mat, "mismatch": mism.astype(bool), "pairs": c.pairs,
            "top_k": c.top_k, "shape_policy": c.shape_policy}


def draw(run_dir: str, out_dir: str, metric: str = "pearson", order=None):
    d = plotted_data(run_dir, metric, order)
    models, mat, mism = d["models"], d["matrix"], d["mismatch"]
    n = len(models)
    size = max(4.5, 0.85 * n + 2.8)
    fig, ax = plt.subplots(figsize=(size + 1.0, size), layout="constrained")
    lo = 0.0 if metric == "top_k_jaccard" else -1.0
    cmap = "viridis" if metric == "top_k_jaccard" else "RdBu_r"
    im = ax.imshow(mat, cmap=cmap, vmin=lo, vmax=1.0)
    for i in range(n):
        for j in range(n):
            v = mat[i, j]
            text = "n/a" if np.isnan(v) else f"{v:.3f}"
            if mism[i, j]:
                text += "\u2020"
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                           edgecolor="0.55", lw=0))
            dark = not np.isnan(v) and (abs(v) > 0.6 if lo < 0 else v < 0.35)
            ax.text(j, i, text, ha="center", va="center", fontsize=8 if n <= 8 else 6,
                    color="white" if dark else "black")
    ax.set_xticks(range(n), models, rotation=40, ha="right", fontsize=9)
    ax.set_yticks(range(n), models, fontsize=9)
    name = {"pearson": "Pearson r", "spearman": "Spearman rho",
            "top_k_jaccard": f"top-{d['top_k']} Jaccard overlap"}[metric]
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label(name)
    ax.set_title(f"Figure 6: {name} of mean retrieval-score maps", fontsize=11)
    if mism.any():
        ax.set_xlabel(f"\u2020 different [layer, head] shapes, compared by shape_policy "
                      f"'{d['shape_policy']}'", fontsize=8.5)
    fname = "fig6_correlation.png" if metric == "pearson" else f"fig6_{metric}.png"
    return [figcommon.save(fig, out_dir, fname)]


def _parser():
    p = figcommon.parser(__doc__)
    p.add_argument("--metric", choices=METRICS, default="pearson", help="matrix to draw (default pearson)")
    p.add_argument("--order", nargs="+", default=None, help="models to show, in this order (default: store order)")
    return p


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, _parser()))
