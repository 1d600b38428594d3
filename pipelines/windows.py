"""The windowed-aggregation primitive every feature family is built on.

Time model (docs/point_in_time.md): snapshots are days at 00:00 UTC, indexed as days since the
epoch. A raw row with timestamp `ts` is first visible at snapshot `enter = floor_day(ts) + 1`
(a value stamped T uses rows `< T` only) and, for a window of W days, last visible at
`enter + W - 1`: it leaves on day `enter + W`, which is exactly "T - W <= ts < T".

Instead of evaluating every entity on every day, each row becomes integer deltas: `+v` on the day
it enters, `-v` on the day it leaves. Summing deltas per (entity, day) and taking a running sum
per entity gives the value at every day where it can change, and nowhere else. Distinct counts
merge each key's visibility intervals first, so a key seen twice in a window counts once.

Everything accumulated here is an integer (counts, money in micro-units, durations in
microseconds): running sums of +/- deltas are then exact, a window that empties reads exactly 0,
and an incremental run that starts its sums later gets bit-for-bit the values of a historical run.
Ratios and means are derived from the integer state at the end.

The output of a family is a set of candidate rows (entity, T) that contains every day where a value
changes; `change_points` drops the rows equal to the entity's previous row. Feast's point-in-time
join (latest row with `event_timestamp <= t`) then reads the same values as dense daily snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DAY = pd.Timedelta(days=1)
MICRO = 1_000_000  # money and other decimals are accumulated as integer micro-units
# Deltas are summed per grid point in float64 (np.bincount), then run in int64: both exact while
# every partial sum of an entity stays below 2**53. Beyond that a value is refused, never wrapped.
EXACT_LIMIT = 2**53
# (entity code, day) is packed into one int64 key; days since 1970 stay far below 2**20.
_STRIDE = np.int64(1 << 20)


# --- days ------------------------------------------------------------------------------------


def day_of(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC day index (days since 1970-01-01) of each timestamp, floored. NaT -> INT64 min."""
    values = pd.DatetimeIndex(ts).tz_convert("UTC").tz_localize(None)
    days = values.to_numpy(dtype="datetime64[us]").astype("datetime64[D]").astype(np.int64)
    return days


def entry_day(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """The first snapshot (day index) at which a row stamped `ts` is visible."""
    return day_of(ts) + 1


def day_ts(days: np.ndarray | pd.Series | int) -> pd.Series:
    """Day indices back to tz-aware UTC timestamps (microsecond unit) at 00:00."""
    arr = np.atleast_1d(np.asarray(days, dtype=np.int64))
    arr = arr.astype("datetime64[D]").astype("datetime64[us]")
    return pd.Series(pd.DatetimeIndex(arr).tz_localize("UTC"))


def to_day(ts: pd.Timestamp) -> int:
    """A snapshot timestamp (00:00 UTC) as its day index."""
    return int(day_of(pd.DatetimeIndex([pd.Timestamp(ts)]))[0])


class FeatureOverflow(ArithmeticError):
    """A value or a running sum beyond the exact range of the windowed arithmetic."""


def fixed(values: pd.Series | np.ndarray, scale: int = MICRO) -> np.ndarray:
    """Decimals as exact integers (`scale` units per 1); nulls become 0. A value whose scaled
    magnitude reaches EXACT_LIMIT (or is not finite) raises FeatureOverflow instead of wrapping."""
    arr = pd.Series(values).astype("float64").fillna(0.0).to_numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = arr * scale
        bad = ~(np.abs(scaled) < EXACT_LIMIT)
    if bad.any():
        name = getattr(values, "name", None) or "a value"
        raise FeatureOverflow(
            f"{name} = {arr[bad][0]:.6g} is beyond the exact range of the feature arithmetic "
            f"(|x| < {EXACT_LIMIT / scale:.4g}); the raw data contract's upper bounds quarantine "
            "such values at ingest (docs/data_contract.md)"
        )
    return np.rint(scaled).astype(np.int64)


def check_exact(name: str, magnitude: np.ndarray, starts: np.ndarray | None = None) -> None:
    """Refuse when a stream's absolute deltas could add up past EXACT_LIMIT for one entity."""
    if not len(magnitude):
        return
    per_entity = np.add.reduceat(magnitude, starts) if starts is not None else magnitude
    worst = float(per_entity.max())
    if not worst < EXACT_LIMIT:
        raise FeatureOverflow(
            f"'{name}': one entity's deltas add up to {worst:.4g} units, beyond the exact range "
            f"of the feature arithmetic ({EXACT_LIMIT:.4g}); values this large are quarantined "
            "by the raw data contract's upper bounds at ingest (docs/data_contract.md)"
        )


def duration_us(ts: pd.Series) -> np.ndarray:
    """Timestamps as integer microseconds since the epoch (for exact durations)."""
    values = pd.DatetimeIndex(ts).tz_convert("UTC").tz_localize(None)
    return values.to_numpy(dtype="datetime64[us]").astype(np.int64)


@dataclass(frozen=True)
class Snapshots:
    """The snapshot days a run emits: `start_day .. end_day` inclusive, daily at 00:00 UTC.

    `start_day - 1` is the prior day: in an incremental run, the stored row of each entity as of
    that day is the state the new rows are compared against (and seeds lifetime sums).
    """

    start_day: int
    end_day: int
    historical: bool = True

    @classmethod
    def between(cls, start: pd.Timestamp, end: pd.Timestamp, historical: bool) -> Snapshots:
        return cls(to_day(start), to_day(end), historical)

    @property
    def start(self) -> pd.Timestamp:
        return day_ts(self.start_day).iloc[0]

    @property
    def end(self) -> pd.Timestamp:
        return day_ts(self.end_day).iloc[0]

    @property
    def prior_day(self) -> int:
        return self.start_day - 1

    def read_from(self, lookback_days: int | None) -> pd.Timestamp | None:
        """Earliest raw timestamp a window of `lookback_days` needs (None: all history)."""
        if lookback_days is None or self.historical:
            return None
        return day_ts(self.start_day - lookback_days - 1).iloc[0]


# --- entities ---------------------------------------------------------------------------------


class EntityIndex:
    """Dense integer codes for entity ids, in sorted id order (so rows come out key-sorted)."""

    def __init__(self, ids: pd.Series | np.ndarray | list) -> None:
        arr = pc.unique(_arrow_strings(ids).drop_null())
        self._ids = arr.take(pc.sort_indices(arr))

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> pd.Index:
        return pd.Index(self._ids.to_pylist(), dtype="string")

    def codes(self, ids: pd.Series | np.ndarray | list) -> np.ndarray:
        """Codes of `ids`; -1 for an id this index does not know (or null)."""
        found = pc.index_in(_arrow_strings(ids), value_set=self._ids)
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def lookup(self, codes: np.ndarray) -> pd.Series:
        taken = self._ids.take(pa.array(np.asarray(codes, np.int64)))
        return pd.Series(pd.arrays.ArrowStringArray(taken.cast(pa.large_string())))


def _arrow_strings(values: pd.Series | np.ndarray | list) -> pa.Array:
    if (
        isinstance(values, pd.Series)
        and isinstance(values.dtype, pd.StringDtype)
        and values.dtype.storage == "pyarrow"
    ):
        arr = values.array._pa_array  # noqa: SLF001 (zero-copy view of arrow-backed strings)
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    else:
        arr = pa.array(
            pd.Series(values, dtype=object).where(pd.notna(values), None),
            type=pa.string(),
            from_pandas=True,
        )
    return arr.cast(pa.string())


# --- delta streams ----------------------------------------------------------------------------


@dataclass
class Accumulated:
    """Running values of every stream at each (entity, day) grid point, entity-major, day-sorted."""

    entity: np.ndarray
    day: np.ndarray
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.day)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"entity": self.entity, "day": self.day, **self.values})


@dataclass
class Streams:
    """Integer delta streams keyed by (entity code, day), accumulated on one common grid.

    Every `add*` call registers grid points; `evaluate` sums the deltas per grid point and runs a
    per-entity cumulative sum, so each named stream reads its exact value at every grid point.
    """

    _chunks: list[tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=list)
    _names: list[str] = field(default_factory=list)

    def _push(self, entity: np.ndarray, day: np.ndarray, values: dict[str, np.ndarray]) -> None:
        entity = np.asarray(entity, dtype=np.int64)
        day = np.asarray(day, dtype=np.int64)
        keep = entity >= 0
        if not keep.all():
            entity, day = entity[keep], day[keep]
            values = {k: np.asarray(v)[keep] for k, v in values.items()}
        for name in values:
            if name not in self._names:
                self._names.append(name)
        key = entity * _STRIDE + day
        self._chunks.append((key, {k: np.asarray(v, dtype=np.int64) for k, v in values.items()}))

    def points(self, entity: np.ndarray, day: np.ndarray) -> None:
        """Grid points without deltas (an entity's first snapshot, a calendar boundary)."""
        self._push(entity, day, {})

    def add(self, entity: np.ndarray, day: np.ndarray, **values: np.ndarray) -> None:
        """Raw deltas: each value is added on `day` and stays (a seed, a lifetime sum)."""
        self._push(entity, day, values)

    def window(
        self, entity: np.ndarray, enter: np.ndarray, days: int | None, **values: np.ndarray
    ) -> None:
        """Rows visible on `[enter, enter + days)`; `days=None` is a lifetime (never leaves)."""
        self._push(entity, enter, values)
        if days is not None:
            self._push(
                entity,
                np.asarray(enter) + days,
                {k: -np.asarray(v, dtype=np.int64) for k, v in values.items()},
            )

    def distinct(
        self,
        name: str,
        entity: np.ndarray,
        key: np.ndarray | pd.Series,
        enter: np.ndarray,
        days: int | None,
    ) -> None:
        """Number of distinct `key`s visible per entity: each key's intervals are merged first."""
        key_codes = pd.factorize(pd.Series(key))[0].astype(np.int64)
        frame = pd.DataFrame(
            {"e": np.asarray(entity, np.int64), "k": key_codes, "d": np.asarray(enter, np.int64)}
        )
        frame = frame[(frame["e"] >= 0) & (frame["k"] >= 0)].drop_duplicates()
        frame = frame.sort_values(["e", "k", "d"], kind="stable")
        e, k, d = (frame[c].to_numpy() for c in ("e", "k", "d"))
        if len(d) == 0:
            self._push(e, d, {name: d})
            return
        same_key = np.r_[False, (e[1:] == e[:-1]) & (k[1:] == k[:-1])]
        if days is None:
            starts = ~same_key
            self._push(e[starts], d[starts], {name: np.ones(starts.sum(), np.int64)})
            return
        gap = np.r_[np.int64(0), d[1:] - d[:-1]]
        starts = ~same_key | (gap > days)
        ends = np.r_[starts[1:], True]
        self._push(e[starts], d[starts], {name: np.ones(starts.sum(), np.int64)})
        self._push(e[ends], d[ends] + days, {name: -np.ones(ends.sum(), np.int64)})

    def evaluate(
        self, first_day: int | None = None, last_day: int | None = None, carry: bool = False
    ) -> Accumulated:
        """Values at every grid point, restricted to `first_day .. last_day` after accumulating.

        With `carry`, each entity also keeps one row on `first_day - 1` holding everything
        before (the state a run continues from).
        """
        if not self._chunks:
            empty = np.zeros(0, np.int64)
            return Accumulated(empty, empty, {n: empty for n in self._names})
        chunks = _fold(self._chunks, self._names, first_day, last_day)
        grid, inverse = np.unique(np.concatenate([key for key, _ in chunks]), return_inverse=True)
        entity, day = np.divmod(grid, _STRIDE)
        starts = np.flatnonzero(np.r_[True, entity[1:] != entity[:-1]])
        lengths = np.diff(np.r_[starts, len(grid)])
        bounds = np.cumsum([0] + [len(key) for key, _ in chunks])
        values: dict[str, np.ndarray] = {}
        for name in self._names:
            # bincount sums in float64: exact while partial sums stay below 2**53.
            acc = np.zeros(len(grid), np.float64)
            mag = np.zeros(len(grid), np.float64)  # sum of |delta|: bounds every partial sum
            for (_, vals), lo, hi in zip(chunks, bounds[:-1], bounds[1:], strict=True):
                if name in vals:
                    w = vals[name].astype(np.float64)
                    acc += np.bincount(inverse[lo:hi], weights=w, minlength=len(grid))
                    mag += np.bincount(inverse[lo:hi], weights=np.abs(w), minlength=len(grid))
            check_exact(name, mag, starts)
            run = np.cumsum(np.rint(acc).astype(np.int64))
            before = np.r_[np.int64(0), run[starts[1:] - 1]]
            values[name] = run - np.repeat(before, lengths)
        keep = np.ones(len(grid), bool)
        if first_day is not None:
            keep &= day >= (first_day - 1 if carry else first_day)
        if last_day is not None:
            keep &= day <= last_day
        return Accumulated(entity[keep], day[keep], {n: v[keep] for n, v in values.items()})


def _fold(
    chunks: list[tuple[np.ndarray, dict[str, np.ndarray]]],
    names: list[str],
    first_day: int | None,
    last_day: int | None,
) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Drop deltas after `last_day`, and sum those before `first_day` into one point per entity
    on the day before (values from `first_day` on are identical; the grid shrinks to the run's
    days, which is what makes an incremental day cheap: no sort of the whole history)."""
    if first_day is None and last_day is None:
        return chunks
    out, past = [], []
    for key, vals in chunks:
        day = key % _STRIDE
        keep = np.ones(len(key), bool) if last_day is None else day <= last_day
        if first_day is not None:
            before = day < first_day
            if before.any():
                past.append((key[before] // _STRIDE, {n: v[before] for n, v in vals.items()}))
            keep &= ~before
        out.append((key[keep], {n: v[keep] for n, v in vals.items()}))
    if past:
        size = int(max(e.max() for e, _ in past)) + 1  # dense entity codes: count, no sort
        seen = np.zeros(size, bool)
        sums = {n: np.zeros(size, np.float64) for n in names}
        mags = {n: np.zeros(size, np.float64) for n in names}
        for e, vals in past:
            seen[e] = True
            for n, v in vals.items():
                w = v.astype(np.float64)
                sums[n] += np.bincount(e, weights=w, minlength=size)
                mags[n] += np.bincount(e, weights=np.abs(w), minlength=size)
        seeds = np.flatnonzero(seen)
        for n, a in mags.items():
            check_exact(n, a[seeds])
        out.append(
            (
                seeds * _STRIDE + (first_day - 1),
                {n: np.rint(a[seeds]).astype(np.int64) for n, a in sums.items()},
            )
        )
    return out


def pack(entity: np.ndarray, day: np.ndarray) -> np.ndarray:
    """(entity code, day) as one sortable int64 key."""
    return np.asarray(entity, np.int64) * _STRIDE + np.asarray(day, np.int64)


def unpack(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`pack`'s keys back to (entity code, day)."""
    return np.divmod(np.asarray(key, np.int64), _STRIDE)


def as_of(
    left_entity: np.ndarray, left_day: np.ndarray, right_entity: np.ndarray, right_day: np.ndarray
) -> np.ndarray:
    """For each left (entity, day): position of the right row of the same entity with the latest
    day <= left day, or -1. Right rows must be sorted by (entity, day)."""
    right = pack(right_entity, right_day)
    left = pack(left_entity, left_day)
    pos = np.searchsorted(right, left, side="right") - 1
    ok = pos >= 0
    ok[ok] = right[pos[ok]] // _STRIDE == left[ok] // _STRIDE
    return np.where(ok, pos, -1)


def top_key(
    entity: np.ndarray, key: np.ndarray, day: np.ndarray, value: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The winning key per entity at every day where any of its keys' values changes.

    Inputs are change rows of per-(entity, key) values sorted by (entity, key, day), e.g. the
    evaluation of a `Streams` keyed by pairs; a value holds from its day until the pair's next
    row. The winner has the largest positive value, ties going to the smallest `key` (callers
    pass ranks, e.g. alphabetical order). Returns (entity, day, key) with key -1 where no key
    is positive.
    """
    entity, key, day, value = (np.asarray(a, np.int64) for a in (entity, key, day, value))
    days = np.unique(pack(entity, day))
    same_pair = np.r_[(entity[1:] == entity[:-1]) & (key[1:] == key[:-1]), False]
    end = np.where(same_pair, np.r_[day[1:], 0], _STRIDE - 1)
    live = value > 0
    lo = np.searchsorted(days, pack(entity[live], day[live]), side="left")
    hi = np.searchsorted(days, pack(entity[live], end[live]), side="left")
    counts = hi - lo
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    at = np.repeat(lo, counts) + offsets
    cand = pd.DataFrame(
        {"at": at, "v": np.repeat(value[live], counts), "k": np.repeat(key[live], counts)}
    )
    cand = cand.sort_values(["at", "v", "k"], ascending=[True, False, True], kind="stable")
    best = cand.drop_duplicates("at")
    winner = np.full(len(days), -1, np.int64)
    winner[best["at"].to_numpy()] = best["k"].to_numpy()
    ent, d = np.divmod(days, _STRIDE)
    return ent, d, winner


def segment_states(
    pieces: pd.DataFrame, by: list[str], enter: str, days: int, aggs: dict[str, tuple[str, str]]
) -> pd.DataFrame:
    """A keyed window state for keys whose rows span several days (sessions across midnight).

    `pieces` holds one row per (key, enter day) with partial aggregates. At every day where the
    key's visible set changes (each `enter` and `enter + days`) this returns the aggregate over the
    visible pieces (`aggs` as in `DataFrame.groupby().agg(**aggs)`), with `present` False where
    nothing is visible any more. Diff consecutive rows of a key to turn states into deltas.
    """
    base = pieces[by + [enter]]
    breaks = pd.concat(
        [
            base.rename(columns={enter: "day"}),
            base.assign(day=base[enter] + days)[by + ["day"]],
        ]
    ).drop_duplicates()
    cross = breaks.merge(pieces, on=by)
    visible = cross[(cross[enter] <= cross["day"]) & (cross["day"] < cross[enter] + days)]
    state = visible.groupby(by + ["day"], sort=False).agg(**aggs).reset_index()
    out = breaks.merge(state, on=by + ["day"], how="left")
    out["present"] = out[list(aggs)[0]].notna()
    return out.sort_values(by + ["day"], kind="stable").reset_index(drop=True)


def state_deltas(states: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """Turn per-key states (sorted by key, day) into deltas: each row minus the key's previous."""
    values = states[columns].fillna(0).to_numpy(np.int64)
    keys = states[by].to_numpy()
    first = np.ones(len(states), bool)
    first[1:] = (keys[1:] != keys[:-1]).any(axis=1)
    prev = np.zeros_like(values)
    prev[1:] = values[:-1]
    prev[first] = 0
    out = states[by + ["day"]].reset_index(drop=True)
    out[columns] = values - prev
    return out


# --- change points ----------------------------------------------------------------------------


def change_points(
    frame: pd.DataFrame,
    key: str | tuple[str, ...] | list[str],
    features: list[str],
    prior: pd.DataFrame | None = None,
    time: str = "event_timestamp",
) -> pd.DataFrame:
    """Keep each entity's rows where some feature differs from its previous row.

    `frame` holds candidate rows (a superset of the days where values change) in declared dtypes.
    An entity's first candidate row is kept unless `prior` (its stored row before the first
    snapshot of this run) holds exactly the same values. Nulls compare equal to nulls. `key` may
    name several columns (an entity made of others, e.g. customer x product).
    """
    by = [key] if isinstance(key, str) else list(key)
    if not _is_sorted(frame, by, time):
        frame = frame.sort_values([*by, time], kind="stable")
    frame = frame.reset_index(drop=True)
    if frame.empty:
        return frame
    keys = _key_strings(frame, by)
    first = np.ones(len(frame), bool)
    first[1:] = pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
    differs = first.copy()
    for name in features:
        differs |= ~_same_as_previous(frame[name])
    if prior is not None and len(prior):
        prior = prior.sort_values(time, kind="stable").drop_duplicates(by, keep="last")
        at = np.flatnonzero(first)
        pos = pc.index_in(keys.take(pa.array(at)), value_set=_key_strings(prior, by))
        pos = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        at, pos = at[pos >= 0], pos[pos >= 0]
        same = np.ones(len(at), bool)
        for name in features:
            same &= _equal(
                frame[name].iloc[at].reset_index(drop=True),
                prior[name].iloc[pos].reset_index(drop=True),
            )
        differs[at[same]] = False
    return frame.loc[differs].reset_index(drop=True)


KEY_SEP = "\x1f"  # joins the columns of a several-column key (sorts below any printable id)


def _key_strings(frame: pd.DataFrame, by: list[str]) -> pa.Array:
    """One string per row for the key columns `by` (their values joined by KEY_SEP)."""
    if len(by) == 1:
        return _arrow_strings(frame[by[0]])
    parts = [_arrow_strings(frame[k]) for k in by]
    return pc.binary_join_element_wise(*parts, KEY_SEP, null_handling="emit_null")


def _is_sorted(frame: pd.DataFrame, by: list[str], time: str) -> bool:
    if len(frame) < 2:
        return True
    keys = _key_strings(frame, by)
    if keys.null_count:
        return False
    k1, k0 = keys[1:], keys[:-1]
    t = pd.DatetimeIndex(frame[time]).asi8
    after = pc.greater(k1, k0).to_numpy(zero_copy_only=False)
    same = pc.equal(k1, k0).to_numpy(zero_copy_only=False)
    return bool(np.all(after | (same & (t[1:] > t[:-1]))))


def _equal(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Elementwise equality of two aligned columns, null == null."""
    if a.dtype == object or b.dtype == object:
        return np.array([x is y or _obj_eq(x, y) for x, y in zip(a, b, strict=True)], bool)
    eq = a == b
    eq = eq.fillna(False).to_numpy(dtype=bool) if hasattr(eq, "fillna") else np.asarray(eq)
    return eq | (a.isna() & b.isna()).to_numpy()


def _same_as_previous(col: pd.Series) -> np.ndarray:
    """Element i equals element i-1 (null == null); element 0 is False."""
    if len(col) == 0:
        return np.zeros(0, bool)
    cur, prev = col.iloc[1:].reset_index(drop=True), col.iloc[:-1].reset_index(drop=True)
    return np.r_[False, _equal(cur, prev)]


def _obj_eq(a: object, b: object) -> bool:
    """Lists (or arrays) by content; a null equals only a null."""
    if a is None or b is None:
        return False
    if isinstance(a, list | tuple | np.ndarray) or isinstance(b, list | tuple | np.ndarray):
        return list(a) == list(b)
    return bool(a == b)
