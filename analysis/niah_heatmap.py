#!/usr/bin/python3
"""Needle-in-a-haystack heatmaps: mean ROUGE-1 recall (0-100) per (needle depth, context length) for
every model of RUN_DIR/generate.h5 (cells of several needles averaged), in the official viz notebook's
colours #F0496E -> #EBB839 -> #0CD79F. Writes niah_<model>.png per model."""

import sys

import numpy as np
from matplotlib.colors import LinearSegmentedColormap

import figcommon
from figcommon import plt
import figure_data as fd
import rhead_stores

CMAP = LinearSegmentedColormap.from_list("rhead_niah", list(fd.NIAH_COLOURS))


def plotted_data(run_dir: str, models=None):
    g = rhead_stores.read_generate(rhead_stores.store_path(run_dir, "generate"))
    names = [m for m in fd.models_of_cells(g.cells) if not models or m in models]
    return {m: fd.niah_pivot(g.cells, m) for m in names}


def _length_label(n: int) -> str:
    return f"{n / 1000:.0f}K" if n >= 1000 and n % 1000 == 0 else (f"{n / 1000:.1f}K" if n >= 1000 else str(n))


def niah_cmap():
    """The notebook's colour map; grey for (depth, length) without a cell."""
    cmap = CMAP.copy()
    cmap.set_bad("0.85")
    return cmap


def heatmap(ax, d, cmap=None, max_xticks=20):
    """Draw one niah_pivot result on ax (depth rows from the top, length columns); returns the mesh."""
    nd, nl = d["mean"].shape
    im = ax.pcolormesh(np.ma.masked_invalid(d["mean"]), cmap=cmap or niah_cmap(), vmin=0, vmax=100,
                       edgecolors="0.6", linewidth=0.4)
    ax.invert_yaxis()  # depth 0 at the top, as in the paper
    step = max(1, -(-nl // max_xticks))
    rotate = nl > 8 or (nl > 4 and max_xticks < 20)
    ax.set_xticks(np.arange(nl)[::step] + 0.5, [_length_label(int(v)) for v in d["lengths"][::step]],
                  rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
    dstep = max(1, -(-nd // 12))
    ax.set_yticks(np.arange(nd)[::dstep] + 0.5, [f"{v:g}" for v in d["depths"][::dstep]], fontsize=8)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth (%)")
    return im


def draw(run_dir: str, out_dir: str, models=None):
    data = plotted_data(run_dir, models)
    if not data:
        raise rhead_stores.StoreError(f"{run_dir}/generate.h5: no cells{' for ' + str(models) if models else ''}")
    paths = []
    cmap = niah_cmap()
    for name, d in data.items():
        nd, nl = d["mean"].shape
        fig, ax = plt.subplots(figsize=(max(5.5, 0.42 * nl + 3.0), max(3.6, 0.32 * nd + 2.0)),
                               layout="constrained")
        im = heatmap(ax, d, cmap)
        reps = int(d["count"].max())
        ax.set_title(f"{name}\nNIAH ROUGE-1 recall, mean {d['overall']:.1f}"
                     + (f" (cells average up to {reps} needles)" if reps > 1 else ""), fontsize=10)
        cbar = fig.colorbar(im, ax=ax)
        cbar.set_label("ROUGE-1 recall (x100)")
        paths.append(figcommon.save(fig, out_dir, f"niah_{figcommon.safe_name(name)}.png"))
    return paths


def _parser():
    p = figcommon.parser(__doc__)
    p.add_argument("--models", nargs="+", default=None, help="only these models (default: all)")
    return p


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, _parser()))
