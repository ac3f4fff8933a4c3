#!/usr/bin/python3
"""Figure 1: needle-in-a-haystack heatmaps (needle depth x context length, mean ROUGE-1 recall) of one
model with no head masked, with the top-K retrieval heads masked and with K random non-retrieval heads
masked, side by side (one row per mask mode), from RUN_DIR/ablate.h5. K: --k, default the largest K
with both top-K and random cells; random panel: the mean over every random draw, or draw --seed S.
Writes fig1_<model>.png per model."""

import sys

import ablate_data as ad
import figcommon
from figcommon import plt
import figure_data as fd
import niah_heatmap
import rhead_stores


def plotted_data(run_dir: str, k=None, seed=None, models=None):
    """{model: [(mode, K, [(panel title, niah_pivot dict or None), x3])]}: one row per mask mode."""
    a = rhead_stores.read_ablate(rhead_stores.store_path(run_dir, "ablate"))
    if not a.cells:
        raise figcommon.NothingToDraw(f"{a.path} has no masked-NIAH cells")
    out = {}
    for m in fd.models_of_cells(a.cells):
        if models and m not in models:
            continue
        base = ad.select_cells(a.cells, m, "none")
        modes = []
        for c in a.cells:
            if c["model"] == m and c["mode"] != ad.BASELINE and c["mode"] not in modes:
                modes.append(c["mode"])
        rows = []
        for mode in modes:
            ks = ad.masked_ks(a.cells, m, mode)
            kk = ad.default_k(ks["top"], ks["random"]) if k is None else int(k)
            if kk not in ks["top"] and kk not in ks["random"]:
                figcommon.note(f"Figure 1: {m}, mode {mode}: no cells with K = {kk} "
                               f"(top-K: {ks['top']}, random: {ks['random']})")
                continue
            top = ad.select_cells(a.cells, m, "top", kk, mode)
            rand = ad.select_cells(a.cells, m, "random", kk, mode, seed)
            draws = sorted({ad.selection_kind(c["selection"])[1] for c in rand})
            if seed is not None:
                rtitle = f"{kk} random heads masked (draw {seed})"
            else:
                rtitle = f"{kk} random heads masked (mean of {len(draws)} draw{'s' if len(draws) != 1 else ''})"
            rows.append((mode, kk, [
                ("no mask", fd.niah_pivot(base) if base else None),
                (f"top-{kk} retrieval heads masked", fd.niah_pivot(top) if top else None),
                (rtitle, fd.niah_pivot(rand) if rand else None)]))
        if rows:
            out[m] = rows
    if not out:
        raise rhead_stores.StoreError(f"{a.path}: no masked cells"
                                      + (f" with K = {k}" if k is not None else "")
                                      + (f" for models {models}" if models else ""))
    return out


def draw(run_dir: str, out_dir: str, k=None, seed=None, models=None):
    data = plotted_data(run_dir, k, seed, models)
    cmap = niah_heatmap.niah_cmap()
    paths = []
    for name, rows in data.items():
        shapes = [p["mean"].shape for _, _, panels in rows for _, p in panels if p is not None]
        nd = max(s[0] for s in shapes)
        nl = max(s[1] for s in shapes)
        w = min(5.6, max(3.4, 0.3 * nl + 1.6))   # 31 lengths (the paper's grid) still fit one row
        h = min(4.6, max(2.8, 0.26 * nd + 1.7))
        fig, axes = plt.subplots(len(rows), 3, figsize=(3 * w + 1.0, len(rows) * h + 0.8),
                                 layout="constrained", squeeze=False)
        im = None
        for r, (mode, kk, panels) in enumerate(rows):
            for c, (title, p) in enumerate(panels):
                ax = axes[r, c]
                if p is None:
                    ax.text(0.5, 0.5, "no cells", ha="center", va="center", transform=ax.transAxes)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.set_title(title, fontsize=9.5)
                    continue
                im = niah_heatmap.heatmap(ax, p, cmap, max_xticks=10)
                prefix = f"[{mode}] " if len(rows) > 1 and c > 0 else ""
                ax.set_title(f"{prefix}{title}\nmean recall {p['overall']:.1f}", fontsize=9.5)
                if c > 0:
                    ax.set_ylabel("")
                if r < len(rows) - 1:
                    ax.set_xlabel("")
        if im is not None:
            cbar = fig.colorbar(im, ax=axes, shrink=0.9, aspect=30)
            cbar.set_label("ROUGE-1 recall (x100)")
        modes = ", ".join(m for m, _, _ in rows)
        fig.suptitle(f"Figure 1: {name}, NIAH with retrieval heads vs random heads masked "
                     f"(mask mode {modes})", fontsize=11)
        paths.append(figcommon.save(fig, out_dir, f"fig1_{figcommon.safe_name(name)}.png"))
    return paths


def _parser():
    p = figcommon.parser(__doc__)
    p.add_argument("--k", type=int, default=None,
                   help="heads masked (default: the largest K with both top-K and random cells)")
    p.add_argument("--seed", type=int, default=None,
                   help="random draw to show (default: the mean over every draw)")
    p.add_argument("--models", nargs="+", default=None, help="only these models (default: all)")
    return p


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, _parser()))
