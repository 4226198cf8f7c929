"""History: the object Keras ``fit`` returns, with the same three attributes.

``history.history`` is a dict of per-epoch lists keyed like Keras 3 (``accuracy``,
``loss``, ``val_accuracy``, ``val_loss``: Keras 3 sorts the keys), so the lesson's
``pd.DataFrame.from_dict(history.history)`` and its seaborn plots work unchanged.
``history.epoch`` is the list of 0-based epoch indices, ``history.params`` is
``{'verbose', 'epochs', 'steps'}``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cnn_torch.platform.fileio import write_text


@dataclass
class History:
    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        """Record one finished epoch (Keras: ``History.on_epoch_end``)."""
        self.epoch.append(epoch)
        for key in sorted(logs):  # Keras 3 keeps its logs sorted by key
            self.history.setdefault(key, []).append(float(logs[key]))

    def to_dict(self) -> dict:
        return {"history": self.history, "epoch": self.epoch, "params": self.params}

    @classmethod
    def from_dict(cls, state: dict) -> History:
        return cls(
            history={k: [float(v) for v in vs] for k, vs in state["history"].items()},
            epoch=[int(e) for e in state["epoch"]],
            params=dict(state.get("params", {})),
        )

    def to_csv(self) -> str:
        """Keras ``CSVLogger`` layout: an ``epoch`` column (0-based), then the sorted keys."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        keys = sorted(self.history)
        writer.writerow(["epoch", *keys])
        for row, epoch in enumerate(self.epoch):
            writer.writerow([epoch, *(repr(self.history[k][row]) for k in keys)])
        return out.getvalue()


def save_history(history: History, run_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``history.csv`` and ``history.json`` atomically; returns their paths."""
    run_dir = Path(run_dir)
    csv_path, json_path = run_dir / "history.csv", run_dir / "history.json"
    write_text(csv_path, history.to_csv())
    write_text(json_path, json.dumps(history.to_dict(), indent=2) + "\n")
    return csv_path, json_path


def load_history(path: str | os.PathLike) -> History:
    """Read a run's history: its directory, its ``history.json`` or its ``history.csv``."""
    from cnn_torch.errors import UserError

    path = Path(path)
    if path.is_dir():
        path = path / "history.json"
        if not path.is_file():
            raise UserError(f"{path.parent} holds no history.json: pass a run directory that finished an epoch")
    if not path.is_file():
        raise UserError(f"{path} does not exist: pass a run directory, its history.json or its history.csv")
    try:
        if path.suffix == ".csv":
            return _history_from_csv(path.read_text())
        return History.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        raise UserError(
            f"{path} is not a history this tool wrote (history.json or history.csv): pass a run directory"
        ) from None


def _history_from_csv(text: str) -> History:
    """The inverse of :meth:`History.to_csv` (Keras ``CSVLogger``'s layout)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "epoch" not in rows[0]:
        raise ValueError("no epoch column")
    history = History()
    for row in rows:
        epoch = int(row.pop("epoch"))
        history.append(epoch, {key: float(value) for key, value in row.items()})
    return history
