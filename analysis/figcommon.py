"""Shared plumbing of the figure scripts: headless matplotlib, file names, the command line, colours,
and the panels shared by the ablation figures (score vs K, panel grids, one legend)."""

import argparse
import os
import re
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")  # never needs a display
import matplotlib.pyplot as plt  # noqa: E402

import ablate_data as ad  # noqa: E402
import rhead_stores  # noqa: E402

DPI = 150

# Figure 3 / 5 bin colours: grey for heads that never copy, then light -> strong for higher scores.
BIN_COLOURS = ("#d9d9d9", "#9ecae1", "#fd8d3c", "#b10026")

# Ablation figures (1, 7-10): masking the top-K retrieval heads vs K random non-retrieval heads.
TOP_COLOUR = "#d62728"
RANDOM_COLOUR = "#1f77b4"
BASELINE_COLOUR = "0.45"
# Figure 9 error types (correct / incomplete / wrong extraction / hallucination), the NIAH map's
# green and yellow for the first two, so "correct" reads as the heatmaps' good end.
ERROR_COLOURS = ("#0CD79F", "#EBB839", "#8c6bb1", "#F0496E")


class NothingToDraw(Exception):
    """The stores are fine but hold nothing this figure shows (e.g. an ablate store without tasks)."""


_notes = []


def note(text: str) -> None:
    """A one-line remark about a figure (printed to stderr; report.py also puts it in the report)."""
    _notes.append(text)
    print(f"note: {text}", file=sys.stderr)


def take_notes():
    """The notes since the last call (and forget them)."""
    out = list(_notes)
    _notes.clear()
    return out


def safe_name(name: str) -> str:
    """A model name as a file-name fragment."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def save(fig, out_dir: str, file_name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, file_name)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("run_dir", help="run directory holding the stage stores (<stage>.h5)")
    p.add_argument("out_dir", nargs="?", default=None,
                   help="where to write the PNG(s) (default: RUN_DIR/figures)")
    return p


def main(draw, p: argparse.ArgumentParser, argv=None) -> int:
    """Parse, call draw(run_dir, out_dir, **extra options), print the written paths.

    Store problems (missing, incomplete, newer schema) exit with status 2 and a message naming the file;
    a store without anything for the figure (NothingToDraw) exits 0 with a one-line message."""
    args = p.parse_args(argv)
    opts = {k: v for k, v in vars(args).items() if k not in ("run_dir", "out_dir")}
    out_dir = args.out_dir or os.path.join(args.run_dir, "figures")
    try:
        paths = draw(args.run_dir, out_dir, **opts)
    except rhead_stores.StoreError as e:
        print(f"{os.path.basename(sys.argv[0])}: {e}", file=sys.stderr)
        return 2
    except NothingToDraw as e:  # not an error: this run has nothing for the figure
        print(f"{os.path.basename(sys.argv[0])}: nothing to draw: {e}", file=sys.stderr)
        return 0
    for path in paths:
        print(path)
    return 0


def k_axis(ax, ks):
    """x axis of a score-vs-K plot: the K values evenly spaced (0, 2, 5, ..., 100 as in the paper)."""
    ax.set_xticks(range(len(ks)), [str(int(k)) for k in ks])
    ax.set_xlim(-0.4, len(ks) - 0.6)
    ax.set_xlabel("heads masked (K)")


def plot_vs_k(ax, series, band_kind="minmax", ylabel="score", band_label=None):
    """One score-vs-K panel (Figures 7, 8, 10): top-K retrieval heads masked vs K random heads (mean over
    draws with a band) and the unmasked baseline as a dashed line. series: ablate_data.series_vs_k."""
    ks = series["ks"]
    x = np.arange(len(ks))
    if not np.isnan(series["baseline"]):
        ax.axhline(series["baseline"], color=BASELINE_COLOUR, lw=0.9, ls="--", label="no mask")
    top = series["top"]
    ok = ~np.isnan(top)
    ax.plot(x[ok], top[ok], "-o", color=TOP_COLOUR, lw=1.6, ms=4.5, zorder=3,
            label="top-K retrieval heads masked")
    mean = series["rand_mean"]
    ok = ~np.isnan(mean)
    draws = int(series["rand_n"].max()) if len(ks) else 0
    ax.plot(x[ok], mean[ok], "-s", color=RANDOM_COLOUR, lw=1.6, ms=4.0,
            label=f"K random heads masked (mean of {draws} draw{'s' if draws != 1 else ''})")
    if draws > 1:
        lo, hi = ad.band(series, band_kind)
        ax.fill_between(x[ok], lo[ok], hi[ok], color=RANDOM_COLOUR, alpha=0.18, lw=0,
                        label=band_label or ("random: min..max over draws" if band_kind == "minmax"
                                             else "random: mean +/- 1 std"))
    k_axis(ax, ks)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.25)


def panel_grid(n, ncols_max=3, w=4.6, h=3.4, extra_h=0.9, min_w=7.0):
    """A figure with n panels in rows of at most ncols_max: (fig, axes [row, col])."""
    ncols = max(1, min(ncols_max, n))
    nrows = -(-n // ncols)
    return plt.subplots(nrows, ncols, figsize=(max(min_w, w * ncols + 0.4), h * nrows + extra_h),
                        layout="constrained", squeeze=False)


def shared_legend(axes, n_used, ncol=2, fontsize=8.5):
    """One legend for all panels: in the first empty panel slot, else below the last panel. Unused
    slots are switched off."""
    flat = axes.ravel()
    handles, labels = flat[0].get_legend_handles_labels()
    for ax in flat[n_used:]:
        ax.axis("off")
    if n_used < flat.size:
        flat[n_used].legend(handles, labels, loc="center", fontsize=fontsize + 0.5, frameon=False)
    else:
        ncol = ncol if axes.shape[1] > 1 or len(labels) < 3 else 1
        flat[n_used - 1].legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                                ncol=ncol, fontsize=fontsize, frameon=False)
