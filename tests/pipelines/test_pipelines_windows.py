"""The windowed-aggregation primitive against a naive day-by-day evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.windows import (
    Streams,
    change_points,
    day_of,
    day_ts,
    entry_day,
    segment_states,
    state_deltas,
    top_key,
)


def dense(acc, entity: int, lo: int, hi: int, name: str) -> list[int]:
    """Expand change rows of one entity into one value per day lo..hi (0 before the first)."""
    f = acc.frame()
    f = f[f["entity"] == entity].set_index("day")[name]
    out, cur = [], 0
    for d in range(lo, hi + 1):
        cur = f.get(d, cur)
        out.append(int(cur))
    return out


def test_entry_day_is_the_next_midnight():
    ts = pd.Series(
        pd.to_datetime(["2025-01-01 00:00:00.000000", "2025-01-01 23:59:59.999999"], utc=True)
    )
    assert (day_of(ts) == day_of(ts)[0]).all()
    assert day_ts(entry_day(ts)).tolist() == [pd.Timestamp("2025-01-02", tz="UTC")] * 2


@pytest.mark.parametrize("window", [1, 3, 7, None])
def test_window_sums_and_distinct_match_naive(window):
    rng = np.random.default_rng(window or 0)
    n = 200
    entity = rng.integers(0, 4, n)
    enter = rng.integers(0, 40, n)
    value = rng.integers(-5, 20, n)
    key = rng.integers(0, 6, n)
    s = Streams()
    s.window(entity, enter, window, v=value)
    s.distinct("k", entity, key, enter, window)
    acc = s.evaluate()
    for e in range(4):
        mine = entity == e
        lo = int(enter[mine].min())
        for name in ("v", "k"):
            got = dense(acc, e, lo, 60, name)
            want = []
            for d in range(lo, 61):
                vis = mine & (enter <= d) & ((enter + window > d) if window else True)
                want.append(int(value[vis].sum()) if name == "v" else len(set(key[vis])))
            assert got == want, (e, name)


def test_evaluate_from_a_later_day_gives_the_same_values():
    rng = np.random.default_rng(5)
    entity, enter = rng.integers(0, 5, 300), rng.integers(0, 90, 300)
    s = Streams()
    s.window(entity, enter, 30, v=rng.integers(0, 9, 300))
    s.distinct("k", entity, rng.integers(0, 7, 300), enter, 7)
    full = s.evaluate().frame()
    late = s.evaluate(first_day=50, last_day=80).frame()
    expected = full[(full["day"] >= 50) & (full["day"] <= 80)].reset_index(drop=True)
    # History before day 50 is folded into fewer grid points; read as of each day, the same.
    for _, row in expected.iterrows():
        got = late[(late["entity"] == row["entity"]) & (late["day"] <= row["day"])].iloc[-1]
        assert (got["v"], got["k"]) == (row["v"], row["k"])


def test_segment_states_for_a_key_across_days():
    pieces = pd.DataFrame(
        {"k": [1, 1, 2], "enter": [10, 11, 10], "lo": [5, 100, 7], "hi": [9, 120, 8]}
    )
    st = segment_states(pieces, ["k"], "enter", 3, {"lo": ("lo", "min"), "hi": ("hi", "max")})
    one = st[st["k"] == 1]
    assert one["day"].tolist() == [10, 11, 13, 14]
    assert one["present"].tolist() == [True, True, True, False]
    assert one["lo"].tolist()[:3] == [5, 5, 100] and one["hi"].tolist()[:3] == [9, 120, 120]
    d = state_deltas(st.assign(span=(st["hi"] - st["lo"])), ["k"], ["span"])
    assert d.loc[d["k"] == 1, "span"].tolist() == [4, 111, -95, -20]


def test_top_key_ties_go_to_the_smallest_key():
    entity = np.array([0, 0, 0, 0, 0, 0])
    key = np.array([0, 0, 1, 1, 2, 2])
    day = np.array([15, 25, 10, 20, 12, 30])
    value = np.array([2, 0, 2, 0, 1, 0])
    e, d, k = top_key(entity, key, day, value)
    assert d.tolist() == [10, 12, 15, 20, 25, 30]
    assert k.tolist() == [1, 1, 0, 0, 2, -1]


def test_change_points_keep_changes_only_and_respect_prior():
    ts = pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"], utc=True)
    frame = pd.DataFrame(
        {
            "id": ["a"] * 4,
            "event_timestamp": ts,
            "n": pd.array([0, 0, 1, 1], dtype="Int64"),
            "x": [np.nan, np.nan, 1.5, np.nan],
            "l": [[], [], ["p"], ["p"]],
        }
    )
    got = change_points(frame, "id", ["n", "x", "l"])
    assert got["event_timestamp"].tolist() == [ts[0], ts[2], ts[3]]
    prior = frame.iloc[[0]].assign(event_timestamp=pd.Timestamp("2024-12-31", tz="UTC"))
    got = change_points(frame, "id", ["n", "x", "l"], prior=prior)
    assert got["event_timestamp"].tolist() == [ts[2], ts[3]]  # day 1 repeats the prior row
