"""Declared aggregations (feature_repo/aggregations.yaml) against a from-scratch recomputation.

A test feature repo declares new features - a filtered count, sums, a mean, count_distinct, a
share, min, max and last, 14- and 60-day windows and lifetime, a product view through order items
and a customer x product view - and every value the store serves at a few hundred (entity, t)
pairs (random instants, window exits, the instants around them, entities before they exist) is
recomputed naively from the clean tables: plain loops over the rows, the filters written again as
Python, each order read as of T (contract v1.1: its newest version with `updated_at < T`, the
refund of its newest version whose `refund_ts` passed). Historical and incremental builds (daily
batches, one day arriving two weeks late) are both checked, and must be identical.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import sources
from pipelines.ingest_state import ingest_state_dir
from pipelines.run import read_source, run
from shopconfig.settings import FEATURE_REPO
from tests.support.pipelines_shop import build, daily_batches, write_batch

DAY = pd.Timedelta(days=1)

DECLARATIONS = """
views:
  - name: test_customer_orders
    entity: customer
    source: orders
    filter: status != 'cancelled'
    description: Orders of a customer, declared.
    owner: tests@shopfeast
    tags: {domain: customer}
    features:
      - {name: discounted_orders_14d, function: count, filter: discount_amount > 0,
         window: 14d, description: discounted orders}
      - {name: amount_60d, function: sum, column: total_amount, window: 60d, description: sum}
      - {name: mean_amount_60d, function: mean, column: total_amount, window: 60d,
         description: mean}
      - {name: discount_share_14d, function: share, where: discount_amount > 0, window: 14d,
         description: share}
      - {name: max_amount_14d, function: max, column: total_amount, window: 14d,
         description: max}
      - {name: min_amount_ever, function: min, column: total_amount, window: lifetime,
         description: min}
      - {name: last_status_60d, function: last, column: status, window: 60d, description: last}
      - {name: refunds_known_lifetime, function: count, column: refund_ts, window: lifetime,
         filter: "refunded_amount > 0 and not (status in ['refunded'])", description: partial}
      - {name: refunded_60d, function: sum, column: refunded_amount, window: 60d,
         description: refunds known}
      - {name: last_refund_ts_ever, function: max, column: refund_ts, window: lifetime,
         description: latest known refund}
      - {name: products_60d, source: order_items, function: count_distinct, column: product_id,
         filter: status != 'cancelled', window: 60d, description: distinct products}
      - {name: events_14d, source: events, function: count, window: 14d,
         filter: "event_type in ['product_view', 'add_to_cart']", description: events}
  - name: test_product_sales
    entity: product
    source: order_items
    filter: status != 'cancelled'
    description: Sales of a product, declared.
    features:
      - {name: buyers_14d, function: count_distinct, column: customer_id, window: 14d,
         description: distinct buyers}
      - {name: units_60d, function: sum, column: quantity, window: 60d, description: units}
      - {name: big_orders_ever, source: orders, function: count, filter: total_amount >= 60,
         window: lifetime, description: orders}
  - name: test_pair_history
    entity: customer_product
    source: order_items
    description: A customer's history with a product, declared.
    features:
      - {name: tp_orders_14d, function: count_distinct, column: order_id,
         filter: status != 'cancelled', window: 14d, description: orders with it}
      - {name: tp_last_bought, function: max, column: order_ts, filter: status != 'cancelled',
         window: lifetime, description: last bought}
      - {name: tp_views_30d, source: events, function: count,
         filter: event_type == 'product_view', window: 30d, description: views}
"""

LIVE = lambda r: r["status"] != "cancelled"  # noqa: E731
# name: (view, source, row filter, function, column, window days or None, share predicate)
ORACLE = {
    "discounted_orders_14d": (
        "orders",
        lambda r: LIVE(r) and _gt(r["discount_amount"], 0),
        "count",
        None,
        14,
        None,
    ),
    "amount_60d": ("orders", LIVE, "sum", "total_amount", 60, None),
    "mean_amount_60d": ("orders", LIVE, "mean", "total_amount", 60, None),
    "discount_share_14d": (
        "orders",
        LIVE,
        "share",
        None,
        14,
        lambda r: _gt(r["discount_amount"], 0),
    ),
    "max_amount_14d": ("orders", LIVE, "max", "total_amount", 14, None),
    "min_amount_ever": ("orders", LIVE, "min", "total_amount", None, None),
    "last_status_60d": ("orders", LIVE, "last", "status", 60, None),
    "refunds_known_lifetime": (
        "orders",
        lambda r: LIVE(r) and _gt(r["refunded_amount"], 0) and r["status"] != "refunded",
        "count",
        "refund_ts",
        None,
        None,
    ),
    "refunded_60d": ("orders", LIVE, "sum", "refunded_amount", 60, None),
    "last_refund_ts_ever": ("orders", LIVE, "max", "refund_ts", None, None),
    "products_60d": ("order_items", LIVE, "count_distinct", "product_id", 60, None),
    "events_14d": (
        "events",
        lambda r: r["event_type"] in ("product_view", "add_to_cart"),
        "count",
        None,
        14,
        None,
    ),
    "buyers_14d": ("order_items", LIVE, "count_distinct", "customer_id", 14, None),
    "units_60d": ("order_items", LIVE, "sum", "quantity", 60, None),
    "big_orders_ever": (
        "orders",
        lambda r: r["total_amount"] >= 60,  # the view's filter is for its own source
        "count",
        None,
        None,
        None,
    ),
    "tp_orders_14d": ("order_items", LIVE, "count_distinct", "order_id", 14, None),
    "tp_last_bought": ("order_items", LIVE, "max", "order_ts", None, None),
    "tp_views_30d": (
        "events",
        lambda r: r["event_type"] == "product_view",
        "count",
        None,
        30,
        None,
    ),
}
# The shipped customer x product view (feature_repo/aggregations.yaml), the same way.
ORACLE.update(
    {
        "pair_orders_90d": ("orders", LIVE, "count", None, 90, None),
        "pair_orders_lifetime": ("orders", LIVE, "count", None, None, None),
        "pair_last_order_ts": ("orders", LIVE, "max", "order_ts", None, None),
        "pair_views_30d": (
            "events",
            lambda r: r["event_type"] == "product_view",
            "count",
            None,
            30,
            None,
        ),
        "pair_carts_30d": (
            "events",
            lambda r: r["event_type"] == "add_to_cart",
            "count",
            None,
            30,
            None,
        ),
    }
)
VIEWS = {
    "test_customer_orders": ("customer_id",),
    "test_product_sales": ("product_id",),
    "test_pair_history": ("customer_id", "product_id"),
    "customer_product_history": ("customer_id", "product_id"),
}
TIME = {"orders": "order_ts", "order_items": "order_ts", "events": "event_ts"}


def _gt(value, bound) -> bool:
    return value is not None and value > bound


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / "aggregations.yaml").write_text(DECLARATIONS)
    (root / "aggregations").mkdir()
    shutil.copy(FEATURE_REPO / "aggregations.yaml", root / "aggregations" / "shipped.yaml")
    return root


@pytest.fixture(scope="module")
def shop() -> dict[str, pd.DataFrame]:
    """The pipelines' test shop, with later versions of some orders (contract v1.1): cancelled and
    discounted two days after they were placed; partly refunded four days after (the refund known
    then, or three days later); edited (total + 10) twenty days after, past a 14-day window's end
    and inside 60 days; and one order refunded, then cancelled in a version naming another customer
    (the first version's customer is the order's)."""
    tables = build(seed=11, customers=30, products=12, days=60)
    orders = tables["orders"]
    versions = [orders]
    cancelled = orders.iloc[::7].copy()
    cancelled["updated_at"] = cancelled["order_ts"] + 2 * DAY
    cancelled["status"] = "cancelled"
    cancelled["discount_amount"] = 9.0
    versions.append(cancelled)
    refunded = orders.iloc[3::11].copy()
    refunded["updated_at"] = refunded["order_ts"] + 4 * DAY + pd.Timedelta(hours=5)
    refunded["status"] = "partially_refunded"
    refunded["refunded_amount"] = (refunded["total_amount"] / 4).round(2)
    later = np.arange(len(refunded)) % 2 == 1
    refunded["refund_ts"] = refunded["updated_at"] + np.where(later, 3, 0) * DAY
    versions.append(refunded)
    edited = orders.iloc[5::13].copy()
    edited["updated_at"] = edited["order_ts"] + 20 * DAY
    edited["total_amount"] = edited["total_amount"] + 10
    versions.append(edited)
    both = orders.iloc[[8]].copy()  # refunded on day 1, cancelled on day 6 (newer: wins)
    versions.append(
        both.assign(
            updated_at=both["order_ts"] + DAY,
            status="partially_refunded",
            refunded_amount=1.0,
            refund_ts=both["order_ts"] + DAY,
        )
    )
    other = "c0" if both["customer_id"].iloc[0] != "c0" else "c1"  # the first version's counts
    versions.append(
        both.assign(updated_at=both["order_ts"] + 6 * DAY, status="cancelled", customer_id=other)
    )
    merged = pd.concat(versions, ignore_index=True)
    merged["updated_at"] = merged["updated_at"].fillna(merged["order_ts"])
    tables["orders"] = merged.drop_duplicates(["order_id", "updated_at"], keep="last")
    return tables


def horizon(shop: dict[str, pd.DataFrame]) -> pd.Timestamp:
    """`ingest --as-of`: the exports declared complete 20 days past the last row, so windows
    empty out on days without rows (checked up to it)."""
    last = max(shop["events"]["event_ts"].max(), shop["orders"]["updated_at"].max())
    return last.floor("D") + 20 * DAY + pd.Timedelta(hours=6)


def declare_horizon(root: Path, shop: dict[str, pd.DataFrame]) -> None:
    manifest = ingest_state_dir(root) / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"as_of": horizon(shop).isoformat()}))


@pytest.fixture(scope="module")
def historical(shop, repo, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("declared_historical")
    write_batch(root, shop, "all")
    declare_horizon(root, shop)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPFEAST_FEATURE_REPO", str(repo))
        run(root, "historical", only=list(VIEWS), echo=False)
    return root


@pytest.fixture(scope="module")
def incremental(shop, repo, tmp_path_factory) -> Path:
    """Daily batches, a run now and then, one day's batch two weeks late."""
    root = tmp_path_factory.mktemp("declared_incremental")
    batches = daily_batches(shop)
    late_day, late = batches[25]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPFEAST_FEATURE_REPO", str(repo))
        for i, (name, tables) in enumerate(batches):
            if name != late_day:
                write_batch(root, tables, name)
            if i in (12, 30, 39, 47):
                run(root, "incremental", only=list(VIEWS), echo=False)
            if i == 39:
                write_batch(root, late, f"{late_day}-late")
        run(root, "incremental", only=list(VIEWS), echo=False)
        declare_horizon(root, shop)  # the same exports, declared complete later
        run(root, "incremental", only=list(VIEWS), echo=False)
    return root


# --- the oracle: plain loops over rows -----------------------------------------------------------


class Shop:
    """The shop as a list of rows per table, and each order as it stands at a snapshot T."""

    def __init__(self, tables: dict[str, pd.DataFrame]) -> None:
        def records(df: pd.DataFrame) -> list[dict]:
            return [{k: _none(v) for k, v in r.items()} for r in df.to_dict("records")]

        self.versions: dict[str, list[dict]] = {}
        for o in records(tables["orders"]):
            self.versions.setdefault(o["order_id"], []).append(o)
        for vs in self.versions.values():
            vs.sort(key=lambda o: o["updated_at"] or o["order_ts"])
        self.items = records(tables["order_items"])
        self.events = records(tables["events"])
        self.customers = records(tables["customers"])
        self.products = records(tables["products"])

    def order_at(self, order_id: str, T: pd.Timestamp) -> dict | None:
        """The order as read at snapshot T (contract v1.1), None before it was placed."""
        vs = self.versions[order_id]
        first = vs[0]
        if not first["order_ts"] < T:
            return None
        taken = [first] + [v for v in vs[1:] if v["updated_at"] < T]  # versions in force so far
        known = [v for v in taken if v["refund_ts"] is None or v["refund_ts"] < T]
        refund = known[-1] if known else None
        return {
            **taken[-1],
            "order_ts": first["order_ts"],
            "customer_id": first["customer_id"],
            "refunded_amount": refund["refunded_amount"] if refund else 0.0,
            "refund_ts": refund["refund_ts"] if refund else None,
        }

    def source(self, table: str, key: tuple[str, ...], T: pd.Timestamp) -> list[dict]:
        """The rows of `table` visible at T, as they read at T."""
        if table == "events":
            return [e for e in self.events if e["event_ts"] < T]
        orders = {o: self.order_at(o, T) for o in self.versions}
        if table == "orders" and "product_id" not in key:
            return [o for o in orders.values() if o is not None]
        out, seen = [], set()
        for it in self.items:
            order = orders[it["order_id"]]
            if order is None:
                continue
            if table == "orders":  # orders reached through their items: each (order, product)
                if (it["order_id"], it["product_id"]) in seen:
                    continue
                seen.add((it["order_id"], it["product_id"]))
                out.append({**order, "product_id": it["product_id"]})
            else:
                out.append({**order, **{k: v for k, v in it.items() if k != "order_ts"}})
        return out

    def exists(self, view: str, features: list[str], entity: tuple, T: pd.Timestamp) -> bool:
        if view == "test_customer_orders":
            versions = [
                c for c in self.customers if c["customer_id"] == entity[0] and c["updated_at"] < T
            ]
            if not versions:
                return False
            return max(versions, key=lambda c: c["updated_at"])["signup_ts"] < T
        if view == "test_product_sales":
            return any(p["product_id"] == entity[0] and p["updated_at"] < T for p in self.products)
        # a pair exists from the first snapshot at which a feature read one of its rows
        day = T - 70 * DAY  # before the shop's first row (60 days)
        while day <= T:
            if any(self.reads(f, VIEWS[view], entity, day) for f in features):
                return True
            day += DAY
        return False

    def rows(self, name: str, key: tuple[str, ...], entity: tuple, T: pd.Timestamp) -> list[dict]:
        """The rows feature `name` reads for `entity` at snapshot T."""
        table, keep, _, _, days, _ = ORACLE[name]
        lo = None if days is None else T - days * DAY
        return [
            r
            for r in self.by_entity(table, key, T).get(entity, [])
            if (lo is None or r[TIME[table]] >= lo) and keep(r)
        ]

    def reads(self, name: str, key: tuple[str, ...], entity: tuple, T: pd.Timestamp) -> bool:
        return bool(self.rows(name, key, entity, T))

    def by_entity(self, table: str, key: tuple[str, ...], T: pd.Timestamp) -> dict:
        """`source` grouped by entity (kept per snapshot: the checks revisit the same days)."""
        cache = self.__dict__.setdefault("_cache", {})
        if (table, key, T) not in cache:
            groups: dict[tuple, list[dict]] = {}
            for r in self.source(table, key, T):
                groups.setdefault(tuple(r[k] for k in key), []).append(r)
            cache[(table, key, T)] = groups
        return cache[(table, key, T)]

    def value(self, name: str, key: tuple[str, ...], entity: tuple, T: pd.Timestamp):
        table, _, function, column, _, where = ORACLE[name]
        rows = self.rows(name, key, entity, T)
        if function == "share":
            return sum(bool(where(r)) for r in rows) / len(rows) if rows else None
        if column is None:
            return len(rows)
        rows = [r for r in rows if r[column] is not None]
        values = [r[column] for r in rows]
        if function == "count":
            return len(values)
        if function == "count_distinct":
            return len(set(values))
        if function == "sum":
            return sum(values)
        if function == "mean":
            return sum(values) / len(values) if values else None
        if function == "min":
            return min(values) if values else None
        if function == "max":
            return max(values) if values else None
        if function == "last":
            best = max(rows, key=lambda r: (r[TIME[table]], r[column]), default=None)
            return None if best is None else best[column]
        raise AssertionError(function)


def _none(v):
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    return v


def _same(expected, actual) -> bool:
    expected, actual = _none(expected), _none(actual)
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, pd.Timestamp):
        return pd.Timestamp(actual) == expected
    if isinstance(expected, str):
        return actual == expected
    if isinstance(expected, int | np.integer) and not isinstance(expected, bool):
        return float(actual) == float(expected)
    return math.isclose(float(actual), float(expected), rel_tol=1e-9, abs_tol=1e-9)


def _pairs(shop: dict[str, pd.DataFrame], rng: np.random.Generator):
    """(view, entity, t): random instants, window exits and the instants around them."""
    start = shop["customers"]["signup_ts"].min().floor("D") - 2 * DAY
    end = horizon(shop).floor("D") + DAY  # the last snapshot is the horizon's day
    span = int((end - start) / pd.Timedelta(seconds=1))

    def around(T: pd.Timestamp) -> list[pd.Timestamp]:
        inside = pd.Timedelta(seconds=int(rng.integers(1, 86400)))
        return [T, T + inside, T - pd.Timedelta(microseconds=1)]

    items = shop["order_items"].merge(shop["orders"][["order_id", "customer_id"]], on="order_id")
    out = []
    for view, key in VIEWS.items():
        frame = items if "product_id" in key else shop["orders"]
        ids = frame[list(key)].dropna().drop_duplicates().to_numpy()
        for k in rng.integers(len(ids), size=80):
            t = start + pd.Timedelta(seconds=int(rng.integers(span)))
            out.append((view, tuple(ids[k]), t))
        for source, days in ((frame, 14), (frame, 60), (shop["events"], 30)):
            rows = source.dropna(subset=list(key))
            for j in rng.integers(len(rows), size=20):
                row = rows.iloc[int(j)]
                ts = row["event_ts"] if "event_ts" in row else row["order_ts"]
                exit_day = ts.floor("D") + DAY + days * DAY
                entity = tuple(row[k] for k in key)
                out += [(view, entity, t) for t in around(exit_day) if t < end]
        # the days a later version of an order, or its refund, takes effect
        versions = shop["orders"][shop["orders"]["updated_at"] > shop["orders"]["order_ts"]]
        changes = frame[frame["order_id"].isin(versions["order_id"])].dropna(subset=list(key))
        for j in rng.integers(len(changes), size=25):
            row = changes.iloc[int(j)]
            mine = versions[versions["order_id"] == row["order_id"]]
            when = [*mine["updated_at"], *mine["refund_ts"].dropna()]
            entity = tuple(row[k] for k in key)
            for w in when:
                out += [(view, entity, t) for t in around(w.floor("D") + DAY) if t < end]
    # customers before and around signup
    for c in shop["customers"].sample(8, random_state=1).itertuples():
        out += [
            ("test_customer_orders", (c.customer_id,), t) for t in around(c.signup_ts.floor("D"))
        ]
    return out


def _check(root: Path, shop_tables: dict[str, pd.DataFrame], repo: Path) -> int:
    oracle = Shop(shop_tables)
    declared = {s.name: s for s in sources.sources(repo=repo).values() if s.name in VIEWS}
    stored = {}
    for name, src in declared.items():
        frame = read_source(root, src)
        split: dict[tuple, list[dict]] = {}
        for r in frame.to_dict("records"):
            split.setdefault(tuple(r[k] for k in src.join_keys), []).append(r)
        stored[name] = split
    wrong, checked = [], 0
    for view, entity, t in _pairs(shop_tables, np.random.default_rng(5)):
        T = t.floor("D")
        rows = [r for r in stored[view].get(entity, []) if r["event_timestamp"] <= t]
        row = max(rows, key=lambda r: r["event_timestamp"]) if rows else None
        exists = oracle.exists(view, declared[view].feature_names, entity, T)
        if not exists:
            if row is not None:
                wrong.append((view, entity, t, "row before the entity exists"))
            continue
        assert row is not None, (view, entity, t)
        for f in declared[view].features:
            expected = oracle.value(f.name, VIEWS[view], entity, T)
            checked += 1
            if not _same(expected, row[f.name]):
                wrong.append((view, entity, str(t), f.name, expected, row[f.name]))
    assert not wrong, wrong[:10]
    return checked


def test_historical_build_matches_a_recomputation(historical, shop, repo):
    checked = _check(historical, shop, repo)
    assert checked > 1500  # a few hundred (entity, t) pairs, every feature of its view


def test_incremental_build_equals_historical_and_the_recomputation(
    historical, incremental, shop, repo
):
    for name, src in sources.sources(repo=repo).items():
        if name in VIEWS:
            left, right = read_source(historical, src), read_source(incremental, src)
            assert len(left), name
            pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)
    _check(incremental, shop, repo)


def test_shards_give_the_rows_of_one_piece(historical, repo):
    """Customer, product and pair views split into entity shards: the same rows."""
    from pipelines import run as pipeline_run
    from pipelines.windows import Snapshots

    files = {t: pipeline_run._clean_files(historical, t) for t in pipeline_run.TABLES}
    first, last = pipeline_run._data_span(historical, files)
    snapshots = Snapshots(first, last, True)
    for name, family in sources.families(repo=repo).items():
        if name not in VIEWS:
            continue
        tables = {
            i.table: pipeline_run._read_input(historical, i, snapshots) for i in family.INPUTS
        }
        whole = pipeline_run.compute_rows(family, tables, snapshots)
        split = pipeline_run.compute_rows(family, tables, snapshots, shard_rows=700)
        keys = [*family.SOURCE.join_keys, "event_timestamp"]
        split = split.sort_values(keys, ignore_index=True)
        whole = whole.sort_values(keys, ignore_index=True)
        assert len(whole) > 100
        pd.testing.assert_frame_equal(whole, split, check_exact=True, obj=name)
