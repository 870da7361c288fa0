import math

import pytest

from cnnkit.train.history import History


def make():
    return History(
        [
            {"epoch": 1, "train_loss": 1.5, "train_acc": 0.5, "val_loss": 1.6, "lr": 0.1},
            {"epoch": 2, "train_loss": 0.9, "train_acc": 0.7, "val_loss": 1.1, "lr": 0.1},
        ]
    )


def test_columns_and_missing_values_are_nan():
    h = make()
    assert h["train_loss"] == [1.5, 0.9]
    assert h.columns == ["epoch", "train_loss", "train_acc", "val_loss", "lr"]
    assert all(math.isnan(v) for v in h["val_acc"])
    assert "val_loss" in h and "val_acc" not in h
    with pytest.raises(KeyError, match="no column 'bogus'"):
        h["bogus"]


def test_csv_round_trip(tmp_path):
    h = make()
    path = h.to_csv(tmp_path / "h.csv")
    back = History.from_csv(path)
    assert back == h
    assert back.records[1]["epoch"] == 2 and isinstance(back.records[1]["epoch"], int)
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_dict_round_trip():
    h = make()
    assert History.from_dict(h.to_dict()) == h
    assert "2 epochs" in repr(h)
