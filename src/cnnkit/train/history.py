"""History: per-epoch training and validation metrics."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time")


class History:
    """One record per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``,
    ``val_acc``, ``lr``, ``time`` (seconds), plus any extra metric a callback adds.

    ``history['val_loss']`` gives the column as a list (``nan`` where absent);
    ``history.records`` the rows; ``len(history)`` the number of epochs.
    """

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in records]

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, key: str) -> list[float]:
        if not any(key in r for r in self.records) and key not in COLUMNS:
            raise KeyError(f"History has no column {key!r}; columns: {self.columns}")
        return [float(r.get(key, math.nan)) for r in self.records]

    def __contains__(self, key: str) -> bool:
        return any(key in r and _finite(r[key]) for r in self.records)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self.records == other.records

    def __repr__(self) -> str:
        last = self.records[-1] if self.records else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float))
        return f"History({len(self)} epochs{'; last: ' + shown if shown else ''})"

    @property
    def columns(self) -> list[str]:
        cols = [c for c in COLUMNS if any(c in r for r in self.records)]
        for r in self.records:
            cols += [k for k in r if k not in cols]
        return cols

    def has(self, key: str) -> bool:
        """Whether the column exists with at least one finite value."""
        return key in self

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(d.get("records", []))

    def to_csv(self, path: str | Path) -> Path:
        """Write the history as CSV (written to a temporary file, then renamed)."""
        from cnnkit.io.atomic import atomic_write

        path = Path(path)
        cols = self.columns
        with atomic_write(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for r in self.records:
                w.writerow({c: r.get(c, "") for c in cols})
        return path

    @classmethod
    def from_csv(cls, path: str | Path) -> History:
        """Read a history written by :meth:`to_csv`.

        Raises
        ------
        ValueError
            A malformed file: the message names the file, the line and the column.
        """
        records = []
        try:
            with open(path, newline="", encoding="utf-8") as f:
                for line, row in enumerate(csv.DictReader(f), 2):
                    rec: dict[str, Any] = {}
                    for k, v in row.items():
                        if k is None or v is None:
                            raise ValueError(
                                f"{path}: line {line}: {'more' if k is None else 'fewer'} "
                                "values than columns"
                            )
                        if v == "":
                            continue
                        try:
                            rec[k] = int(v) if k == "epoch" else float(v)
                        except ValueError:
                            want = "an integer" if k == "epoch" else "a number"
                            raise ValueError(
                                f"{path}: line {line}: column {k!r}: expected {want}; got {v!r}"
                            ) from None
                    records.append(rec)
        except (UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"{path}: not a history CSV file ({e})") from None
        return cls(records)


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
