"""Real-time features: `customer_session` and `product_realtime`, declared once, computed once.

One pure function (`compute`) turns an entity's clickstream events into its feature rows. The stream
worker (streaming/) calls it on the events it keeps per entity in Redis and writes the latest row
online; the batch side calls it on the clean events and writes every row as the views' offline
source, so a model trained on these features sees what serving sees.

A row is stamped T, the time of one of the entity's events, and holds the state after every event of
the entity at or before T (streaming values include the event that made them, unlike the daily
snapshots, which take rows < T). Windows end at T: "the last hour" is `(T - 1h, T]`, the hour
before the entity's latest event, so a value read later is as of `last_event_ts` (the feature says
when). The current session is the session of the latest event (ties at one instant: the event with
the greatest `event_id`). Events are ordered by (`event_ts`, `event_id`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.specs import TIMESTAMP_FIELD, Feature, FeatureSource, conform, to_arrow

HOUR_US = 3_600_000_000
SESSION_LOOKBACK_US = 6 * HOUR_US  # session counts and recent products: events in (T - 6h, T]
RECENT_PRODUCTS = 20

# What a row of each view depends on: the entity's events in (T - lookback, T].
LOOKBACK_US: dict[str, int] = {"customer_session": SESSION_LOOKBACK_US, "product_realtime": HOUR_US}
EVENT_COLUMNS = ("event_id", "customer_id", "session_id", "event_type", "event_ts", "product_id")

CUSTOMER_SESSION = FeatureSource(
    name="customer_session",
    entity="customer",
    description="The customer's live session and last hour, from the event stream (as of the "
    "customer's latest event).",
    tags=(("domain", "customer"), ("family", "realtime"), ("grain", "event")),
    features=(
        Feature("session_id", "string", "session of the customer's latest event", "6h"),
        Feature("session_events", "int64", "events of the current session in (T-6h, T]", "6h", 0),
        Feature(
            "session_views",
            "int64",
            "product_view events of the current session in (T-6h, T]",
            "6h",
            0,
        ),
        Feature(
            "session_carts",
            "int64",
            "add_to_cart events of the current session in (T-6h, T]",
            "6h",
            0,
        ),
        Feature("events_1h", "int64", "events of the customer in (T-1h, T]", "1h", 0),
        Feature("views_1h", "int64", "product_view events in (T-1h, T]", "1h", 0),
        Feature("carts_1h", "int64", "add_to_cart events in (T-1h, T]", "1h", 0),
        Feature(
            "last_event_ts", "unix_timestamp", "time of the customer's latest event, to the second"
        ),
        Feature(
            "recent_viewed_product_ids",
            "string_list",
            "distinct products viewed in (T-6h, T], most recent first, at most 20",
            "6h",
        ),
        Feature(
            "recent_carted_product_ids",
            "string_list",
            "distinct products added to cart in (T-6h, T], most recent first, at most 20",
            "6h",
        ),
    ),
)

PRODUCT_REALTIME = FeatureSource(
    name="product_realtime",
    entity="product",
    description="The product's last hour from the event stream (as of its latest event).",
    tags=(("domain", "product"), ("family", "realtime"), ("grain", "event")),
    features=(
        Feature("product_views_1h", "int64", "product_view events in (T-1h, T]", "1h", 0),
        Feature("product_carts_1h", "int64", "add_to_cart events in (T-1h, T]", "1h", 0),
        Feature("product_purchases_1h", "int64", "purchase events in (T-1h, T]", "1h", 0),
        Feature(
            "product_last_event_ts",
            "unix_timestamp",
            "time of the product's latest event, to the second",
        ),
    ),
)

SOURCES: dict[str, FeatureSource] = {s.name: s for s in (CUSTOMER_SESSION, PRODUCT_REALTIME)}


def compute(name: str, events: pd.DataFrame, latest_only: bool = False) -> pd.DataFrame:
    """Feature rows of view `name` from events (contract columns and dtypes, any order).

    One row per (entity, distinct event time), or only each entity's latest row. Events without the
    entity's key are ignored (anonymous visitors have no session row; page views no product row).
    """
    source = SOURCES[name]
    key = source.join_key
    ev = events.loc[events[key].notna(), list(EVENT_COLUMNS)]
    if name == "product_realtime":
        ev = ev.loc[ev["event_type"].isin(PRODUCT_EVENTS)]
    if ev.empty:
        return _empty(source)
    ev = ev.sort_values([key, "event_ts", "event_id"], kind="stable")
    keys = ev[key].to_numpy(object)
    code = np.r_[0, np.cumsum(keys[1:] != keys[:-1])].astype(np.int64)
    t = micros(ev["event_ts"])
    # Rows: the last event of each (entity, instant); or of each entity.
    last_of_entity = np.r_[code[1:] != code[:-1], True]
    last_of_instant = last_of_entity | np.r_[t[1:] != t[:-1], True]
    rows = np.flatnonzero(last_of_entity if latest_only else last_of_instant)
    clock = _Clock(code, t)
    types = ev["event_type"].to_numpy(object)
    if name == "customer_session":
        frame = _session_features(clock, types, ev, t, rows)
    else:
        frame = pd.DataFrame(
            {
                feature: clock.count(types == etype, rows, HOUR_US)
                for feature, etype in PRODUCT_COUNTS.items()
            }
        )
        frame["product_last_event_ts"] = _seconds(t[rows])
    frame.insert(0, key, keys[rows])
    frame.insert(1, TIMESTAMP_FIELD, pd.to_datetime(t[rows], unit="us", utc=True))
    return frame


PRODUCT_EVENTS = ("product_view", "add_to_cart", "purchase")
# product_realtime's counts: events of one type in (T - 1h, T]; the stream worker keeps them as
# window counters in Redis (streaming.state), the batch side counts them here.
PRODUCT_COUNTS = {
    "product_views_1h": "product_view",
    "product_carts_1h": "add_to_cart",
    "product_purchases_1h": "purchase",
}


def _seconds(us: np.ndarray) -> pd.DatetimeIndex:
    """Whole seconds (floor): what Feast keeps of a timestamp feature online."""
    return pd.to_datetime(us // 1_000_000 * 1_000_000, unit="us", utc=True)


def micros(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch, whatever the Series' unit."""
    return ts.astype("datetime64[us, UTC]").array.asi8


def _empty(source: FeatureSource) -> pd.DataFrame:
    frame = source.empty_frame()
    return frame.drop(columns=[source.created_timestamp_column])


class _Clock:
    """Events sorted by (entity, time) as one int64 key per event: entity code * span + time, so
    a window of one entity is a `searchsorted` over all of them."""

    def __init__(self, code: np.ndarray, t: np.ndarray) -> None:
        origin = int(t.min()) - 2 * SESSION_LOOKBACK_US
        span = int(t.max()) - origin + 1
        if (int(code.max()) + 1) * span >= 2**62:
            raise ValueError("too many entities over too long a time for one call; split the input")
        self.code, self.span = code, span
        self.key = code * span + (t - origin)

    def lo(self, rows: np.ndarray, width: int) -> np.ndarray:
        """First event of row i's entity with time > t[i] - width."""
        return np.searchsorted(self.key, self.key[rows] - width, side="right")

    def count(self, mask: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
        """Masked events of row i's entity in (t[i] - width, t[i]], up to row i."""
        cs = np.r_[0, np.cumsum(mask, dtype=np.int64)]
        return cs[rows + 1] - cs[self.lo(rows, width)]


def _session_features(
    clock: _Clock, types: np.ndarray, ev: pd.DataFrame, t: np.ndarray, rows: np.ndarray
) -> pd.DataFrame:
    session = ev["session_id"].to_numpy(object)
    products = ev["product_id"].to_numpy(object)
    view = types == "product_view"
    cart = types == "add_to_cart"
    lo = clock.lo(rows, SESSION_LOOKBACK_US)
    # Events of row i's session in [lo_i, i]: positions sorted by (session, position).
    scode = pd.factorize(session)[0].astype(np.int64)
    n = len(session) + 1
    out = {}
    for label, mask in (("session_events", None), ("session_views", view), ("session_carts", cart)):
        idx = np.arange(len(session)) if mask is None else np.flatnonzero(mask)
        comp = np.sort(scode[idx] * n + idx)
        base = scode[rows] * n
        hi = np.searchsorted(comp, base + rows, side="right")
        out[label] = (hi - np.searchsorted(comp, base + lo, side="left")).astype(np.int64)
    return pd.DataFrame(
        {
            "session_id": session[rows],
            **out,
            "events_1h": clock.count(np.ones(len(types), bool), rows, HOUR_US),
            "views_1h": clock.count(view, rows, HOUR_US),
            "carts_1h": clock.count(cart, rows, HOUR_US),
            "last_event_ts": _seconds(t[rows]),
            "recent_viewed_product_ids": _recent(products, view, lo, rows),
            "recent_carted_product_ids": _recent(products, cart, lo, rows),
        }
    )


def _recent(products: np.ndarray, mask: np.ndarray, lo: np.ndarray, rows: np.ndarray) -> list:
    """Per row i: distinct products of the masked events in [lo_i, i], most recent first, <= 20."""
    idx = np.flatnonzero(mask)
    start = np.searchsorted(idx, lo, side="left")
    stop = np.searchsorted(idx, rows, side="right")
    items = products[idx].tolist()
    out = []
    for a, b in zip(start.tolist(), stop.tolist(), strict=True):
        seen: list = []
        for j in range(b - 1, a - 1, -1):
            p = items[j]
            if p not in seen:
                seen.append(p)
                if len(seen) == RECENT_PRODUCTS:
                    break
        out.append(seen)
    return out


def as_of(rows: pd.DataFrame, key: str, at: pd.Timestamp) -> pd.DataFrame:
    """Each entity's latest row stamped at or before `at` (what Feast serves for time `at`)."""
    before = rows.loc[rows[TIMESTAMP_FIELD] <= at]
    return before.sort_values([key, TIMESTAMP_FIELD]).groupby(key, sort=True).tail(1)


def write_sources(
    data_dir: Path, rows_per_part: int = 2_000_000, since: pd.Timestamp | None = None
) -> dict[str, int]:
    """Both views' offline sources from the clean events, one file per month as the families write
    them (`YYYY-MM.parquet`, rows sorted by (event_timestamp, key)).

    What `get_historical_features` reads for these views, and what materialization copies online
    for entities the stream has not touched since. Entities are computed in parts of about
    `rows_per_part` events, each part turned into Arrow at once (a part's pandas rows and Python
    lists are the working set, not the whole view's).

    Without `since` every row is written and each view's folder is swapped in whole. With `since`
    (the oldest new event), only rows stamped at or after it are computed, from the events after
    `since` minus the lookback: a row depends on its entity's events in (T - lookback, T] only, so
    these rows are exactly a whole run's. Only the months from since's on are rewritten; earlier
    rows are kept as they are. Returns the rows written per view.
    """
    written = {}
    read_from = None if since is None else since - pd.Timedelta(max(LOOKBACK_US.values()), "us")
    events = storage.read_clean(data_dir, "events", list(EVENT_COLUMNS), start=read_from)
    parts = max(1, -(-len(events) // rows_per_part))
    for name, source in SOURCES.items():
        key = events[source.join_key]
        bucket = pd.util.hash_array(key.fillna("").to_numpy(object)) % parts
        tables = []
        for k in range(parts):
            rows = compute(name, events.loc[bucket == k])
            if since is not None:
                rows = rows.loc[rows[TIMESTAMP_FIELD] >= since]
            rows = rows.assign(**{source.created_timestamp_column: rows[TIMESTAMP_FIELD]})
            tables.append(to_arrow(source, conform(source, rows)))
        table = pa.concat_tables(tables).sort_by(
            [(TIMESTAMP_FIELD, "ascending"), (source.join_key, "ascending")]
        )
        del tables
        written[name] = table.num_rows
        if since is None:
            _swap_in(source.path(data_dir), table)
        else:
            _rewrite_from(source.path(data_dir), table, since)
    return written


def _months(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `YYYY-MM` and the distinct months in row order (rows are in time order)."""
    month = pc.strftime(table[TIMESTAMP_FIELD], format="%Y-%m").to_numpy(zero_copy_only=False)
    return month, pd.unique(month)


def _swap_in(folder: Path, table: pa.Table) -> None:
    """The view's every month, written into a staging folder that then replaces the folder."""
    staging = folder.with_name(folder.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    month, months = _months(table)
    for m in months:
        pq.write_table(table.filter(month == m), staging / f"{m}.parquet")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)


def _rewrite_from(folder: Path, table: pa.Table, since: pd.Timestamp) -> None:
    """Months from since's on: the stored rows before `since` and `table`'s rows (all at or after
    it), each month written to a temporary file and renamed over the old one; later stored months
    without a new row are removed. A run that stops part-way is repeated by the next (its state
    still says what to recompute), which gives the same files."""
    folder.mkdir(parents=True, exist_ok=True)
    first = f"{since:%Y-%m}"
    month, months = _months(table)
    kept = {}
    path = folder / f"{first}.parquet"
    if path.exists():
        old = pq.read_table(path)
        kept[first] = old.filter(pc.less(old[TIMESTAMP_FIELD], pa.scalar(since.to_pydatetime())))
    for m in sorted(set(months) | set(kept)):
        new = table.filter(month == m) if m in months else table.slice(0, 0)
        out = pa.concat_tables([kept[m], new]) if m in kept else new
        tmp = folder / f".{m}.parquet.tmp"
        pq.write_table(out, tmp)
        os.replace(tmp, folder / f"{m}.parquet")
    for stale in folder.glob("*.parquet"):
        if stale.stem > first and stale.stem not in months:
            stale.unlink()
