"""An independent oracle for the point-in-time contract (docs/point_in_time.md).

It recomputes every named contract feature for one (entity, t) pair from the clean tables, from
scratch and naively: plain boolean filtering of the raw rows, one pair at a time. It shares no code
with `pipelines/` beyond `storage.read_clean`, so a bug in the pipelines' windowing, change-point
compression or as-of joins cannot hide in both places at once. It is deliberately slow and obvious;
do not "optimise" it into the pipelines' shape.

Reading the contract literally, at an entity timestamp t:
- the snapshot served is T = floor_to_day(t) (daily grain, 00:00 UTC); every value uses rows < T;
- a window W covers [T - W, T);
- change logs are read as of T: the latest row with `updated_at < T`;
- a customer exists at T when its profile as of T exists and its `signup_ts < T`; a product
  exists at T when its row as of T exists. Before that every feature is null;
- orders are change logs too (contract v1.1): the order at T is its newest version in force, the
  first version (smallest `updated_at`) from `order_ts` on, a later one once `updated_at < T`;
- an order counts when the version in force is not cancelled; its refund counts towards spend only
  once it is known: the refund of the newest version in force whose `refund_ts < T` (or that has no
  `refund_ts`). Before its refund an order is worth its full `total_amount`: using a refund that
  happens after T would leak the future;
- the last order counts orders not cancelled when placed (their first version);
- the most-bought products count the orders live at T (version in force not cancelled) holding
  each product, best first: more orders, then the latest such order, then the product id; the
  first FREQUENT (50) of them.

The pipeline side is read the way Feast reads a source: for (entity, t) the latest source row with
`event_timestamp <= t` (ties broken by the latest `created_timestamp`), nothing when there is none.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.storage import read_clean

DAY = pd.Timedelta(days=1)
FREQUENT = 50  # most-bought products kept (customer_activity.frequent_product_ids)

# The named contract features, by the Feast view that serves them.
NAMED: dict[str, tuple[str, ...]] = {
    "customer_activity": (
        "orders_7d",
        "orders_30d",
        "orders_90d",
        "spend_30d",
        "spend_90d",
        "avg_order_value_90d",
        "last_order_ts",
        "events_30d",
        "sessions_30d",
        "add_to_cart_30d",
        "frequent_product_ids",
    ),
    "customer_profile": ("customer_age_years", "signup_ts"),
    "customer_reviews": ("reviews_90d", "avg_rating_90d"),
    "product_stats": ("product_views_7d", "product_units_sold_30d", "product_price"),
}
# On-demand (customer_recency): computed from t and the stored timestamps, never stored.
RECENCY = ("days_since_last_order", "tenure_days")
ENTITY_KEY = {
    "customer_activity": "customer_id",
    "customer_profile": "customer_id",
    "customer_reviews": "customer_id",
    "product_stats": "product_id",
}
INT_FEATURES = {
    "orders_7d",
    "orders_30d",
    "orders_90d",
    "events_30d",
    "sessions_30d",
    "add_to_cart_30d",
    "customer_age_years",
    "reviews_90d",
    "product_views_7d",
    "product_units_sold_30d",
}


def floor_day(t: pd.Timestamp) -> pd.Timestamp:
    """The daily snapshot served at t: 00:00 UTC of t's day."""
    return pd.Timestamp(t).tz_convert("UTC").floor("D")


@dataclass
class RawShop:
    """The clean tables, as read back from a data directory."""

    customers: pd.DataFrame
    products: pd.DataFrame
    orders: pd.DataFrame
    order_items: pd.DataFrame
    events: pd.DataFrame
    reviews: pd.DataFrame
    # The instant the exports are complete up to (`ingest --as-of`): snapshots run to it.
    as_of: pd.Timestamp | None = None
    product_collections: pd.DataFrame | None = None

    def of(self, table: str, key: str, entity: str) -> list[dict]:
        """The rows of `table` whose `key` is `entity`, as plain dicts (nulls as None).

        The tables are split by entity once; everything after that is a Python loop over a
        handful of rows, which is both obviously right and fast enough for a few hundred pairs.
        """
        cache = self.__dict__.setdefault("_split", {})
        if (table, key) not in cache:
            frame = getattr(self, table)
            if table == "order_items" and key == "product_id":
                # the order's own timestamp and status as placed, from the orders table
                frame = frame.drop(columns=["order_ts"], errors="ignore").merge(
                    self.first_versions()[["order_id", "order_ts", "status"]],
                    on="order_id",
                    how="left",
                )
            split: dict[str, list[dict]] = {}
            for row in frame.to_dict("records"):
                row = {k: _none_if_na(v) for k, v in row.items()}
                if row[key] is not None:
                    split.setdefault(row[key], []).append(row)
            cache[(table, key)] = split
        return cache[(table, key)].get(entity, [])

    def first_versions(self) -> pd.DataFrame:
        """One row per order: the order as placed."""
        return self._by_version().drop_duplicates("order_id")

    def _by_version(self) -> pd.DataFrame:
        """Orders oldest version first (`updated_at` missing: the order as placed)."""
        o = self.orders
        if "updated_at" not in o:
            return o
        when = o["updated_at"].fillna(o["order_ts"])
        return o.assign(_when=when).sort_values("_when", kind="stable").drop(columns="_when")

    def later_versions(self) -> pd.DataFrame:
        """Order rows that are not the order as placed (customer and order_ts as placed)."""
        if "updated_at" not in self.orders:
            return self.orders.iloc[:0].assign(updated_at=pd.NaT)
        o = self._by_version()
        return o[o["order_id"].duplicated()]

    def order_versions(self, order_id: str) -> list[dict]:
        """An order's versions, oldest first."""
        return _versions(self.of("orders", "order_id", order_id))[order_id]

    @classmethod
    def load(cls, data_dir: Path) -> RawShop:
        tables = {
            n: read_clean(data_dir, n)
            for n in (
                "customers",
                "products",
                "orders",
                "order_items",
                "events",
                "reviews",
                "product_collections",
            )
        }
        manifest = data_dir / "state" / "ingest" / "manifest.json"
        as_of = json.loads(manifest.read_text()).get("as_of") if manifest.exists() else None
        return cls(**tables, as_of=pd.Timestamp(as_of) if as_of else None)


# --- the oracle: one pair at a time, plain loops ------------------------------------------------


def _none_if_na(v):
    """None for every scalar spelling of null (None, NaN, NaT, pd.NA); other values unchanged."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    return v


def _as_of(rows: list[dict], T: pd.Timestamp) -> dict | None:
    """The change-log row in force at T: the latest with `updated_at < T`."""
    before = [r for r in rows if r["updated_at"] is not None and r["updated_at"] < T]
    return max(before, key=lambda r: r["updated_at"]) if before else None


def _versions(rows: list[dict]) -> dict[str, list[dict]]:
    """An order's versions, oldest first (`updated_at` missing: the order as placed)."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["order_id"], []).append(r)
    for vs in out.values():
        vs.sort(key=lambda r: r.get("updated_at") or r["order_ts"])
    return out


def _order_at(versions: list[dict], T: pd.Timestamp) -> tuple[dict, float]:
    """The version in force at T (the first one stands from order_ts on) and the refund known at
    T: that of the newest version in force whose refund_ts has passed (or that has none)."""
    in_force = [versions[0]] + [v for v in versions[1:] if v["updated_at"] < T]
    known = [v for v in in_force if v["refund_ts"] is None or v["refund_ts"] < T]
    refund = (known[-1]["refunded_amount"] or 0.0) if known else 0.0
    # a version's order_ts, customer and placement are the first version's
    return {**in_force[-1], "order_ts": versions[0]["order_ts"]}, refund


def _in(ts, T: pd.Timestamp, days: int) -> bool:
    """ts lies in the window [T - days, T)."""
    return ts is not None and T - timedelta(days=days) <= ts < T


def customer_features(shop: RawShop, customer_id: str, t: pd.Timestamp) -> dict | None:
    """Every named customer feature at t; None when the customer does not exist at floor(t)."""
    T = floor_day(t)
    profile = _as_of(shop.of("customers", "customer_id", customer_id), T)
    if profile is None or not profile["signup_ts"] < T:
        return None
    out: dict = {}

    versions = _versions(shop.of("orders", "customer_id", customer_id))
    # (version in force, refund known) per order placed before T whose version in force is live
    at_t = {oid: _order_at(vs, T) for oid, vs in versions.items() if vs[0]["order_ts"] < T}
    live = {oid: vr for oid, vr in at_t.items() if vr[0]["status"] != "cancelled"}
    for w in (7, 30, 90):
        out[f"orders_{w}d"] = sum(_in(v["order_ts"], T, w) for v, _ in live.values())
    for w in (30, 90):
        spend = 0.0
        for v, refund in live.values():
            if _in(v["order_ts"], T, w):
                spend += v["total_amount"] - refund
        out[f"spend_{w}d"] = spend
    out["avg_order_value_90d"] = out["spend_90d"] / out["orders_90d"] if out["orders_90d"] else None
    held: dict[str, list[int]] = {}  # product -> the order times of the live orders holding it
    for oid, (v, _) in live.items():
        for product in {i["product_id"] for i in shop.of("order_items", "order_id", oid)}:
            held.setdefault(str(product), []).append(v["order_ts"].value)
    ranked = sorted(held, key=lambda p: (-len(held[p]), -max(held[p]), p))
    out["frequent_product_ids"] = ranked[:FREQUENT]
    placed = [vs[0] for vs in versions.values() if vs[0]["status"] != "cancelled"]
    before = [o["order_ts"] for o in placed if o["order_ts"] < T]
    out["last_order_ts"] = max(before) if before else None

    ev = [e for e in shop.of("events", "customer_id", customer_id) if _in(e["event_ts"], T, 30)]
    out["events_30d"] = len(ev)
    out["sessions_30d"] = len({e["session_id"] for e in ev})
    out["add_to_cart_30d"] = sum(e["event_type"] == "add_to_cart" for e in ev)

    by = profile["birth_year"]
    out["customer_age_years"] = None if by is None else T.year - int(by)
    out["signup_ts"] = profile["signup_ts"]

    ratings = [
        r["rating"]
        for r in shop.of("reviews", "customer_id", customer_id)
        if _in(r["review_ts"], T, 90)
    ]
    out["reviews_90d"] = len(ratings)
    out["avg_rating_90d"] = sum(ratings) / len(ratings) if ratings else None

    out.update(recency(t, out["last_order_ts"], out["signup_ts"]))
    return out


def product_features(shop: RawShop, product_id: str, t: pd.Timestamp) -> dict | None:
    """Every named product feature at t; None when the product does not exist at floor(t)."""
    T = floor_day(t)
    row = _as_of(shop.of("products", "product_id", product_id), T)
    if row is None:
        return None
    views = [
        e
        for e in shop.of("events", "product_id", product_id)
        if e["event_type"] == "product_view" and _in(e["event_ts"], T, 7)
    ]
    # order_ts and status come from the orders table (not the copy the clean items carry): the
    # order's version in force at T
    units = 0
    for i in shop.of("order_items", "product_id", product_id):
        if not _in(i["order_ts"], T, 30):
            continue
        version, _ = _order_at(shop.order_versions(i["order_id"]), T)
        if version["status"] != "cancelled":
            units += i["quantity"]
    return {
        "product_views_7d": len(views),
        "product_units_sold_30d": int(units),
        "product_price": float(row["price"]),
    }


def recency(t: pd.Timestamp, last_order_ts, signup_ts) -> dict:
    """What the on-demand customer_recency view must return from the stored timestamps."""
    last_order_ts, signup_ts = _none_if_na(last_order_ts), _none_if_na(signup_ts)
    return {
        "days_since_last_order": None if last_order_ts is None else (t - last_order_ts) / DAY,
        "tenure_days": None if signup_ts is None else (t - signup_ts) / DAY,
    }


# --- the pipeline side, read the way Feast reads a source ---------------------------------------


def by_entity(source: pd.DataFrame, key: str) -> dict[str, list[dict]]:
    """A source's rows split by entity, once, so that each lookup scans only its own rows."""
    split: dict[str, list[dict]] = {}
    for row in source.to_dict("records"):
        split.setdefault(row[key], []).append(row)
    return split


def lookup(rows_by_entity: dict[str, list[dict]], entity: str, t: pd.Timestamp) -> dict | None:
    """The latest source row of `entity` with `event_timestamp <= t`; None if there is none.
    Ties on `event_timestamp` go to the latest `created_timestamp`, as in Feast."""
    rows = [r for r in rows_by_entity.get(entity, []) if r["event_timestamp"] <= t]
    if not rows:
        return None
    return max(
        rows,
        key=lambda r: (r["event_timestamp"], r.get("created_timestamp") or r["event_timestamp"]),
    )


def same(expected, actual, name: str) -> bool:
    """Exact for counts and timestamps, 1e-9 for floats, null only where null is due."""
    expected, actual = _none_if_na(expected), _none_if_na(actual)
    if expected is None or actual is None:
        return expected is None and actual is None
    if name in INT_FEATURES:
        return float(actual) == float(expected) and float(actual).is_integer()
    if isinstance(expected, (list, tuple, np.ndarray)):  # a list feature: the items, in order
        if not isinstance(actual, (list, tuple, np.ndarray)):
            return False
        return [str(a) for a in actual] == [str(e) for e in expected]
    if isinstance(expected, pd.Timestamp):
        return pd.Timestamp(actual) == expected
    if isinstance(expected, (float, int, np.floating, np.integer)):
        return math.isclose(float(actual), float(expected), rel_tol=1e-9, abs_tol=1e-9)
    return actual == expected


# --- where to look: random pairs plus the contract's edges ---------------------------------------


def last_snapshot(shop: RawShop) -> pd.Timestamp:
    """The last snapshot a store built from these tables holds: the day after the newest row, or
    the day of the export's declared completeness (`ingest --as-of`) when that is later."""
    newest = max(
        df[col].max()
        for df, col in (
            (shop.customers, "updated_at"),
            (shop.products, "updated_at"),
            (shop.orders, "order_ts"),
            (shop.order_items, "order_ts"),
            (shop.events, "event_ts"),
            (shop.reviews, "review_ts"),
        )
        if len(df) and df[col].notna().any()
    )
    last = floor_day(newest) + DAY
    return max(last, floor_day(shop.as_of)) if shop.as_of is not None else last


def _around(rng: np.random.Generator, snapshot: pd.Timestamp) -> list[pd.Timestamp]:
    """The snapshot itself, an arbitrary instant of its day, and the last instant before it."""
    offset = pd.Timedelta(microseconds=int(rng.integers(1, 86_400_000_000)))
    return [snapshot, snapshot + offset, snapshot - pd.Timedelta(microseconds=1)]


def customer_pairs(
    shop: RawShop, rng: np.random.Generator, n_random: int = 60, n_edges: int = 12
) -> list[tuple[str, pd.Timestamp]]:
    """(customer_id, t) pairs: random ones, and ones placed on purpose on the contract's edges."""
    ids = shop.customers["customer_id"].dropna().unique()
    first_seen = shop.customers.groupby("customer_id")["signup_ts"].min()
    lo, hi = first_seen.min() - 3 * DAY, last_snapshot(shop) + DAY
    pairs = [(str(c), _uniform(rng, lo, hi)) for c in rng.choice(ids, n_random)]

    def pick(frame: pd.DataFrame, k: int = n_edges) -> pd.DataFrame:
        frame = frame[frame["customer_id"].notna()]
        return frame.iloc[rng.permutation(len(frame))[:k]]

    live = shop.orders[shop.orders["status"] != "cancelled"]
    for w in (7, 30, 90):  # the day an order leaves its window, and the instant before
        for _, o in pick(live).iterrows():
            pairs += [(o["customer_id"], t) for t in _around(rng, _exit(o["order_ts"], w))]
    for _, o in pick(shop.orders[shop.orders["status"] == "cancelled"]).iterrows():
        pairs += [(o["customer_id"], t) for t in _around(rng, floor_day(o["order_ts"]) + DAY)]
    for _, o in pick(shop.orders[shop.orders["refund_ts"].notna()]).iterrows():
        pairs += [(o["customer_id"], t) for t in _around(rng, floor_day(o["refund_ts"]) + DAY)]
    for _, e in pick(shop.events).iterrows():
        pairs += [(e["customer_id"], t) for t in _around(rng, _exit(e["event_ts"], 30))]
    for _, r in pick(shop.reviews).iterrows():
        pairs += [(r["customer_id"], t) for t in _around(rng, _exit(r["review_ts"], 90))]
    for _, c in pick(shop.customers).iterrows():  # before, at and after signup / a profile change
        pairs += [(c["customer_id"], t) for t in _around(rng, floor_day(c["updated_at"]) + DAY)]
        pairs.append((c["customer_id"], c["signup_ts"] - rng.uniform(0, 3) * DAY))
    active = (
        set(shop.orders["customer_id"].dropna())
        | set(shop.events["customer_id"].dropna())
        | set(shop.reviews["customer_id"].dropna())
    )
    never = [c for c in ids if c not in active]
    for c in rng.permutation(never)[:n_edges]:
        pairs += [(str(c), _uniform(rng, lo, hi)) for _ in range(2)]
    for year in range(lo.year + 1, hi.year + 1):  # ages change on 1 January
        new_year = pd.Timestamp(f"{year}-01-01", tz="UTC")
        for c in rng.choice(ids, n_edges // 2):
            pairs += [(str(c), t) for t in _around(rng, new_year)]
    later = shop.later_versions()
    for _, o in pick(later, 2 * n_edges).iterrows():  # a later version takes force
        pairs += [(o["customer_id"], t) for t in _around(rng, floor_day(o["updated_at"]) + DAY)]
    for _, o in pick(later[later["refund_ts"].notna()], n_edges).iterrows():
        pairs += [(o["customer_id"], t) for t in _around(rng, floor_day(o["refund_ts"]) + DAY)]
    return [(c, t) for c, t in pairs if t < hi]


def product_pairs(
    shop: RawShop, rng: np.random.Generator, n_random: int = 60, n_edges: int = 12
) -> list[tuple[str, pd.Timestamp]]:
    """(product_id, t) pairs: random ones, window exits, creation and price changes."""
    ids = shop.products["product_id"].dropna().unique()
    lo, hi = shop.products["created_at"].min() - 3 * DAY, last_snapshot(shop) + DAY
    pairs = [(str(p), _uniform(rng, lo, hi)) for p in rng.choice(ids, n_random)]

    def pick(frame: pd.DataFrame, k: int = n_edges) -> pd.DataFrame:
        frame = frame[frame["product_id"].notna()]
        return frame.iloc[rng.permutation(len(frame))[:k]]

    views = shop.events[shop.events["event_type"] == "product_view"]
    for _, e in pick(views).iterrows():
        pairs += [(e["product_id"], t) for t in _around(rng, _exit(e["event_ts"], 7))]
    items = shop.order_items.merge(
        shop.first_versions()[["order_id", "customer_id", "status"]], on="order_id"
    )
    for frame in (
        items,
        items[items["customer_id"].isna()],  # guests
        items[items["status"] == "cancelled"],
    ):
        for _, i in pick(frame).iterrows():
            pairs += [(i["product_id"], t) for t in _around(rng, _exit(i["order_ts"], 30))]
    for _, p in pick(shop.products, 2 * n_edges).iterrows():
        pairs += [(p["product_id"], t) for t in _around(rng, floor_day(p["updated_at"]) + DAY)]
        pairs.append((p["product_id"], p["created_at"] - rng.uniform(0, 3) * DAY))
    changed = items.merge(shop.later_versions()[["order_id", "updated_at"]], on="order_id")
    for _, i in pick(changed, 2 * n_edges).iterrows():  # an order changes: refund, cancellation
        pairs += [(i["product_id"], t) for t in _around(rng, floor_day(i["updated_at"]) + DAY)]
    return [(p, t) for p, t in pairs if t < hi]


def _exit(ts: pd.Timestamp, days: int) -> pd.Timestamp:
    """The first snapshot at which a row stamped ts is outside a window of `days`."""
    return floor_day(ts) + DAY + pd.Timedelta(days=days)


def _uniform(rng: np.random.Generator, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.Timestamp:
    return lo + pd.Timedelta(
        microseconds=int(rng.integers(0, int((hi - lo) / pd.Timedelta(microseconds=1))))
    )


def read_source(data_dir: Path, view: str) -> pd.DataFrame:
    """A feature source as Feast's offline store reads it: every parquet file under its folder."""
    import pyarrow.dataset as ds

    files = sorted(str(p) for p in (Path(data_dir) / "features" / view).rglob("*.parquet"))
    return ds.dataset(files, format="parquet").to_table().to_pandas()


def compare(
    expected: dict | None, actual: dict | None, features: tuple[str, ...]
) -> list[tuple[str, object, object]]:
    """The features where the store disagrees with the oracle: (name, expected, actual)."""
    out = []
    for name in features:
        e = None if expected is None else expected[name]
        a = None if actual is None else actual.get(name)
        if not same(e, a, name):
            out.append((name, e, a))
    return out
