#!/usr/bin/python3
"""Figure 7: needle-in-a-haystack score (mean ROUGE-1 recall over the grid, 0-100) vs the number K of
masked heads, the top-K retrieval heads vs K random non-retrieval heads (mean over the random draws with
a min..max band, or --band std for mean +/- one standard deviation), the unmasked score dashed; one panel
per model and mask mode, from RUN_DIR/ablate.h5's /summary rows (checked against the cells: a mismatch
is reported). Writes fig7_niah_vs_k.png."""

import sys

import ablate_data as ad
import figcommon
import rhead_stores


def plotted_data(run_dir: str, models=None):
    """{"panels": [(model, mode, series_vs_k dict)], "problems": {model: [summary vs cells lines]}}."""
    a = rhead_stores.read_ablate(rhead_stores.store_path(run_dir, "ablate"))
    panels, problems = [], {}
    for name, s in a.summaries.items():
        if (models and name not in models) or not s.n_cells.sum():  # no NIAH cells (tasks only)
            continue
        cells = [c for c in a.cells if c["model"] == name]
        diff = ad.compare_rows(s.rows, s.k, s.n_cells, s.mean_recall, ad.rows_from_cells(cells, "rouge1_recall"))
        if diff:
            problems[name] = diff
            figcommon.note(f"Figure 7: {name}: /summary disagrees with the cells ({len(diff)} rows): "
                           + "; ".join(diff[:3]) + (" ..." if len(diff) > 3 else ""))
        for mode, series in ad.series_vs_k(s.rows, s.k, ad.with_counts(s.mean_recall, s.n_cells)).items():
            panels.append((name, mode, series))
    if not panels:
        raise figcommon.NothingToDraw(f"{a.path} has no masked-NIAH summary rows"
                                      + (f" for models {models}" if models else ""))
    return {"panels": panels, "problems": problems}


def draw(run_dir: str, out_dir: str, band="minmax", models=None):
    d = plotted_data(run_dir, models)
    panels = d["panels"]
    several_modes = len({mode for _, mode, _ in panels}) > 1
    fig, axes = figcommon.panel_grid(len(panels))
    for ax, (name, mode, series) in zip(axes.ravel(), panels):
        figcommon.plot_vs_k(ax, series, band, ylabel="NIAH ROUGE-1 recall (mean over the grid)")
        ax.set_ylim(-3, 105)
        ax.set_title(f"{name}" + (f" [{mode} mask]" if several_modes else ""), fontsize=10)
    figcommon.shared_legend(axes, len(panels))
    modes = sorted({mode for _, mode, _ in panels})
    fig.suptitle("Figure 7: NIAH score vs heads masked, retrieval vs random"
                 + ("" if several_modes else f" ({modes[0]} mask)"), fontsize=12)
    return [figcommon.save(fig, out_dir, "fig7_niah_vs_k.png")]


def _parser():
    p = figcommon.parser(__doc__)
    p.add_argument("--band", choices=("minmax", "std"), default="minmax",
                   help="band around the random mean: min..max over draws (default) or +/- one std")
    p.add_argument("--models", nargs="+", default=None, help="only these models (default: all)")
    return p


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, _parser()))
