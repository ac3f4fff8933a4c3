#!/usr/bin/python3
"""Figure 5: layer x head maps of the mean retrieval score in the paper's 4 colour bins (= 0, (0, 0.1],
(0.1, 0.5], > 0.5). Base above variant for each named pair of RUN_DIR/correlate.h5 (when present),
otherwise one map per model, from RUN_DIR/score.h5. Writes fig5_heatmaps.png."""

import os
import sys

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap

import figcommon
from figcommon import plt
import figure_data as fd
import rhead_stores


def plotted_data(run_dir: str, pairs=None):
    """(panels, classes): panels = [(base, variant, label)], classes = {model: int [layer, head]}.

    pairs: ["base:variant", ...] to draw instead of correlate.h5's named pairs."""
    score = rhead_stores.read_score(rhead_stores.store_path(run_dir, "score"))
    named = []
    corr_path = rhead_stores.store_path(run_dir, "correlate")
    if pairs:
        for spec in pairs:
            a, sep, b = spec.partition(":")
            if not sep or a not in score.models or b not in score.models:
                raise rhead_stores.StoreError(f"{score.path}: --pairs {spec!r}: expected BASE:VARIANT "
                                              f"naming two of {list(score.models)}")
            named.append((a, b, ""))
    elif os.path.exists(corr_path):
        try:
            named = [(p.a, p.b, p.label) for p in rhead_stores.read_correlate(corr_path).pairs]
        except rhead_stores.StoreError as e:  # the pairs are optional: draw every model instead
            print(f"fig5_heatmaps: warning: {e}; drawing one map per model", file=sys.stderr)
    panels = fd.heatmap_pairs(list(score.models), named)
    classes = {n: fd.bin_classes(m.mean) for n, m in score.models.items()}
    return panels, classes


def _map(ax, cls, name, cmap, norm):
    # x = layer id (paper), y = head id
    im = ax.imshow(cls.T, origin="lower", aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    L, H = cls.shape
    ax.set_title(f"{name} ({L}x{H})", fontsize=9.5)
    ax.set_xlabel("layer")
    ax.set_ylabel("head")
    return im


def draw(run_dir: str, out_dir: str, pairs=None):
    panels, classes = plotted_data(run_dir, pairs)
    cmap = ListedColormap(figcommon.BIN_COLOURS)
    norm = BoundaryNorm(np.arange(-0.5, 4.5, 1.0), cmap.N)
    paired = bool(panels[0][1])
    if paired:
        ncols, nrows = len(panels), 2
    else:
        ncols = min(4, len(panels))
        nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(6.0, 3.6 * ncols + 1.2), 3.2 * nrows + 1.0),
                             layout="constrained", squeeze=False)
    im = None
    if paired:
        for c, (a, b, label) in enumerate(panels):
            im = _map(axes[0, c], classes[a], a, cmap, norm)
            _map(axes[1, c], classes[b], b, cmap, norm)
            if label and label != f"{a} vs {b}":
                axes[0, c].set_title(f"{label}\n{axes[0, c].get_title()}", fontsize=9.5)
        title = "Figure 5: retrieval-score maps\nbase (top row) vs variant (bottom row)"
    else:
        for ax, (a, _, _) in zip(axes.ravel(), panels):
            im = _map(ax, classes[a], a, cmap, norm)
        for ax in axes.ravel()[len(panels):]:
            ax.axis("off")
        title = "Figure 5: retrieval-score maps per model"
    cbar = fig.colorbar(im, ax=axes, ticks=range(4), shrink=0.9, aspect=30)
    cbar.ax.set_yticklabels(fd.BIN_LABELS)
    cbar.set_label("mean retrieval score bin")
    fig.suptitle(title, fontsize=12)
    return [figcommon.save(fig, out_dir, "fig5_heatmaps.png")]


def _parser():
    p = figcommon.parser(__doc__)
    p.add_argument("--pairs", nargs="+", default=None, metavar="BASE:VARIANT",
                   help="pairs to draw (default: correlate.h5's named pairs, else every model alone)")
    return p


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, _parser()))
