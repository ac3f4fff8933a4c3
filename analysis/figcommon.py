"""Shared plumbing of the figure scripts: headless matplotlib, file names, the command line."""

import argparse
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")  # never needs a display
import matplotlib.pyplot as plt  # noqa: E402

import rhead_stores  # noqa: E402

DPI = 150

# Figure 3 / 5 bin colours: grey for heads that never copy, then light -> strong for higher scores.
BIN_COLOURS = ("#d9d9d9", "#9ecae1", "#fd8d3c", "#b10026")


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

    Store problems (missing, incomplete, newer schema) exit with status 2 and a message naming the file."""
    args = p.parse_args(argv)
    opts = {k: v for k, v in vars(args).items() if k not in ("run_dir", "out_dir")}
    out_dir = args.out_dir or os.path.join(args.run_dir, "figures")
    try:
        paths = draw(args.run_dir, out_dir, **opts)
    except rhead_stores.StoreError as e:
        print(f"{os.path.basename(sys.argv[0])}: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
