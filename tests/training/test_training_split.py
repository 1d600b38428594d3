"""The time split: oldest rows train, newest test, a timestamp never straddles two splits."""

from __future__ import annotations

import pandas as pd
import pytest

from training.split import time_split


def _stamps(counts: list[int]) -> pd.Series:
    days = pd.date_range("2025-01-01", periods=len(counts), freq="MS", tz="UTC")
    return (
        pd.Series([d for d, n in zip(days, counts, strict=True) for _ in range(n)])
        .sample(frac=1.0, random_state=0)
        .reset_index(drop=True)
    )


def test_split_is_by_time_and_near_70_10_20() -> None:
    ts = _stamps([100] * 20)
    split = time_split(ts)
    by = ts.groupby(split)
    assert by.max()["train"] < by.min()["validation"]
    assert by.max()["validation"] < by.min()["test"]
    share = split.value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7) and share["validation"] == pytest.approx(0.1)
    assert share["test"] == pytest.approx(0.2)
    assert (ts.groupby(ts).apply(lambda s: split[s.index].nunique()) == 1).all()


def test_few_timestamps_still_give_three_splits_in_order() -> None:
    ts = _stamps([300, 330, 370])
    split = time_split(ts)
    assert [split[ts == t].iloc[0] for t in sorted(ts.unique())] == ["train", "validation", "test"]


def test_two_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        time_split(_stamps([10, 10]))
