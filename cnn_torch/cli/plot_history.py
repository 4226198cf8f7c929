"""Draw the lesson's history plots again from a finished (or interrupted) run.

    python scripts/plot_history.py runs/<run>                    # or runs/<run>/history.json, history.csv
    python scripts/plot_history.py runs/<run> --fig-dir fig      # somewhere else than runs/<run>/fig
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cnn_torch.cli import flags as cli
from cnn_torch.cli.runs import safe_name
from cnn_torch.history import load_history
from cnn_torch.plots import plot_comparison, plot_history


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="+", help="a run directory, or its history.json or history.csv")
    cli.add_fig_dir_flag(parser)
    parser.add_argument("--title", default=None, help="default: the run's model and data, from run.json")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    return cli.run_main(plot_runs, parse_args(argv))


def plot_runs(args: argparse.Namespace) -> int:
    if args.fig_dir is not None:
        cli.check_writable_folder(args.fig_dir, "--fig-dir")
    for run in args.run:  # every run's figure folder, before the first figure: a run may be shared read-only
        run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
        if args.fig_dir is None and Path(run).exists():
            cli.check_writable_folder(run_dir / "fig", "figure folder", "pass --fig-dir DIR to draw them elsewhere")
            if len(args.run) > 1:  # the overlay goes beside the runs
                cli.check_writable_folder(run_dir.resolve().parent / "fig", "figure folder", "pass --fig-dir DIR")
    histories = {}  # several runs: also one figure that overlays them all
    for run in args.run:
        path = Path(run)
        run_dir = (path if path.is_dir() else path.parent).resolve()
        history = load_history(path)
        histories[run_dir.name if run_dir.name not in histories else str(run_dir)] = history
        fig_dir = Path(args.fig_dir) if args.fig_dir is not None else run_dir / "fig"
        title = args.title or run_title(run_dir)
        for figure in plot_history(history, fig_dir, safe_name(run_dir.name), title=title):
            print(f"Figure:      {figure}")
    if len(histories) > 1:  # beside the runs (their common folder), not among the repository's figures
        fig_dir = Path(args.fig_dir) if args.fig_dir is not None else run_dir.parent / "fig"
        overlay = fig_dir / f"{safe_name('_'.join(histories))[:120]}_comparison.png"
        print(f"Figure:      {plot_comparison(histories, overlay, title=args.title or 'runs compared')}")
    return 0


def run_title(run_dir: Path) -> str:
    """"<model> on <data>" from the run's run.json, else the directory's name."""
    try:
        record = json.loads((run_dir / "run.json").read_text())
        data_name = (record.get("data") or {}).get("name") or record["flags"].get("dataset") or "?"
        return f"{record['flags']['model']} on {data_name}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return run_dir.resolve().name


if __name__ == "__main__":
    sys.exit(main())
