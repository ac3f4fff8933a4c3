#!/usr/bin/python3
"""Figure 9: what goes wrong when retrieval heads are masked, from RUN_DIR/ablate.h5.

fig9_errors.png: share of masked-NIAH cells per error type (correct / incomplete retrieval / wrong
extraction / hallucination) at every K, top-K retrieval heads masked (plain bars) vs K random heads
(hatched, draws pooled), from /summary/<model>/error_counts; one panel per model and mask mode.

fig9_case_<model>.png: one failure case per model: a failed cell with the top-K heads masked (picked by
ablate_data.pick_failure_case, or --cell ID), its response, and per decode step the argmax key position
of each tracked top retrieval head against the needle's answer span and the first 4 tokens (attention
sink); next to it the same (length, depth) cell unmasked when the store has it."""

import sys
import textwrap

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

import ablate_data as ad
import figcommon
from figcommon import plt
import figure_data as fd
import rhead_stores

ERROR_LABELS = {"correct": "correct", "incomplete": "incomplete retrieval",
                "wrong_extraction": "wrong extraction", "hallucination": "hallucination"}
REGION_COLOURS = ("#0CD79F", "#F0496E", "0.75")  # needle, sink, elsewhere


def plotted_data(run_dir: str, models=None, k=None, cell=None):
    """{"bars": [(model, mode, error_fractions dict, error types)], "cases": {model: (cell, unmasked or
    None, tracked heads)}} (cells with their arrays)."""
    path = rhead_stores.store_path(run_dir, "ablate")
    a = rhead_stores.read_ablate(path)
    bars, cases = [], {}
    for name, s in a.summaries.items():
        if (models and name not in models) or not s.n_cells.sum():  # no NIAH cells (tasks only)
            continue
        for mode, fr in ad.error_fractions(s.rows, s.k, s.error_counts).items():
            bars.append((name, mode, fr, s.error_types))
    if not bars:
        raise figcommon.NothingToDraw(f"{a.path} has no masked-NIAH summary rows"
                                      + (f" for models {models}" if models else ""))
    if cell is not None:
        picked = [c for c in a.cells if c["id"] == cell]
        if not picked:
            raise rhead_stores.StoreError(f"{a.path}: --cell {cell}: no such masked-NIAH cell")
        chosen = {picked[0]["model"]: picked[0]}
    else:
        chosen = {}
        for name, _, _, _ in bars:
            if name in chosen:
                continue
            c = ad.pick_failure_case(a.cells, name, k)
            if c is None:
                figcommon.note(f"Figure 9: {name}: no failed cell with the top-K heads masked"
                               + (f" at K = {k}" if k is not None else "") + "; no failure case drawn")
            else:
                chosen[name] = c
    for name, c in chosen.items():
        base = None if c["selection"] == ad.BASELINE else ad.unmasked_counterpart(a.cells, c)
        tracked = a.summaries[name].tracked_heads if name in a.summaries else np.zeros((0, 2))
        cases[name] = (rhead_stores.read_ablate_cell(path, c["id"]),
                       rhead_stores.read_ablate_cell(path, base["id"]) if base else None, tracked)
    return {"bars": bars, "cases": cases}


def _bars(ax, fr, types):
    ks = fr["ks"]
    x = np.arange(len(ks))
    colours = [figcommon.ERROR_COLOURS[ad.ERROR_TYPES.index(t)] if t in ad.ERROR_TYPES else "0.5"
               for t in types]
    for which, offset, hatch in (("top", -0.2, None), ("random", 0.2, "///")):
        frac = 100.0 * np.nan_to_num(fr[which])
        for i, kk in enumerate(ks):
            if kk == 0 and which == "random":
                continue  # the unmasked baseline: one bar
            pos, width = (x[i], 0.5) if kk == 0 else (x[i] + offset, 0.38)
            bottom = 0.0
            for t in range(len(types)):
                ax.bar(pos, frac[i, t], width, bottom=bottom, color=colours[t], hatch=hatch,
                       edgecolor="white", linewidth=0.5)
                bottom += frac[i, t]
    figcommon.k_axis(ax, ks)
    ax.set_xlim(-0.65, len(ks) - 0.35)
    ax.set_ylim(0, 100)
    ax.set_ylabel("cells (%)")


def _case_panel(ax, ax_reg, c, tracked, title):
    arg = c.get("top_head_argmax", np.zeros((0, 0), dtype=np.int64))
    steps = np.arange(arg.shape[0])
    b, e = int(c.get("needle_begin", -1)), int(c.get("needle_end", -1))
    top = int(c.get("prompt_tokens", int(arg.max()) + 1 if arg.size else 1))
    masked = {tuple(h) for h in np.asarray(c.get("masked_heads", np.zeros((0, 2))), dtype=np.int64)}
    thin = 0.012 * top  # bands thinner than this also get a thick line, to stay visible
    ax.axhspan(0, ad.N_SINK, color=REGION_COLOURS[1], alpha=0.3, lw=0,
               label=f"first {ad.N_SINK} tokens (attention sink)")
    if ad.N_SINK < thin:
        ax.axhline(ad.N_SINK / 2, color=REGION_COLOURS[1], lw=5, alpha=0.35)
    if b >= 0:
        ax.axhspan(b, e, color=REGION_COLOURS[0], alpha=0.35, lw=0, label=f"needle answer span [{b}, {e})")
        if e - b < thin:
            ax.axhline((b + e) / 2, color=REGION_COLOURS[0], lw=5, alpha=0.45)
    cmap = plt.get_cmap("tab10")
    keep = []  # the tracked heads this cell did not mask: the ones the region bars count
    for j in range(arg.shape[1]):
        head = tuple(int(v) for v in tracked[j]) if j < len(tracked) else None
        lab = fd.head_label(*head) if head else f"#{j}"
        is_masked = head in masked
        keep.append(not is_masked)
        ax.plot(steps, arg[:, j], "o" + (":" if is_masked else "-"), ms=3.5, lw=1.0, alpha=0.85,
                color=cmap(j % 10), mfc="white" if is_masked else cmap(j % 10),
                label=f"head {lab}" + (f" (masked at K = {c['k']})" if is_masked else ""))
    ax.set_ylim(-0.02 * top, 1.02 * top)
    ax.set_xlim(-0.5, max(len(steps), 1) - 0.5)
    ax.set_ylabel("argmax key position (token)")
    ax.set_title(title, fontsize=9, loc="left")
    ax.grid(alpha=0.2)
    reg = ad.argmax_regions(arg, b, e, keep=keep) if arg.size else np.zeros((0, 3), dtype=np.int64)
    bottom = np.zeros(len(steps))
    for r, name in enumerate(ad.REGIONS):
        ax_reg.bar(steps, reg[:, r], 0.8, bottom=bottom, color=REGION_COLOURS[r], label=name)
        bottom += reg[:, r]
    ax_reg.set_xlim(ax.get_xlim())
    ax_reg.set_ylim(0, max(1, sum(keep)))
    ax_reg.set_xlabel("decode step")
    ax_reg.set_ylabel("unmasked tracked heads")
    for a in (ax, ax_reg):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_reg.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))


def _case_title(c, masked):
    resp = textwrap.shorten(str(c.get("response", "")).replace("\n", " "), 110, placeholder=" ...")
    resp = "\n".join(textwrap.wrap(f"response: \"{resp}\"", 76))
    what = f"top-{c['k']} retrieval heads masked ({c['mode']})" if masked else "no mask"
    head = (f"{what}: {ERROR_LABELS.get(c.get('error_type'), c.get('error_type', '?'))}, "
            f"recall {float(c['rouge1_recall']):.0f}")
    return "\n".join(textwrap.wrap(head, 76) + [resp])


def draw(run_dir: str, out_dir: str, models=None, k=None, cell=None):
    d = plotted_data(run_dir, models, k, cell)
    paths = []
    bars = d["bars"]
    several_modes = len({mode for _, mode, _, _ in bars}) > 1
    fig, axes = figcommon.panel_grid(len(bars), w=4.8, h=3.3)
    for ax, (name, mode, fr, types) in zip(axes.ravel(), bars):
        _bars(ax, fr, types)
        ax.set_title(f"{name}" + (f" [{mode} mask]" if several_modes else ""), fontsize=10)
    types = bars[0][3]
    handles = [Patch(color=figcommon.ERROR_COLOURS[ad.ERROR_TYPES.index(t)] if t in ad.ERROR_TYPES
                     else "0.5", label=ERROR_LABELS.get(t, t)) for t in types]
    handles += [Patch(facecolor="white", edgecolor="0.3", label="top-K retrieval heads masked"),
                Patch(facecolor="white", edgecolor="0.3", hatch="///",
                      label="K random heads masked (draws pooled)")]
    flat = axes.ravel()
    for ax in flat[len(bars):]:
        ax.axis("off")
    if len(bars) < flat.size:
        flat[len(bars)].legend(handles=handles, loc="center", fontsize=9, frameon=False)
    else:
        flat[len(bars) - 1].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                                   ncol=2 if axes.shape[1] > 1 else 1, fontsize=8.5, frameon=False)
    modes = sorted({mode for _, mode, _, _ in bars})
    fig.suptitle("Figure 9: error types of masked NIAH cells (K = 0: no mask)"
                 + ("" if several_modes else f", {modes[0]} mask"), fontsize=12)
    paths.append(figcommon.save(fig, out_dir, "fig9_errors.png"))

    for name, (c, base, tracked) in d["cases"].items():
        ncols = 2 if base is not None else 1
        fig, axes = plt.subplots(2, ncols, figsize=(6.2 * ncols + 0.6, 6.4), layout="constrained",
                                 squeeze=False, gridspec_kw={"height_ratios": [3.0, 1.1]})
        _case_panel(axes[0, 0], axes[1, 0], c, tracked, _case_title(c, True))
        if base is not None:
            _case_panel(axes[0, 1], axes[1, 1], base, tracked, _case_title(base, False))
        h, lab = axes[0, 0].get_legend_handles_labels()
        axes[0, ncols - 1].legend(h, lab, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                                  frameon=False)
        h, lab = axes[1, 0].get_legend_handles_labels()
        axes[1, ncols - 1].legend(h, lab, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                                  frameon=False, title="tracked heads' argmax in", title_fontsize=8)
        fig.suptitle(f"Figure 9: failure case, {name}: context {c['context_length']} tokens, needle at "
                     f"depth {c['depth_percent']}%\n(cell {c['id']})", fontsize=11)
        paths.append(figcommon.save(fig, out_dir, f"fig9_case_{figcommon.safe_name(name)}.png"))
    return paths


def _parser():
    p = figcommon.parser(__doc__)
    p.add_argument("--k", type=int, default=None, help="pick the failure case among cells with this K")
    p.add_argument("--cell", default=None, help="draw this masked cell (id under /cells) as the case")
    p.add_argument("--models", nargs="+", default=None, help="only these models (default: all)")
    return p


if __name__ == "__main__":
    sys.exit(figcommon.main(draw, _parser()))
