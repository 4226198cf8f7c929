"""Draw the lesson's history plots again from a finished (or interrupted) run.

    python scripts/plot_history.py runs/<run>                    # or runs/<run>/history.json, history.csv
    python scripts/plot_history.py runs/<run> --fig-dir fig      # somewhere else than runs/<run>/fig
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from cnn_torch.errors import UserError  # noqa: E402
from cnn_torch.history import load_history  # noqa: E402
from cnn_torch.plots import plot_history  # noqa: E402
from cnn_torch.runs import safe_name  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="+", help="a run directory, or its history.json or history.csv")
    parser.add_argument("--fig-dir", default=None, metavar="DIR", help="where the figures go (default: RUN/fig)")
    parser.add_argument("--title", default=None, help="default: the run's model and data, from run.json")
    args = parser.parse_args(argv)
    try:
        for run in args.run:
            path = Path(run)
            run_dir = path if path.is_dir() else path.parent
            history = load_history(path)
            fig_dir = Path(args.fig_dir) if args.fig_dir is not None else run_dir / "fig"
            for figure in plot_history(history, fig_dir, safe_name(run_dir.resolve().name), title=args.title or run_title(run_dir)):
                print(f"Figure:      {figure}")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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
