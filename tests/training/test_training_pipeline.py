"""Churn and ranking training end to end on a small built store (embedded Feast profile).

Checks what the unit tests cannot: the labels of the real dataset against a recomputation from the
clean orders, the split by time on real cutoffs, one feature row per entity row, the artifacts
(model, card, plots, latest pointer) and that the same seed gives the same model.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from pipelines.storage import read_clean
from tests.support.progress_support import assert_progress
from tests.support.training_shop import SMALL_HORIZON_DAYS, small_store
from training import artifacts, churn, ranking
from training.candidates import CandidateConfig
from training.labels import LABEL, TIMESTAMP

pytestmark = pytest.mark.slow  # builds a small store once (shared with the notebook test)

SMALL_RANKING = ranking.RankingConfig(
    warmup_days=14,
    train_queries=150,
    validation_queries=40,
    test_queries=60,
    train_negatives=15,
    train_candidates=CandidateConfig(
        copurchase=20, category_popular=10, popular=20, random=10, max_candidates=60, history=10
    ),
    test_candidates=CandidateConfig(
        copurchase=20, category_popular=10, popular=50, random=0, max_candidates=50, history=10
    ),
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_store(tmp_path_factory.mktemp)


def test_churn_dataset_labels_split_and_rows(data) -> None:
    ds = churn.build_dataset(data, horizon_days=SMALL_HORIZON_DAYS, split="time")
    f = ds.frame
    orders = read_clean(data, "orders", ["customer_id", "order_ts", "status"])
    live = orders[(orders["status"] != "cancelled") & orders["customer_id"].notna()]
    h = pd.Timedelta(days=SMALL_HORIZON_DAYS)
    for row in f.sample(min(150, len(f)), random_state=0).itertuples():
        mine = live.loc[live["customer_id"] == row.customer_id, "order_ts"]
        t = row.event_timestamp
        assert (mine < t).any()
        assert row.churned == int(not ((mine >= t) & (mine < t + h)).any())
        # features are as of t: the last order the store knows is before t
        assert row.last_order_ts == mine[mine < t].max()
    assert not f.duplicated(["customer_id", TIMESTAMP]).any()
    by = f.groupby("split")[TIMESTAMP]
    assert set(f["split"]) == {"train", "test"}
    assert by.max()["train"] < by.min()["test"]
    assert {"days_since_last_order", "lifetime_orders", "lifetime_spend", "orders_90d"} <= set(
        ds.columns
    )
    assert LABEL not in ds.columns and "customer_id" not in ds.columns


def test_customer_time_split_keeps_customers_apart(data) -> None:
    ds = churn.build_dataset(data, horizon_days=SMALL_HORIZON_DAYS, split="customer-time")
    f = ds.frame.dropna(subset=["split"])
    assert (f.groupby("customer_id")["split"].nunique() == 1).all()
    assert (f["split"] == f["time_split"].replace({"validation": "train"})).all()


def test_churn_run_writes_artifacts_and_is_reproducible(data, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SHOPFEAST_PROGRESS", "plain")  # as off a terminal, a line per step
    monkeypatch.setenv("SHOPFEAST_PROGRESS_INTERVAL_S", "0")
    began = time.perf_counter()
    a = churn.run(data, horizon_days=SMALL_HORIZON_DAYS, seed=11, echo=False)
    wall = time.perf_counter() - began
    assert assert_progress(capsys.readouterr().err, "train churn", "steps") == churn.CHURN_STEPS
    model = artifacts.load(data / "models", "churn")
    card = model.card
    est = model.estimator
    b = churn.run(data, horizon_days=SMALL_HORIZON_DAYS, seed=11, echo=False)
    assert a["version"] != b["version"]
    assert a["metrics"] == b["metrics"] and a["chosen"] == b["chosen"]
    folder = data / "models" / "churn" / a["version"]
    for name in (
        "model.joblib",
        "model_card.json",
        "roc.png",
        "pr.png",
        "calibration.png",
        "feature_importance.png",
    ):
        assert (folder / name).stat().st_size > 0, name
    assert card["feature_service"]["name"] == "churn_model_v2"
    assert card["feature_service"]["version"] == 2
    # training time and memory (as the ranking card has them), and the fold workers' share
    cost = card["cost"]
    assert 0 < cost["seconds"] <= wall and cost["peak_rss_gib"] > 0.1
    assert cost["workers"]["processes"] in (1, 2) and cost["workers"]["fit_cpu_seconds"] > 0
    assert 0.05 < cost["workers"]["peak_rss_gib"] < 8
    # the rhythm features are model inputs; BG/NBD's parameters were fitted on training rows
    assert {"repeat_orders", "days_since_first_order", "recency_gap_ratio"} <= set(
        card["input_columns"]
    )
    # the folds chose whether the BG/NBD step is used; when it is, fitted on training rows
    bg, train_rows = card["btyd"], card["rows"]["train"]["rows"]
    assert (bg is not None) == card["hyper_parameters"][card["chosen"]]["btyd"]
    if bg is not None:
        assert 0.95 * train_rows <= bg["fit_rows"] <= train_rows  # rows with a first order
        assert min(bg[k] for k in ("r", "alpha", "a", "b")) > 0
    tried = card["settings_tried"][card["chosen"]]
    assert {True, False} == {t["btyd"] for t in tried}
    # calibrated by the map the origins chose; the label's cut priced by the stated costs
    cal = card["calibration"]
    losses = cal["fold_log_loss"]  # empty with fewer than two usable origins: no map
    assert cal["method"] == (min(losses, key=losses.get) if losses else "none")
    costs = card["threshold_costs"]
    assert (costs["cost_false_negative"], costs["cost_false_positive"]) == (5.0, 1.0)
    assert costs["value"] == card["threshold"]
    assert card["feature_service"]["features"]
    assert card["code_version"] != "unknown"
    assert {"logistic_regression", "random_forest", "xgboost", "rfm_baseline"} <= set(
        card["metrics"]["test"]
    )
    assert 0 <= card["threshold"] <= 1
    # chosen on the rolling-origin folds, tested against the log-RFM baseline with an interval
    cv = card["metrics"]["cross_validation"]
    assert card["chosen"] == max(
        (n for n in cv if n != "rfm_baseline"), key=lambda n: cv[n]["roc_auc"]
    )
    assert card["baseline_columns"] == [
        "days_since_last_order",
        "lifetime_orders",
        "lifetime_spend",
        "orders_90d",
    ]
    d = card["metrics"]["test_minus_baseline"][card["chosen"]]
    t = card["metrics"]["test"]
    assert d["mean"] == pytest.approx(t[card["chosen"]]["roc_auc"] - t["rfm_baseline"]["roc_auc"])
    assert d["low"] <= d["mean"] <= d["high"]
    for fold in card["rows"]["folds"]:
        assert fold["validation_rows"] > 0 and fold["fit_rows"] > 0
    pointer = json.loads((data / "models" / "churn" / "latest.json").read_text())
    assert pointer["version"] == b["version"]
    assert pointer["input_columns"] == b["input_columns"]
    ds = churn.build_dataset(data, horizon_days=SMALL_HORIZON_DAYS)
    from training.matrix import model_matrix

    X = model_matrix(ds.frame.head(20), card["input_columns"])
    p = est.predict_proba(X)[:, 1]
    assert np.all((p >= 0) & (p <= 1))
    # the API scores the same rows from plain floats (the BG/NBD step reads them by position)
    np.testing.assert_allclose(model.predict_proba(X.to_numpy()), p, rtol=1e-9)


def test_ranking_run_beats_popularity_and_writes_artifacts(data, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SHOPFEAST_PROGRESS", "plain")
    monkeypatch.setenv("SHOPFEAST_PROGRESS_INTERVAL_S", "0")
    card = ranking.run(data, seed=5, config=SMALL_RANKING, echo=False)
    steps = assert_progress(capsys.readouterr().err, "train ranking", "steps")
    assert steps >= ranking.RANKING_STEPS  # queries, reads of each product grid: grown as known
    m = card["metrics"]["test"]
    assert m["ranker"]["queries"] > 20
    assert m["ranker"]["ndcg@10"] > m["popularity"]["ndcg@10"]
    assert 0 < m["candidates"]["recall_of_candidates"] <= 1
    assert set(m["ranker_minus"]) == {"popularity", "copurchase", "personal_frequency"}
    ex = m["exclude_purchased"]
    assert set(ex["ranker_minus"]) == set(m["ranker_minus"])
    # fewer queries keep a relevant product once the customer's recent ones are excluded
    assert 0 < ex["ranker"]["queries"] <= m["ranker"]["queries"]
    folder = data / "models" / "ranking" / card["version"]
    assert (folder / "metrics.png").exists() and (folder / "feature_importance.png").exists()
    loaded = artifacts.load(data / "models", "ranking").card
    assert loaded["feature_service"]["name"] == "ranking_model_v3"
    assert loaded["cost"]["seconds"] > 0 and loaded["cost"]["peak_rss_gib"] > 0.1
    assert {
        "copurchase_score",
        "already_purchased",
        "recent_copurchase_score",
        "bought_orders_lifetime",
        "days_since_bought",
    } <= set(loaded["input_columns"])
    assert "candidate_copurchase_score" not in loaded["input_columns"]  # the request field


def test_purchase_history_counts_each_customers_orders_before_t(data) -> None:
    """The personal-frequency baseline's counts against a plain loop over the clean tables."""
    queries = ranking.purchase_queries(data, SMALL_RANKING, seed=5)
    sample = queries.sample(40, random_state=1)
    hist = ranking.purchase_history(data, sample)
    orders = read_clean(
        data, "orders", ["order_id", "customer_id", "order_ts", "status", "updated_at"]
    )
    orders = orders.sort_values("updated_at").drop_duplicates("order_id", keep="last")
    items = read_clean(data, "order_items", ["order_id", "product_id"])
    checked = 0
    for q in sample.itertuples():
        mine = orders[(orders["customer_id"] == q.customer_id) & (orders["status"] != "cancelled")]
        mine = mine[mine["order_ts"] < q.event_timestamp]
        want: dict[str, tuple[int, float]] = {}
        for o in mine.itertuples():
            for pid in set(items.loc[items["order_id"] == o.order_id, "product_id"].astype(str)):
                n, last = want.get(pid, (0, 0.0))
                want[pid] = (n + 1, max(last, o.order_ts.timestamp()))
        got = hist[q.query_id]
        assert set(got) == set(want)
        for pid, (n, last) in want.items():
            assert got[pid][0] == n and got[pid][1] == pytest.approx(last, abs=1e-3)
        checked += bool(want)
    assert checked > 10  # most sampled customers had bought before


def test_bought_sets_are_each_customers_products_per_order_instant() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    bought = pd.DataFrame(
        {
            "order_id": pd.array([f"o{i}" for i in rng.integers(0, 300, n)], dtype="string"),
            "product_id": pd.array([f"p{i}" for i in rng.integers(0, 40, n)], dtype="string"),
            "customer_id": pd.array([f"c{i}" for i in rng.integers(0, 30, n)], dtype="string"),
            "order_ts": pd.to_datetime(rng.integers(0, 20, n), unit="D", utc=True),
        }
    )
    bought.loc[::97, "order_ts"] = pd.NaT  # no key: no query
    expected: dict = {}
    for row in bought.itertuples(index=False):
        if not pd.isna(row.order_ts):
            expected.setdefault((row.customer_id, row.order_ts), set()).add(str(row.product_id))
    got = ranking._bought_sets(bought)
    keys = list(zip(got["customer_id"], got["order_ts"], strict=True))
    assert keys == sorted(expected)
    assert [set(s) for s in got["relevant"]] == [expected[k] for k in keys]
    assert all(type(s) is frozenset for s in got["relevant"])


def test_historical_without_lists_is_the_same_frame_minus_its_list_columns(data) -> None:
    from featurestore.store import open_store
    from training import store

    fs = open_store("embedded", data)
    orders = read_clean(data, "orders", ["customer_id", "order_ts"]).dropna().head(300)
    products = read_clean(data, "products", ["product_id"])["product_id"].astype(str)
    entity = pd.DataFrame(
        {
            "customer_id": orders["customer_id"].astype(str).to_numpy(),
            "product_id": np.resize(products.to_numpy(), len(orders)),
            "event_timestamp": orders["order_ts"].to_numpy(),
            "candidate_copurchase_score": np.linspace(0, 1, len(orders)),
        }
    )
    whole = store.historical(fs, entity, ranking.SERVICE)
    lean = store.historical(fs, entity, ranking.SERVICE, lists=False)

    def is_list(v) -> bool:
        return isinstance(v, (list, np.ndarray))

    listed = [c for c in whole.columns if whole[c].map(is_list).any()]
    assert "recent_product_ids" in listed  # the service has list features to leave out
    assert sorted(set(whole.columns) - set(lean.columns)) == sorted(listed)
    pd.testing.assert_frame_equal(lean, whole.drop(columns=listed))


def test_candidate_inputs_equal_the_whole_grid_read_with_every_list(data, monkeypatch) -> None:
    """The grid read without lists, then the lists of the looked-up (product, day) pairs only,
    against one read of the whole days x products grid with every list kept: the same catalogs
    and the same co-purchase lists, in several reads of each kind (days and pairs split across
    reads), and no list read for a pair nobody looks up."""
    from featurestore.store import open_store
    from training import store
    from training.candidates import (
        CATEGORY,
        NEIGHBOUR_IDS,
        NEIGHBOUR_SCORES,
        POPULARITY,
        PRICE,
        PRODUCT_SERVICE,
        Catalog,
        neighbours_from_arrays,
    )

    fs = open_store("embedded", data)
    queries = ranking.purchase_queries(data, SMALL_RANKING, seed=5)
    products = sorted(read_clean(data, "products", ["product_id"])["product_id"].astype(str))
    days = sorted(queries["event_timestamp"].dt.floor("D").unique())
    also = {days[3]: set(products[:5]), days[-1]: {products[-1]}}

    reads: list[tuple[tuple | None, int]] = []
    plain = store.historical

    def counted(fs_, entity, name, lists=True, only=None):
        reads.append((tuple(only) if only else None, len(entity)))
        return plain(fs_, entity, name, lists=lists, only=only)

    monkeypatch.setattr(store, "historical", counted)
    got = ranking.candidate_inputs(
        fs, queries, products, rows_per_read=len(products) * 7, also_look_up=also, lists_per_read=50
    )
    monkeypatch.setattr(store, "historical", plain)

    grid = pd.DataFrame(
        [(p, d) for d in days for p in products], columns=["product_id", "event_timestamp"]
    )
    whole = store.historical(fs, grid, PRODUCT_SERVICE)
    live = whole[whole[POPULARITY].notna()]
    looked_up: dict = {d: set(more) for d, more in also.items()}
    for q in queries.itertuples():
        looked_up.setdefault(q.event_timestamp.floor("D"), set()).update(got.recent[q.query_id])
    want_catalogs = Catalog.by_day(live, popularity=POPULARITY, category=CATEGORY, price=PRICE)
    want_neighbours = {}
    for day, g in live.groupby("event_timestamp", sort=True):
        g = g[g["product_id"].isin(looked_up.get(day, ()))]
        want_neighbours[day] = neighbours_from_arrays(
            g["product_id"], g[NEIGHBOUR_IDS], g[NEIGHBOUR_SCORES]
        )

    assert list(got.catalogs) == days == list(want_catalogs)
    for day in days:
        assert got.catalogs[day].product_ids.tolist() == want_catalogs[day].product_ids.tolist()
        assert got.catalogs[day].category == want_catalogs[day].category
        assert got.catalogs[day].by_category == want_catalogs[day].by_category
        # the price levels the category_fit source weighs by (read with the grid)
        assert got.catalogs[day].levels == want_catalogs[day].levels
    assert all(c.levels for c in got.catalogs.values() if len(c.product_ids))
    assert set(got.neighbours) == set(days)
    assert {d: got.neighbours[d] for d in days} == want_neighbours
    # a product's list equal to its list of the day read before is that list; equal pairs are
    # one tuple (held once: the every-query run's lists were 2.1 GiB otherwise)
    repeats = shared = 0
    for p in products:
        held = [got.neighbours[d][p] for d in days if p in got.neighbours[d]]
        for a, b in zip(held, held[1:], strict=False):
            repeats += a == b
            shared += a is b
    assert repeats > 10 and shared == repeats
    pairs = [t for d in days for near in got.neighbours[d].values() for t in near]
    assert len({id(t) for t in pairs}) == len(set(pairs)) < len(pairs)
    n_lists = sum(len(v) for v in want_neighbours.values())
    assert n_lists > 200 and sum(bool(v) for v in want_neighbours.values()) > len(days) // 2
    assert products[0] in want_neighbours[days[3]]  # also_look_up's products are read too
    grid_reads = [n for only, n in reads if only == ranking.GRID_FEATURES]
    list_reads = [n for only, n in reads if only == ranking.LIST_FEATURES]
    assert sum(grid_reads) == len(grid) and len(grid_reads) == -(-len(days) // 7)
    wanted = sum(
        g["product_id"].isin(looked_up.get(d, ())).sum() for d, g in live.groupby("event_timestamp")
    )
    assert sum(list_reads) == wanted and len(list_reads) == -(-wanted // 50) > 2


def test_candidate_rows_are_the_same_from_worker_processes_as_made_here(data, monkeypatch) -> None:
    """RowMaker in two forked workers against one process, chunk by chunk, and against each
    chunk recomputed alone (its own random stream, its negatives sampled by its own draw): the
    same rows in query order, whatever process made them."""
    from featurestore.store import open_store

    monkeypatch.setattr(ranking, "CHUNK_QUERIES", 37)  # several chunks of the small shop's queries
    fs = open_store("embedded", data)
    queries = ranking.purchase_queries(data, SMALL_RANKING, seed=5)
    products = sorted(read_clean(data, "products", ["product_id"])["product_id"].astype(str))
    inputs = ranking.candidate_inputs(fs, queries, products)
    fit_q = queries[queries["split"] != "test"]
    test_q = queries[queries["split"] == "test"]
    assert len(fit_q) > 3 * 37

    made = {}
    for jobs in (1, 2):
        with ranking.RowMaker(inputs, seed=5, jobs=jobs) as maker:
            fit_part = maker.submit(fit_q, SMALL_RANKING.train_candidates, 6)
            test_part = maker.submit(test_q, SMALL_RANKING.test_candidates)
            made[jobs] = (maker.gather(fit_part), maker.gather(test_part))
        assert bool(maker.usage()) == (jobs == 2)  # the workers' CPU and memory, when there are
    for got, want in zip(made[2], made[1], strict=True):
        pd.testing.assert_frame_equal(got, want)

    want_fit, want_test = [], []
    for n, (q, config, out) in enumerate(
        [
            (fit_q, SMALL_RANKING.train_candidates, want_fit),
            (test_q, SMALL_RANKING.test_candidates, want_test),
        ]
    ):
        for k, lo in enumerate(range(0, len(q), 37)):
            rows = ranking.candidate_rows(q.iloc[lo : lo + 37], inputs, config, [5, n, k])
            out.append(ranking.sample_training_rows(rows, 6, [5, n, k, 1]) if n == 0 else rows)
    pd.testing.assert_frame_equal(made[2][0], pd.concat(want_fit, ignore_index=True))
    pd.testing.assert_frame_equal(made[2][1], pd.concat(want_test, ignore_index=True))
    fit_rows = made[2][0]
    assert fit_rows.groupby(ranking.QUERY)[ranking.LABEL].max().eq(1).all()
    assert (fit_rows[fit_rows[ranking.LABEL] == 0].groupby(ranking.QUERY).size() <= 6).all()
    assert fit_rows[ranking.QUERY].is_monotonic_increasing
    # the test rows are every candidate of every test query, as the API offers them
    assert made[2][1][ranking.QUERY].nunique() == len(test_q)


def test_the_ranker_is_the_same_when_the_fit_takes_spare_cores(data, monkeypatch) -> None:
    """fit_ranker on one thread, and switched to two threads after its first rounds (`idle` set
    from the start, spare_threads forced to 2), its rounds shown on a progress bar: the same
    booster, byte for byte, saved with one thread and no callback; the bar's notes count the
    rounds and name the best validation score of the booster's own evaluation log."""
    import threading

    from featurestore.store import open_store
    from shopconfig.progress import Task

    fs = open_store("embedded", data)
    d = ranking.build_datasets(data, fs, SMALL_RANKING, seed=5, say=lambda *a: None)
    params = {**SMALL_RANKING.params, "n_estimators": 40, "early_stopping_rounds": 40}
    plain = ranking.fit_ranker(d.train, d.valid, d.columns, params, seed=5)
    monkeypatch.setattr(ranking, "spare_threads", lambda: 2)
    monkeypatch.setattr(ranking._FitProgress, "NOTE_EVERY_S", 0.0)
    idle = threading.Event()
    idle.set()
    bar = Task("train ranking", 7, "steps")
    notes = []
    bar._show = lambda final: notes.append(bar.note)
    spare = ranking.fit_ranker(d.train, d.valid, d.columns, params, seed=5, idle=idle, bar=bar)
    assert spare.get_booster().save_raw("json") == plain.get_booster().save_raw("json")
    assert spare.get_params()["callbacks"] is None
    assert bar.done == 0  # the fit stays one step of the bar, stepped by the caller
    rounds = [int(n.split("round ")[1].split(",")[0]) for n in notes]
    assert rounds == list(range(1, len(rounds) + 1)) and len(rounds) == 40
    log = next(iter(plain.evals_result().values()))[f"ndcg@{ranking.K}"]
    best = int(np.argmax(log))
    assert notes[-1].endswith(f"ndcg@{ranking.K} {log[best]:.4f} at round {best + 1}")
    assert (
        json.loads(spare.get_booster().save_config())["learner"]["generic_param"]["nthread"] == "1"
    )


def test_test_rows_scored_in_reads_give_the_whole_reads_metrics(data, monkeypatch) -> None:
    """More test rows than TEST_ROWS_PER_READ: read and scored after the fit in pieces of whole
    queries, keeping each query's ranking only. The same model, metrics and counts as the test
    rows read whole beside the fit; the reference sample drawn from every piece."""
    whole = ranking.run(data, seed=5, config=SMALL_RANKING, echo=False)
    reads: list[int] = []
    scoring = []
    plain_read, plain_score = ranking.store.historical, ranking.score_in_reads

    def counted(fs_, entity, name, lists=True, only=None):
        if scoring:
            reads.append(len(entity))
        return plain_read(fs_, entity, name, lists=lists, only=only)

    def score(*args, **kwargs):
        scoring.append(True)
        return plain_score(*args, **kwargs)

    monkeypatch.setattr(ranking, "TEST_ROWS_PER_READ", 400)
    monkeypatch.setattr(ranking.store, "historical", counted)
    monkeypatch.setattr(ranking, "score_in_reads", score)
    pieces = ranking.run(data, seed=5, config=SMALL_RANKING, echo=False)
    test = whole["rows"]["test"]
    assert test["rows"] > 3 * 400
    assert pieces["rows"] == whole["rows"]
    assert (
        pieces["hyper_parameters"]["best_iteration"] == whole["hyper_parameters"]["best_iteration"]
    )
    assert pieces["metrics"]["test"] == whole["metrics"]["test"]
    # the test rows in reads of about 400 rows (cut where a query starts), every row once
    assert len(reads) >= 3 and sum(reads) == test["rows"]
    assert max(reads) < 400 + 50  # a query holds at most max_candidates (50) rows
    ref = pd.read_parquet(
        data / "models" / "ranking" / pieces["version"] / "served_reference.parquet"
    )
    assert 0 < len(ref) <= test["rows"]
