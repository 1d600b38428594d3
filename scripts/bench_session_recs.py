"""`make bench-session`: do the live session's candidates help? NDCG@10 and candidate recall with
and without the `session` source, on a generated shop (issue 12, item 4).

The way of `shopfeast train ranking`, minus the ranker: purchase queries (customer, order time t,
the products bought; `training.ranking.purchase_queries`, test split), the candidate generator's
inputs as of t through Feast (`candidate_inputs`: recent products, favourite category, catalog,
co-purchase lists), and the live session through `candidate_session_v1` as of a cut-off before t.
For each query the API's candidate list (`API_CONFIG`) is generated twice: without the session, and
seeded by it. Reported per list: recall of the candidates (share of the bought products the list
holds at all: what a ranker can find) and NDCG@10 / recall@10 of the list's own order (sources in
priority order: what the first slots hold before any ranker).

Two cut-offs, because the generator's sessions are funnels (view -> cart -> checkout -> purchase)
and the order is placed seconds after the cart:
- `before_order`: the session as it stands just before t (its carts are the order): an upper bound,
  what a "complete your purchase" slot would see;
- `before_cart`: just before the session's first add-to-cart (only its product views): what a
  recommendation shown while the customer browses would see (the generator's sessions view every
  product they later cart, so this is still generous);
- `before_session`: just before the session's first event: only what earlier sessions of the last
  6 hours left (customer_session's lists span sessions); the fair test of "the live session helps".

The ranker itself is not retrained with session features here (open in issue 12).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from featurestore.store import open_store
from pipelines.storage import read_clean
from training import store as feature_store
from training.candidates import (
    API_CONFIG,
    SESSION_CARTED,
    SESSION_SERVICE,
    SESSION_VIEWED,
    generate_rows,
    session_products,
)
from training.evaluation import paired_difference, ranking_metrics
from training.ranking import QUERY, RankingConfig, candidate_inputs, purchase_queries

ROOT = Path(__file__).resolve().parent.parent
K = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "bench-session")
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--products", type=int, default=300)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--queries", type=int, default=1500, help="test queries")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    data_dir = args.data_dir.resolve()
    t0 = time.perf_counter()
    build(data_dir, args.customers, args.products, args.days, args.seed)
    os.environ["SHOPFEAST_DATA_DIR"] = str(data_dir)
    fs = open_store("embedded", data_dir)
    config = replace(
        RankingConfig(), train_queries=1, validation_queries=1, test_queries=args.queries
    )
    queries = purchase_queries(data_dir, config, args.seed)
    queries = queries[queries["split"] == "test"].reset_index(drop=True)
    sessions = {}  # per cut-off: each query's session products, as of the cut-off
    for cut, times in cut_offs(data_dir, queries).items():
        rows = queries[[QUERY, "customer_id"]].assign(event_timestamp=times)
        live = feature_store.historical(fs, rows, SESSION_SERVICE)
        sessions[cut] = [
            session_products(c, v)
            for c, v in zip(live[SESSION_CARTED], live[SESSION_VIEWED], strict=True)
        ]
    days = queries["event_timestamp"].dt.floor("D")
    look_up: dict[pd.Timestamp, set[str]] = {}
    for live in sessions.values():
        for day, session in zip(days, live, strict=True):
            look_up.setdefault(day, set()).update(session)
    products = read_clean(data_dir, "products", ["product_id"])["product_id"].astype(str)
    inputs = candidate_inputs(fs, queries, sorted(products.unique()), also_look_up=look_up)
    print(
        f"shop: {args.customers:,} customers, {args.products:,} products, {args.days} days; "
        f"{len(queries):,} test queries; built and read in {time.perf_counter() - t0:.0f} s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "\n| cut-off | list | candidates | recall of candidates | recall@10 | NDCG@10 "
        "| NDCG@10 minus without (95% CI) |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for cut, live in sessions.items():
        with_session = sum(bool(s) for s in live)
        lists = {"without session": [], "with session": []}
        sizes = {name: [] for name in lists}
        found = {name: [] for name in lists}
        for q, session in zip(queries.itertuples(index=False), live, strict=True):
            day = q.event_timestamp.floor("D")
            recent = inputs.recent[q.query_id]
            near = inputs.neighbours[day]
            for name, live_products in (("without session", ()), ("with session", session)):
                cands = generate_rows(
                    recent,
                    near,
                    inputs.favourite[q.query_id],
                    inputs.catalogs[day],
                    rng=None,
                    config=API_CONFIG,
                    session=live_products,
                )
                ids = [p for p, _, _ in cands]
                lists[name].append((ids[:K], set(q.relevant)))
                sizes[name].append(len(ids))
                found[name].append(len(set(ids) & set(q.relevant)) / len(q.relevant))
        for name, ranked in lists.items():
            m = ranking_metrics(ranked, K)
            diff = ""
            if name == "with session":
                d = paired_difference(ranked, lists["without session"], K)
                diff = f"{d['mean']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f})"
            print(
                f"| {cut} ({with_session:,} of {len(queries):,} with a session) | {name} "
                f"| {np.mean(sizes[name]):.0f} | {np.mean(found[name]):.3f} "
                f"| {m[f'recall@{K}']:.3f} | {m[f'ndcg@{K}']:.3f} | {diff} |",
                flush=True,
            )


def cut_offs(data_dir: Path, queries: pd.DataFrame) -> dict[str, pd.Series]:
    """Per query: just before the order, before its session's first add-to-cart, and before
    the session's first event (what earlier sessions of the last 6 hours left)."""
    events = read_clean(data_dir, "events", ["customer_id", "session_id", "event_type", "event_ts"])
    events = events[events["customer_id"].notna()]
    purchase = events[events["event_type"] == "purchase"]
    carts = events[events["event_type"] == "add_to_cart"]
    first_cart = carts.groupby("session_id")["event_ts"].min()
    first_event = events.groupby("session_id")["event_ts"].min()
    q = queries[[QUERY, "customer_id", "event_timestamp"]]
    m = q.merge(
        purchase.rename(columns={"event_ts": "event_timestamp"})[
            ["customer_id", "event_timestamp", "session_id"]
        ].drop_duplicates(["customer_id", "event_timestamp"]),
        on=["customer_id", "event_timestamp"],
        how="left",
    )
    eps = pd.Timedelta(microseconds=1)

    def before(first: pd.Series) -> pd.Series:
        at = m["session_id"].map(first)
        at = at.where(at.notna() & (at <= m["event_timestamp"]), m["event_timestamp"])
        return (at - eps).reset_index(drop=True)

    return {
        "before_order": (m["event_timestamp"] - eps).reset_index(drop=True),
        "before_cart": before(first_cart),
        "before_session": before(first_event),
    }


def build(data_dir: Path, customers: int, products: int, days: int, seed: int) -> None:
    """Generate, ingest and compute the features once (the CLI's own commands)."""
    if (data_dir / "features" / "customer_session").exists():
        return
    raw = data_dir.parent / (data_dir.name + "-raw")
    cli = [sys.executable, "-m", "shopfeast.cli"]
    env = {**os.environ, "SHOPFEAST_PROGRESS": "off", "SHOPFEAST_DATA_DIR": str(data_dir)}
    for step in (
        ["generate", "--out", str(raw), "--customers", str(customers), "--products",
         str(products), "--days", str(days), "--seed", str(seed)],
        ["ingest", str(raw), "--data-dir", str(data_dir)],
        ["features", "--data-dir", str(data_dir), "--mode", "historical"],
    ):  # fmt: skip
        subprocess.run(cli + step, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
