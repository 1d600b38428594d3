"""product_copurchase: a shop of a few buyers worked out by hand, a naive recomputation (every
pair of every buyer's purchases, from scratch) at random (product, t) on the hand-made oracle shop,
and the generator's true complements showing up in the lists."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines.families import product_copurchase as cp
from pipelines.run import compute_rows
from pipelines.windows import Snapshots, day_ts, to_day
from tests.support import oracle, oracle_shop

UTC = "UTC"


def at(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=UTC)


def _tables(
    orders: pd.DataFrame, items: pd.DataFrame, products: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    from pipelines.contract import PANDAS_DTYPES, TABLES

    out = {}
    for spec, df in zip(cp.INPUTS, (products, orders, items), strict=True):
        kinds = {c.name: c.kind for c in TABLES[spec.table].clean_columns()}
        df = df.reindex(columns=list(spec.columns))
        out[spec.table] = df.astype({c: PANDAS_DTYPES[kinds[c]] for c in spec.columns})
    return out


def _rows(tables, start: str, end: str) -> pd.DataFrame:
    return _unpacked(compute_rows(cp, tables, Snapshots(to_day(at(start)), to_day(at(end)), True)))


def _unpacked(rows: pd.DataFrame) -> pd.DataFrame:
    """List features as Python lists (the runner may carry them packed into one string)."""
    from pipelines import specs

    rows = rows.copy()
    for f in cp.SOURCE.features:
        if f.dtype.endswith("_list"):
            rows[f.name] = [
                specs.unpack_list(v, f.dtype) if isinstance(v, str) else list(v)
                for v in rows[f.name]
            ]
    return rows


def _served(rows: pd.DataFrame, product: str, t: str) -> dict | None:
    return oracle.lookup(oracle.by_entity(rows, "product_id"), product, at(t))


@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    """Monday 2025-01-06 and the Mondays after. A, B, C, D, E exist from December."""
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9"],
            "customer_id": ["c1", "c1", "c1", None, "c2", "c2", "c3", "c3", "c4"],
            "order_ts": [
                at("2025-01-06 10:00"),  # c1: A + B (same order), Monday after 00:00
                at("2025-01-16 10:00"),  # c1: C, 10 days later -> with A and B
                at("2025-02-20 10:00"),  # c1: A + B again -> no new buyer for (A, B)
                at("2025-01-07 10:00"),  # a guest: A + C in one order
                at("2025-01-01 10:00"),  # c2: A ...
                at("2025-01-30 09:59"),  # c2: ... B, 29 days later -> together
                at("2025-01-01 10:00"),  # c3: A ...
                at("2025-01-31 10:00"),  # c3: ... B 30 days later -> not together
                at("2025-01-08 10:00"),  # c4: A + E, cancelled
            ],
            "status": ["completed"] * 8 + ["cancelled"],
        }
    )
    items = pd.DataFrame(
        {
            "order_id": [
                "o1",
                "o1",
                "o2",
                "o3",
                "o3",
                "o4",
                "o4",
                "o5",
                "o6",
                "o7",
                "o8",
                "o9",
                "o9",
            ],
            "product_id": ["A", "B", "C", "A", "B", "A", "C", "A", "B", "A", "B", "A", "E"],
        }
    )
    products = pd.DataFrame(
        {
            "product_id": list("ABCDE"),
            "created_at": [at("2024-12-01")] * 5,
            "updated_at": [at("2024-12-01")] * 5,
        }
    )
    return _rows(_tables(orders, items, products), "2024-12-20", "2025-03-31")


def test_rows_sit_on_mondays(tiny):
    assert (tiny["event_timestamp"].dt.dayofweek == 0).all()
    assert tiny["event_timestamp"].min() == at("2024-12-23")  # the first Monday of the run


def test_hand_worked_lists_and_scores(tiny):
    a = _served(tiny, "A", "2025-01-12 23:00")  # orders before Monday Jan 6 only
    assert (a["copurchase_product_ids"], a["copurchase_buyers"]) == ([], 2)  # c2, c3 bought A
    a = _served(tiny, "A", "2025-01-13")  # o1 (Jan 6) and the guest's o4 (Jan 7) are in
    assert a["copurchase_product_ids"] == ["B", "C"]
    assert a["copurchase_scores"] == [0.25, 0.25] and a["copurchase_buyers"] == 4
    a = _served(tiny, "A", "2025-02-03")  # c1's C (Jan 16) and c2's B (Jan 30, 29 days later)
    assert a["copurchase_product_ids"] == ["B", "C"]
    assert a["copurchase_scores"] == [0.5, 0.5]  # B: c1, c2; C: c1, the guest; of 4 buyers
    a = _served(tiny, "A", "2025-03-31")  # c1 again and c3's 30-day gap add nothing
    assert a["copurchase_scores"] == [0.5, 0.5] and a["copurchase_buyers"] == 4
    c = _served(tiny, "C", "2025-02-03")  # C's buyers: c1 and the guest, both with A
    assert c["copurchase_product_ids"] == ["A", "B"] and c["copurchase_scores"] == [1.0, 0.5]
    e = _served(tiny, "E", "2025-03-31")  # only in a cancelled order
    assert (e["copurchase_product_ids"], e["copurchase_buyers"]) == ([], 0)


def test_a_row_only_when_something_changes(tiny):
    a = tiny[tiny["product_id"] == "A"]["event_timestamp"]
    # first Monday; then the Mondays after a new buyer or a new pair
    assert list(a.dt.strftime("%m-%d")) == ["12-23", "01-06", "01-13", "01-20", "02-03"]
    d = tiny[tiny["product_id"] == "D"]
    assert len(d) == 1 and d.iloc[0]["copurchase_product_ids"] == []


# --- naive recomputation on the hand-made shop --------------------------------------------------


def naive(raw: oracle.RawShop, product: str, T: pd.Timestamp) -> dict:
    """The lists at snapshot T for one product: every pair of every buyer, from scratch."""
    live = raw.orders[(raw.orders["status"] != "cancelled") & (raw.orders["order_ts"] < T)]
    buyer = {
        o: (c if isinstance(c, str) else f"guest:{o}")
        for o, c in zip(live["order_id"], live["customer_id"].astype(object), strict=True)
    }
    when = dict(zip(live["order_id"], live["order_ts"], strict=True))
    bought: dict[str, list[tuple[str, pd.Timestamp]]] = {}
    for o, p in zip(raw.order_items["order_id"], raw.order_items["product_id"], strict=True):
        if o in buyer:
            bought.setdefault(buyer[o], []).append((p, when[o]))
    together: dict[str, int] = {}
    n_a = 0
    for items in bought.values():
        mine = [t for p, t in items if p == product]
        if not mine:
            continue
        n_a += 1
        partners = {
            p
            for p, t in items
            if p != product and any(abs(t - m) < timedelta(days=30) for m in mine)
        }
        for p in partners:
            together[p] = together.get(p, 0) + 1
    top = sorted(together.items(), key=lambda kv: (-kv[1], kv[0]))[: cp.TOP_K]
    return {
        "copurchase_product_ids": [p for p, _ in top],
        "copurchase_scores": [n / n_a for _, n in top],
        "copurchase_buyers": n_a,
    }


def test_lists_match_a_naive_recomputation():
    tables = oracle_shop.build(seed=9, customers=40, products=30, orders=600)
    raw = oracle.RawShop(**tables)
    rows = _rows(
        _tables(tables["orders"], tables["order_items"], tables["products"]),
        "2024-09-01",
        "2025-03-10",
    )
    served = oracle.by_entity(rows, "product_id")
    first = rows.groupby("product_id")["event_timestamp"].min()
    rng = np.random.default_rng(2)
    lo, hi = at("2024-09-01"), at("2025-03-10")
    checked, problems = 0, []
    for product in raw.products["product_id"].unique():
        for _ in range(8):
            t = lo + (hi - lo) * rng.random()
            actual = oracle.lookup(served, product, t)
            if t < first.get(product, hi):
                assert actual is None
                continue
            T = t.floor("D") - pd.Timedelta(days=t.dayofweek)  # the latest Monday <= t
            expected = naive(raw, product, T)
            checked += 1
            ids, scores = list(actual["copurchase_product_ids"]), actual["copurchase_scores"]
            ok = (
                ids == expected["copurchase_product_ids"]
                and actual["copurchase_buyers"] == expected["copurchase_buyers"]
                and all(
                    math.isclose(a, e, rel_tol=1e-12)
                    for a, e in zip(scores, expected["copurchase_scores"], strict=True)
                )
            )
            if not ok:
                problems.append(f"{product} {T}: {expected} != {actual}")
    assert checked > 100
    assert not problems, "\n".join(problems[:10])


def test_monday_grain():
    monday = to_day(at("2025-01-06"))
    assert cp.snap_up(np.array([monday, monday + 1, monday - 1])).tolist() == [
        monday,
        monday + 7,
        monday,
    ]
    days = cp.grain_days(monday - 3, monday + 20)
    assert list(day_ts(days).dt.dayofweek) == [0, 0, 0]


# --- the generator's complements are found ------------------------------------------------------


def test_true_complements_rank_high(tmp_path):
    from pipelines import ingest
    from pipelines.storage import read_clean
    from shopfeast import generator

    shop = generator.run(
        out=tmp_path / "raw", customers=1500, products=80, days=150, seed=4, quiet=True
    )
    assert (
        ingest.run(raw_dir=tmp_path / "raw", data_dir=tmp_path / "d", now="2026-01-01T00:00:00Z")
        == 0
    )
    tables = {i.table: read_clean(tmp_path / "d", i.table, list(i.columns)) for i in cp.INPUTS}
    end = tables["orders"]["order_ts"].max().floor("D") + pd.Timedelta(days=1)
    rows = _unpacked(compute_rows(cp, tables, Snapshots(to_day(end) - 6, to_day(end), True)))
    last = rows.sort_values("event_timestamp").drop_duplicates("product_id", keep="last")
    truth = shop.truth["truth_products"].set_index("product_id")
    hits, tried = 0, 0
    for pid, ids in zip(last["product_id"], last["copurchase_product_ids"], strict=True):
        if pid in truth.index and len(ids) >= 5:
            tried += 1
            hits += bool(
                {truth.at[pid, "complement_1"], truth.at[pid, "complement_2"]} & set(ids[:5])
            )
    # by chance alone two complements among 80 products land in a top 5 about 12% of the time
    assert tried >= 30 and hits / tried > 0.5, (hits, tried)


def test_output_is_what_the_declaration_says():
    from pipelines import specs

    tables = oracle_shop.build(seed=5, customers=40, products=10, orders=150)
    rows = compute_rows(
        cp,
        _tables(tables["orders"], tables["order_items"], tables["products"]),
        Snapshots(to_day(at("2024-11-01")), to_day(at("2025-02-01")), True),
    )
    assert list(rows.columns) == cp.SOURCE.columns
    table = specs.to_arrow(cp.SOURCE, rows)  # what the runner writes
    assert table.schema == cp.SOURCE.arrow_schema()
    assert specs.from_arrow(cp.SOURCE, table, lists=False).equals(rows)  # packing round-trips


# --- the counts carried between runs ------------------------------------------------------------


def test_daily_runs_across_mondays_with_a_late_day_equal_a_historical_build(tmp_path, monkeypatch):
    """One run per day over ten weeks: each Monday continues the carried pair counts and reads only
    the recent orders; a day's orders that arrive two Mondays late make the run restart from that
    day with the counts as of the Monday before it. The stored source equals a historical build
    of the same data, file for file."""
    from pipelines.contract import TABLES
    from pipelines.run import run
    from tests.support.pipelines_shop import write_batch

    shop = oracle_shop.build(seed=9, customers=40, products=30, orders=600)
    # the orders as placed: batches here are cut by order day, and a later version (a refund
    # weeks later) would otherwise arrive in its order's batch, before it happened
    shop["orders"] = shop["orders"].drop_duplicates("order_id", keep="first")
    shop = {
        i.table: shop[i.table].reindex(columns=TABLES[i.table].arrow_schema().names)
        for i in cp.INPUTS
    }
    when = {
        "products": shop["products"]["updated_at"].fillna(shop["products"]["created_at"]),
        "orders": shop["orders"]["order_ts"],
        "order_items": shop["order_items"]["order_ts"],
    }
    day = {n: w.dt.floor("D") for n, w in when.items()}
    last = max(d.max() for d in day.values())
    cut = last - pd.Timedelta(days=70)
    late_day = day["orders"][day["orders"] >= cut + pd.Timedelta(days=30)].min()  # a day's orders

    historical = tmp_path / "historical"
    write_batch(historical, shop, "all")
    run(historical, "historical", only=[cp.SOURCE.name], echo=False)

    carried, read = [], []
    real_restore, real_carry = cp.restore, cp.carry

    def restore(data_dir, snapshots):
        out = real_restore(data_dir, snapshots)
        carried.append(out is not None)
        return out

    def carry(data_dir, tables, snapshots, state):
        read.append((len(tables["orders"]), (when["orders"] < snapshots.end).sum()))
        return real_carry(data_dir, tables, snapshots, state)

    monkeypatch.setattr(cp, "restore", restore)
    monkeypatch.setattr(cp, "carry", carry)
    incremental = tmp_path / "incremental"
    write_batch(incremental, {n: df[(day[n] < cut).to_numpy()] for n, df in shop.items()}, "0")
    (first,) = run(incremental, "incremental", only=[cp.SOURCE.name], echo=False)
    end = first.end_day
    held = {n: df[(day[n] == late_day).to_numpy()] for n, df in shop.items()}
    restarts = []
    for d in pd.date_range(cut, last):
        if d != late_day:
            write_batch(
                incremental,
                {n: df[(day[n] == d).to_numpy()] for n, df in shop.items()},
                f"{d:%Y%m%d}",
            )
        if d == late_day + pd.Timedelta(days=14):
            write_batch(incremental, held, "late")
        (outcome,) = run(incremental, "incremental", only=[cp.SOURCE.name], echo=False)
        if outcome.start_day is not None:
            if outcome.start_day <= end:  # not after the watermark: a restart
                restarts.append(outcome.start_day)
            end = outcome.end_day
    assert restarts == [to_day(late_day) + 1]
    # The first run was a build; every Monday after it continued the carried counts.
    assert len(carried) >= 10 and all(carried)
    # The build read every order; a Monday after it, the last 38 days' (fewer than all before).
    assert read[0][0] == read[0][1] and all(n < before for n, before in read[1:])
    left = cp.SOURCE.path(historical)
    files = sorted(f.name for f in left.glob("*.parquet"))
    assert files == sorted(f.name for f in cp.SOURCE.path(incremental).glob("*.parquet"))
    for name in files:
        assert (left / name).read_bytes() == (cp.SOURCE.path(incremental) / name).read_bytes(), name


# --- memory bounds: buyer groups and product shards change nothing ------------------------------


def _small_bounds(monkeypatch) -> None:
    """Groups of a few buyers' pairs, partial sums combined every few rows, a shard per few
    products: every bound is hit many times on the oracle shop."""
    monkeypatch.setattr(cp, "CHUNK_PAIRS", 40)
    monkeypatch.setattr(cp, "SUM_ROWS", 60)
    monkeypatch.setattr(cp, "SUM_RANGES", 4)
    monkeypatch.setattr(cp, "EMIT_ROWS", 50)


def test_bounded_memory_gives_the_same_rows_and_carried_counts(monkeypatch):
    """The rows, and the state carried to the next run (counted on top of an earlier one, with
    guests and customers without new orders), are the same whether all pairs are made at once or
    a few buyers and a few products at a time."""
    from pipelines.windows import EntityIndex

    shop = oracle_shop.build(seed=9, customers=40, products=30, orders=600)
    tables = _tables(shop["orders"], shop["order_items"], shop["products"])
    span = ("2024-09-01", "2025-03-10")
    index = EntityIndex(tables["products"]["product_id"])
    # counted up to a Monday in the middle of the orders (2024-10-02..2025-02-27), then on top
    monday = [int(cp.snap_up(np.array([to_day(at(d))]))[0]) for d in ("2024-12-10", span[1])]
    earlier, later = monday

    def state():
        first = cp.count(tables, index, None, earlier)
        assert len(first.arrays["together"]["c"]) > 100
        return cp.count(tables, index, first, later)

    whole_rows, whole = _rows(tables, *span), state()
    assert tables["orders"]["customer_id"].isna().sum() > 0  # guests
    assert len(whole.arrays["together"]["c"]) > 1000
    _small_bounds(monkeypatch)
    lines = cp.purchases(tables["orders"], tables["order_items"], index, np.zeros(0, "<U1"))[0]
    assert len(cp._buyer_groups(lines, 40)) > 20
    parts_rows, parts = _rows(tables, *span), state()
    pd.testing.assert_frame_equal(parts_rows, whole_rows)
    assert parts.since == whole.since
    assert (parts.customers == whole.customers).all()
    for group, columns in whole.arrays.items():
        for c, values in columns.items():
            assert np.array_equal(parts.arrays[group][c], values), (group, c)
