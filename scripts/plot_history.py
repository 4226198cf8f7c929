"""Draw the lesson's history plots again from a run's history.json.

python scripts/plot_history.py runs/<run>/history.json --fig-dir fig
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
    parser.add_argument("history", help="a run's history.json")
    parser.add_argument("--fig-dir", default="fig", help="where the figures go")
    parser.add_argument("--title", default=None, help="default: the run's model name from run.json")
    args = parser.parse_args(argv)
    path = Path(args.history)
    try:
        if not path.is_file():
            raise UserError(f"{path} does not exist: pass the history.json of a run")
        history = load_history(path)
        record = path.parent / "run.json"
        title = args.title or (
            json.loads(record.read_text())["flags"]["model"] if record.is_file() else path.parent.name
        )
    except (UserError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for figure in plot_history(history, args.fig_dir, safe_name(path.parent.name), title=title):
        print(f"Figure:      {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
