"""The time split: oldest rows train, newest test, a timestamp never straddles two splits."""

from __future__ import annotations

import pandas as pd
import pytest

from training.split import fit_test_split, rolling_origin_folds, time_split


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


def test_fit_test_split_keeps_the_test_period_and_customers_apart() -> None:
    ts = _stamps([100] * 10)
    customers = pd.Series([f"c{i % 97}" for i in range(len(ts))])
    plain = fit_test_split(ts, None, seed=1)
    assert set(plain) == {"train", "test"}
    assert ts[plain == "train"].max() < ts[plain == "test"].min()
    assert (plain == "test").mean() == pytest.approx(0.2)
    both = fit_test_split(ts, customers, seed=1)
    kept = both.notna()
    assert (both[kept] == plain[kept]).all()  # never moves a row across time
    assert (
        customers[kept].groupby(customers[kept]).apply(lambda s: both[s.index].nunique()) == 1
    ).all()
    # about 80% of the customers train: about 64% of the rows, not 49% + 1% as 70/10/20 gave
    assert 0.55 < (both == "train").mean() < 0.72


def test_rolling_origin_folds_fit_on_the_past_and_validate_on_the_next_cutoff() -> None:
    days = pd.date_range("2025-01-01", periods=6, freq="MS", tz="UTC")
    ts = pd.Series([d for d in days for _ in range(50)])
    customers = pd.Series([f"c{i}" for _ in days for i in range(50)])
    cuts = sorted(ts.unique())
    folds = rolling_origin_folds(ts, None, seed=0, folds=3)
    assert [o for o, _, _ in folds] == cuts[3:]
    for origin, fit, valid in folds:
        assert (ts[fit] < origin).all() and (ts[valid] == origin).all()
        assert len(valid) == 50 and len(fit) == (ts < origin).sum()
    grouped = rolling_origin_folds(ts, customers, seed=0, folds=3)
    seen_in_valid = set()
    for origin, fit, valid in grouped:
        assert not set(customers[fit]) & set(customers[valid])  # no customer on both sides
        assert (ts[valid] == origin).all() and len(valid) > 0
        seen_in_valid |= set(customers[valid])
    assert len(seen_in_valid) == 50  # every customer validates once (three groups)
    # two cutoffs still give one fold, and one cutoff is refused
    assert len(rolling_origin_folds(_stamps([10, 10]), None, seed=0)) == 1
    with pytest.raises(ValueError, match="at least 2"):
        rolling_origin_folds(_stamps([10]), None, seed=0)
