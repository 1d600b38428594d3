"""Candidate generation: sources, priorities, caps, exclusions, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.candidates import (
    API_CONFIG,
    CandidateConfig,
    Catalog,
    copurchase_ranking,
    generate,
    neighbours_from_arrays,
    personal_frequency_ranking,
    popularity_ranking,
    session_products,
)


def _catalog() -> Catalog:
    return Catalog.from_frame(
        pd.DataFrame(
            {
                "product_id": [f"p{i}" for i in range(30)],
                "category": ["a"] * 10 + ["b"] * 10 + [None] * 10,
                "popularity": list(range(30)),  # p29 most popular
            }
        )
    )


NEIGH = neighbours_from_arrays(["p1", "p2"], [["p3", "p4"], ["p4", "p5"]], [[2.0, 1.0], [5.0, 1.0]])


def test_sources_in_priority_order_and_scores_summed() -> None:
    c = generate(
        ["p1", "p2"],
        NEIGH,
        "b",
        _catalog(),
        rng=np.random.default_rng(0),
        config=CandidateConfig(copurchase=10, category_popular=4, popular=3, random=5),
    )
    assert list(c["product_id"][:3]) == ["p4", "p3", "p5"]  # 1 + 5 = 6 for p4
    assert c.loc[c["product_id"] == "p4", "source_score"].item() == 6.0
    cat = c[c["source"] == "category_popular"]["product_id"].tolist()
    assert cat[:2] == ["p19", "p18"]  # favourite category b first, then a (category of p1, p2)
    assert set(cat[2:]) <= {f"p{i}" for i in range(10)}
    assert c["product_id"].is_unique
    assert (c["source"] == "random").sum() == 5
    assert list(dict.fromkeys(c["source"])) == [
        "copurchase",
        "category_popular",
        "popular",
        "random",
    ]


def test_cap_exclusion_and_determinism() -> None:
    cfg = CandidateConfig(max_candidates=6)
    a = generate(
        ["p1", "p2"],
        NEIGH,
        None,
        _catalog(),
        rng=np.random.default_rng(1),
        config=cfg,
        exclude={"p4"},
    )
    b = generate(
        ["p1", "p2"],
        NEIGH,
        None,
        _catalog(),
        rng=np.random.default_rng(1),
        config=cfg,
        exclude={"p4"},
    )
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 6 and "p4" not in set(a["product_id"])


def test_cold_customer_gets_popular_and_no_random_without_rng() -> None:
    c = generate([], {}, None, _catalog(), rng=None, config=CandidateConfig(popular=5))
    assert c["product_id"].tolist() == ["p29", "p28", "p27", "p26", "p25"]
    assert set(c["source"]) == {"popular"}


def test_copurchase_baseline_tops_up_with_popularity() -> None:
    assert copurchase_ranking(["p1"], NEIGH, _catalog(), 4) == ["p3", "p4", "p29", "p28"]


def test_history_comes_first_and_exclusion_removes_it() -> None:
    cfg = CandidateConfig(history=2, copurchase=10, category_popular=0, popular=2, random=0)
    c = generate(["p2", "p1", "p2"], NEIGH, None, _catalog(), config=cfg)
    # the recent products (most recent first, once each), then their co-purchases, then popular
    assert c["product_id"].tolist()[:2] == ["p2", "p1"]
    assert c["source"].tolist()[:2] == ["history", "history"]
    assert c["source_score"].tolist()[:2] == [1.0, 0.5]
    assert c.loc[c["source"] == "copurchase", "product_id"].tolist() == ["p4", "p3", "p5"]
    d = generate(["p2", "p1"], NEIGH, None, _catalog(), config=cfg, exclude={"p1", "p2"})
    assert "history" not in set(d["source"])
    # the API offers the customer's last ten products
    assert API_CONFIG.history == 10


def test_most_bought_come_after_history_and_exclusion_removes_them() -> None:
    cfg = CandidateConfig(
        history=1, frequent=3, copurchase=10, category_popular=0, popular=2, random=0
    )
    frequent = ["p7", "p2", "p8", "p7", "p9"]  # most-bought first, as the feature serves them
    c = generate(["p2", "p1"], NEIGH, None, _catalog(), config=cfg, frequent=frequent)
    # history's one product, then the first 3 most-bought (p2 already offered, p9 past the 3)
    assert c["product_id"].tolist()[:3] == ["p2", "p7", "p8"]
    assert c["source"].tolist()[:3] == ["history", "frequent", "frequent"]
    assert c["source_score"].tolist()[1:3] == [1.0, 1.0 / 3]
    assert "p9" not in set(c.loc[c["source"] == "frequent", "product_id"])
    # then the co-purchases of the recent products (not of the most-bought ones)
    assert c.loc[c["source"] == "copurchase", "product_id"].tolist() == ["p4", "p3", "p5"]
    d = generate(
        ["p2"], NEIGH, None, _catalog(), config=cfg, frequent=frequent, exclude={"p2", "p7", "p8"}
    )
    assert d.loc[d["source"] == "frequent", "product_id"].tolist() == []
    off = generate(["p2"], NEIGH, None, _catalog(), config=CandidateConfig(), frequent=frequent)
    assert "frequent" not in set(off["source"])  # only when the config asks for it
    assert API_CONFIG.frequent == 50


def test_personal_frequency_baseline_by_orders_then_recency_then_popularity() -> None:
    counts = {"p1": (3, 100.0), "p2": (5, 50.0), "p3": (3, 200.0), "p29": (1, 10.0)}
    assert personal_frequency_ranking(counts, _catalog(), 3) == ["p2", "p3", "p1"]
    # topped up with popularity without repeating an own product
    assert personal_frequency_ranking(counts, _catalog(), 6) == [
        "p2",
        "p3",
        "p1",
        "p29",
        "p28",
        "p27",
    ]
    # exclude_purchased as the API applies it: the excluded products leave every list
    assert personal_frequency_ranking(counts, _catalog(), 3, exclude={"p2", "p28"}) == [
        "p3",
        "p1",
        "p29",
    ]
    assert personal_frequency_ranking({}, _catalog(), 2) == ["p29", "p28"]
    assert popularity_ranking(_catalog(), 3, exclude={"p28"}) == ["p29", "p27", "p26"]
    assert copurchase_ranking(["p1"], NEIGH, _catalog(), 3, exclude={"p3"}) == ["p4", "p29", "p28"]


def test_the_live_session_comes_first_carted_before_viewed() -> None:
    session = session_products(["p2"], ["p9", "p2", None])
    assert session == ["p2", "p9"]
    config = CandidateConfig(session=3, history=5)
    c = generate(["p1"], NEIGH, None, _catalog(), config=config, session=session)
    # the session's products, then their co-purchases (p4: 5.0 from p2), up to `session`
    assert c["product_id"].tolist()[:4] == ["p2", "p9", "p4", "p1"]
    assert c["source"].tolist()[:4] == ["session", "session", "session", "history"]
    assert "session" not in set(generate(["p1"], NEIGH, None, _catalog(), config=config)["source"])
    off = generate(["p1"], NEIGH, None, _catalog(), config=CandidateConfig(), session=session)
    assert "session" not in set(off["source"])  # only when the config asks for it
    excluded = generate(
        ["p1"], NEIGH, None, _catalog(), config=config, session=session, exclude=["p2"]
    )
    assert excluded["product_id"].tolist()[:3] == ["p9", "p4", "p5"]


def test_model_columns_keep_one_order_whatever_order_feast_returns() -> None:
    from training.ranking import stable_columns

    served = ["orders_90d", "already_purchased"]  # the service's order
    want = ["orders_90d", "already_purchased", "pair_carts_30d", "pair_views_30d"]
    for returned in (
        ["pair_views_30d", "already_purchased", "pair_carts_30d", "orders_90d"],
        ["pair_carts_30d", "orders_90d", "pair_views_30d", "already_purchased"],
    ):
        assert stable_columns(returned, served) == want


def test_evaluation_excludes_what_the_api_excludes() -> None:
    """exclude_purchased in the ranking evaluation leaves out what serving/scoring.py leaves out:
    the recent and the most-bought products, from every list and from the relevant items."""
    from training import ranking

    day = pd.Timestamp("2025-03-01", tz="UTC")
    queries = pd.DataFrame(
        {
            ranking.QUERY: [0],
            "customer_id": ["c1"],
            "event_timestamp": [day + pd.Timedelta(hours=9)],
            "relevant": [frozenset({"p2", "p3", "p29"})],
        }
    )
    rows = pd.DataFrame({ranking.QUERY: [0] * 5, "product_id": ["p1", "p2", "p5", "p3", "p29"]})
    inputs = ranking.CandidateInputs(
        recent={0: ["p1"]},
        favourite={0: None},
        catalogs={day: _catalog()},
        neighbours={day: {}},
        frequent={0: ["p2", "p29"]},
    )
    assert inputs.purchased(0) == {"p1", "p2", "p29"}
    history = {0: {"p2": (3, 10.0), "p29": (1, 20.0), "p7": (1, 5.0)}}
    m, lists = ranking.evaluate(
        None, [], rows, queries, inputs, history, scores=np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    )
    assert m["ranker"]["recall@10"] == 1.0  # as is: p2, p3 and p29 among the five
    ex = m[ranking.EXCLUDE]
    # p5, p3 against {p3}: one hit at rank 2 (with p2 and p29 kept, NDCG@10 would be 0.906)
    assert ex["ranker"]["queries"] == 1
    assert ex["ranker"]["ndcg@10"] == pytest.approx(1 / np.log2(3))
    assert lists["personal_frequency"][0][0][:3] == ["p2", "p29", "p7"]
    assert ex["personal_frequency"]["ndcg@10"] < 1.0  # p7 first, then popularity: p3 is not there


def test_a_full_list_still_draws_its_random_products() -> None:
    """The random draw is made even when the cap is reached before it (training's rng stream
    must not depend on how full each query's list is: every later query's randoms would move)."""
    rng = np.random.default_rng(3)
    full = CandidateConfig(max_candidates=3)
    c = generate(["p1", "p2"], NEIGH, None, _catalog(), rng=rng, config=full)
    assert len(c) == 3 and "random" not in set(c["source"])
    reference = np.random.default_rng(3)
    reference.choice(30, size=30, replace=False)  # min(catalog size 30, random 30 * 2)
    assert rng.random() == reference.random()


def test_catalogs_by_day_equal_one_catalog_per_day() -> None:
    rng = np.random.default_rng(5)
    days = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-05"], utc=True)
    frame = pd.DataFrame(
        {
            "product_id": [f"p{i}" for i in range(40)] * 3,
            "event_timestamp": np.repeat(days, 40),
            "category": rng.choice(["a", "b", None], 120),
            "popularity": rng.integers(0, 5, 120).astype(float),  # many ties: broken by id
        }
    ).sample(frac=1.0, random_state=1)
    frame.loc[frame.index[:7], "popularity"] = np.nan
    got = Catalog.by_day(frame)
    assert list(got) == list(days)
    for day, g in frame.groupby("event_timestamp"):
        want = Catalog.from_frame(g)
        assert got[day].product_ids.tolist() == want.product_ids.tolist()
        assert got[day].category == want.category
        assert got[day].by_category == want.by_category
        assert got[day].popular(5) == want.popular(5)


def test_training_rows_keep_every_positive_and_the_negatives_of_the_smallest_draws() -> None:
    """sample_training_rows against a per-query recomputation: the seed's draw per row (in the
    rows' order, over queries with a positive), every positive, the `negatives` negatives of
    the smallest draws, sorted by (query, product)."""
    from training import ranking

    rng = np.random.default_rng(0)
    rows = pd.DataFrame(
        {
            "query_id": rng.integers(0, 60, 3000),
            "purchased": (rng.random(3000) < 0.05).astype(np.int8),
            "product_id": [f"p{i}" for i in rng.integers(0, 400, 3000)],
        }
    ).drop_duplicates(["query_id", "product_id"])
    got = ranking.sample_training_rows(rows, 4, seed=7)
    with_pos = rows[rows.groupby("query_id")["purchased"].transform("max") > 0]
    draw = dict(zip(with_pos.index, np.random.default_rng(7).random(len(with_pos)), strict=True))
    want = []
    for _, g in with_pos.groupby("query_id"):
        want.append(g[g["purchased"] == 1])
        neg = g[g["purchased"] == 0]
        want.append(neg.loc[sorted(neg.index, key=draw.__getitem__)[:4]])
    want = pd.concat(want).sort_values(["query_id", "product_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert got.groupby("query_id")["purchased"].max().eq(1).all()


def test_ranked_per_query_orders_by_score_then_product_id() -> None:
    from training.ranking import _ranked_per_query

    rng = np.random.default_rng(1)
    rows = (
        pd.DataFrame(
            {
                "query_id": rng.integers(0, 40, 3000),
                "product_id": [f"p{i}" for i in rng.integers(0, 500, 3000)],
            }
        )
        .drop_duplicates(["query_id", "product_id"])
        .sample(frac=1.0, random_state=2)
    )
    scores = rng.integers(0, 6, len(rows)).astype(np.float32)  # many ties: by product id
    want = (
        rows.assign(score=scores)
        .sort_values(["query_id", "score", "product_id"], ascending=[True, False, True])
        .groupby("query_id")["product_id"]
        .agg(list)
    )
    got = _ranked_per_query(rows, scores)
    assert list(got) == list(want.index)
    assert all(got[q] == want[q] for q in got)
    assert _ranked_per_query(rows.iloc[:0], scores[:0]) == {}


def _priced_catalog() -> Catalog:
    rng = np.random.default_rng(3)
    n = 60
    return Catalog.from_frame(
        pd.DataFrame(
            {
                "product_id": [f"q{i:02d}" for i in range(n)],
                "category": rng.choice(["a", "b", "c"], n),
                "popularity": rng.integers(1, 20, n).astype(float),
                "price": np.round(rng.lognormal(3.0, 0.6, n), 2),
            }
        ),
        price="price",
    )


def _pick_estimate(bought: list[str], favourite: str | None, catalog: Catalog) -> dict:
    """category_fit's estimate of every product, recomputed from its definition product by
    product (price level = rank of the price within the category, from the frame; the
    customer's = the mean of theirs, rounded to 0.01)."""
    from training.candidates import FIT_FLOOR, FIT_PRIOR, FIT_WIDTH

    pop = dict(zip(catalog.product_ids.tolist(), catalog.popularity.tolist(), strict=True))
    price = dict(zip(catalog.product_ids.tolist(), catalog.price.tolist(), strict=True))
    cat = catalog.category
    level = {}
    for c in set(cat.values()):
        members = sorted((p for p in cat if cat[p] == c), key=lambda p: price[p])
        for r, p in enumerate(members):
            level[p] = (r + 0.5) / len(members)
    counts: dict[str, int] = {}
    for p in dict.fromkeys(bought):
        counts[cat[p]] = counts.get(cat[p], 0) + 1
    if favourite:
        counts[favourite] = counts.get(favourite, 0) + 1
    total_pop = sum(pop.values())
    share = {c: sum(pop[p] for p in cat if cat[p] == c) / total_pop for c in counts}
    mine = round(float(np.mean([level[p] for p in dict.fromkeys(bought)])) * 100) / 100
    total = sum(counts.values())
    out = {}
    for c, k in counts.items():
        weight = (k + FIT_PRIOR * share[c]) / (total + FIT_PRIOR)
        w = {
            p: pop[p] * (np.exp(-0.5 * ((level[p] - mine) / FIT_WIDTH) ** 2) + FIT_FLOOR)
            for p in cat
            if cat[p] == c
        }
        z = sum(w.values())
        out.update({p: weight * v / z for p, v in w.items()})
    return out


def test_category_fit_ranks_by_the_estimate_recomputed_product_by_product() -> None:
    from training.candidates import category_fit_ranking

    catalog = _priced_catalog()
    bought = ["q03", "q07", "q03", "q11"]
    for favourite in (None, "c"):
        want = _pick_estimate(bought, favourite, catalog)
        got = category_fit_ranking(bought, favourite, catalog, 15)
        best = sorted(want, key=lambda p: (-want[p], p))[:15]
        assert [p for p, _ in got] == best
        assert [s for _, s in got] == pytest.approx([want[p] for p in best], rel=1e-12)
    # the price level matters: a cheap and a dear customer of the same category differ
    by_price = sorted((p for p in catalog.by_category["a"]), key=lambda p: catalog.levels[p])
    cheap = category_fit_ranking(by_price[:2], None, catalog, 5)
    dear = category_fit_ranking(by_price[-2:], None, catalog, 5)
    assert [p for p, _ in cheap] != [p for p, _ in dear]
    assert category_fit_ranking([], None, catalog, 5) == []


def test_category_fit_comes_after_copurchase_and_respects_cap_and_exclusion() -> None:
    catalog = _priced_catalog()
    neigh = neighbours_from_arrays(["q03"], [["q40", "q41"]], [[1.0, 0.5]])
    cfg = CandidateConfig(
        history=1,
        copurchase=5,
        category_fit=10,
        category_popular=0,
        popular=50,
        random=0,
        max_candidates=12,
    )
    c = generate(["q03"], neigh, None, catalog, config=cfg, exclude={"q41"})
    assert c["source"].tolist()[:2] == ["history", "copurchase"]
    fit = c.loc[c["source"] == "category_fit", "product_id"].tolist()
    from training.candidates import category_fit_ranking

    want = [p for p, _ in category_fit_ranking(["q03"], None, catalog, 10)]
    assert fit == [p for p in want if p not in {"q03", "q40", "q41"}][: len(fit)]
    assert len(c) == 12 and "q41" not in set(c["product_id"])
    # without prices (a catalog read without them) the estimate is popularity within category
    plain = Catalog.from_frame(
        pd.DataFrame(
            {
                "product_id": catalog.product_ids,
                "category": [catalog.category[p] for p in catalog.product_ids],
                "popularity": catalog.popularity,
            }
        )
    )
    got = [p for p, _ in category_fit_ranking(["q03"], None, plain, 4)]
    assert got == plain.by_category[plain.category["q03"]][:4]


def test_candidate_workers_end_when_the_training_process_is_killed() -> None:
    """A process holding a pool whose workers run ranking._die_with, killed with SIGKILL (as the
    OOM killer does): its worker ends too instead of waiting forever with its memory."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = (
        "import multiprocessing, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from training.ranking import _die_with\n"
        "pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('fork'),\n"
        "                           initializer=_die_with, initargs=(os.getpid(),))\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(worker, 0)  # alive
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        try:  # reaped by init; a zombie of ours would still answer kill(0)
            if Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("the worker outlived its killed parent")
