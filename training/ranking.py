"""`shopfeast train ranking`: order the candidates a customer is offered by how likely they buy.

The way of the data:
1. every non-cancelled order of a known customer is one query: (customer, t = order time), its
   products are the relevant items; queries are split by time (oldest train, newest test);
2. the candidates the API would offer at t (training/candidates.py, on feature values read as of t
   through `recommendation_candidates_v1`) are the items to rank; a candidate that was bought is a
   positive, the others negatives (training adds random candidates as extra negatives);
3. features of every (customer, product, t) row come from the `ranking_model_v3` service (customer,
   product and on-demand match features, the generator's co-purchase score of the candidate,
   passed as the request field `candidate_copurchase_score`, and the customer's own history with
   the candidate from the declared customer x product view);
4. an XGBoost ranker (LambdaMART, rank:ndcg) is trained on the oldest queries, early-stopped on the
   next ones, and evaluated on the newest against three baselines: popularity, co-purchase only,
   and personal frequency (the customer's own most-bought products: where people re-buy, the
   strongest simple recommender).

The baselines rank the whole catalog (popularity), the co-purchase neighbours or the customer's own
products, topped up with popularity; the ranker ranks the API's candidates, so a relevant item the
generator missed counts against it: the comparison is the one a shopper would see. Everything is
measured twice: as is, and with `exclude_purchased` applied as the API applies it (the customer's
recent and most-bought products left out of every list, and of what counts as relevant).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from xgboost import XGBRanker
from xgboost.callback import TrainingCallback

from featurestore.odfv import CANDIDATE_COPURCHASE
from featurestore.store import open_store
from pipelines.lock import data_dir_lock
from pipelines.order_versions import latest_versions
from pipelines.storage import read_clean
from shopconfig.progress import Task, progress
from shopconfig.progress import console as results_console
from training import artifacts, plots, served_log, store
from training.candidates import (
    API_CONFIG,
    CATEGORY,
    CUSTOMER_SERVICE,
    FAVOURITE,
    FREQUENT,
    NEIGHBOUR_IDS,
    NEIGHBOUR_SCORES,
    POPULARITY,
    PRICE,
    PRODUCT_SERVICE,
    RECENT,
    CandidateConfig,
    Catalog,
    category_or_none,
    copurchase_ranking,
    copurchase_scores,
    generate_columns,
    id_list,
    neighbours_from_arrays,
    personal_frequency_ranking,
    popularity_ranking,
)
from training.evaluation import paired_difference, ranking_metrics
from training.matrix import model_matrix, usable_columns
from training.split import time_split

SERVICE = "ranking_model_v3"  # the default (RankingConfig.service)
SERVICES = ("ranking_model_v3", "ranking_model_v4")
MODEL = "ranking"
K = 10
QUERY = "query_id"
LABEL = "purchased"
# (product, snapshot day) rows of the product grid per point-in-time read, which bounds its memory.
# The grid is read without its co-purchase lists (category and popularity only), so one read holds
# all of the bench shop's 336 query days x 10,000 products (3.36M rows: candidate_inputs 14.5 s
# wall, 2.1 GiB peak in a process of its own, against 49.8 s in four reads of 1,000,000 and
# 2-3 min in 48 reads of 70,000 rows with every list; the grid whole with its lists held 21 GiB).
ROWS_PER_READ = 4_000_000
# (product, day) pairs per read of the co-purchase lists: only those the day's customers look up
LIST_ROWS_PER_READ = 70_000
# Training rows are read this many at a time, their float64 columns kept as float32 (what
# XGBoost holds features as anyway: the same values reach it, the same booster): every query of
# the bench shop is 7M training rows, killed at 16.5 GiB when read whole in float64.
TRAIN_ROWS_PER_READ = 1_000_000
# Test candidate rows past this many are read and scored this many at a time after the fit
# (only each query's ranked products are kept), instead of read whole beside it: all of the bench
# shop's 115,722 test queries are 23M rows (`--all-queries`), about 20 GiB read whole.
TEST_ROWS_PER_READ = 1_000_000
GRID_FEATURES = (CATEGORY, POPULARITY, PRICE)
LIST_FEATURES = (NEIGHBOUR_IDS, NEIGHBOUR_SCORES)
# One thread, as the churn models (training/churn_models.py says why): on the demo shop's 105,685
# training rows the same ranker took 10.6 s CPU with one thread and 31.2 s with two (load 16).
N_JOBS = 1
# Candidate rows are made CHUNK_QUERIES queries at a time, each chunk with its own random stream
# (seeded by the seed, the part and the chunk), so the rows do not depend on how many processes
# make them; ROW_JOBS forked processes make them (Python loops: one core each, up to 4; forked,
# they share the candidate inputs instead of pickling them). Forking is Linux's default start
# method; macOS's system libraries are not fork-safe, so there the rows are made in this process.
CHUNK_QUERIES = 2048
ROW_JOBS = min(len(os.sched_getaffinity(0)), 4) if sys.platform.startswith("linux") else 1

NOT_INPUTS = {
    CANDIDATE_COPURCHASE,  # the request field; the model reads the on-demand view's output
    "customer_id",
    "product_id",
    "event_timestamp",
    QUERY,
    LABEL,
    "source",
    "source_score",
    "split",
}

console = results_console()


@dataclass(frozen=True)
class RankingConfig:
    """Sizes that keep training affordable on two cores; evaluation uses full candidate lists.

    Queries per split: all of them up to 10,000 training, 2,000 validation and 5,000 test
    queries, drawn from every day past that (issue 18, item 5: the demo shop's 8,305 / 1,173 /
    2,377 all fit; the 1M-line bench shop's 401,837 / 57,030 / 115,722 are sampled, 56 s wall
    quiet, docs/training.md "Every query"; `--all-queries` lifts the caps). Before: 5,000 / 1,000
    / 1,500, and 1,000 / 200 / 300 from 40% of the days before that (300 test queries could not
    tell +0.022 from zero).
    """

    # the feature service the ranker reads; ranking_model_v4 (v3 + collection_match) is an option
    # (`shopfeast train ranking --service ranking_model_v4`; docs/training.md has its measurement)
    service: str = SERVICE
    warmup_days: int = 28  # queries this early have too little history behind them
    # queries per split (None: all of them; `shopfeast train ranking --all-queries`)
    train_queries: int | None = 10_000
    validation_queries: int | None = 2_000
    test_queries: int | None = 5_000
    train_negatives: int = 20  # negatives kept per training query (sampled from its candidates)
    query_day_share: float = 1.0  # share of each split's days its queries are drawn from
    # Training offers what the API offers plus random products (negatives the API never shows
    # would teach nothing; random ones teach that unrelated products are unlikely).
    train_candidates: CandidateConfig = replace(API_CONFIG, random=30, max_candidates=230)
    test_candidates: CandidateConfig = API_CONFIG
    # learning rate 0.2 and 20 rounds of patience (0.1 and 50 before issue 17): on the demo shop
    # the best round 64 instead of 135, the fit 3.5-3.9 s CPU instead of 7.1-7.4, validation
    # NDCG@10 0.7025 against 0.7027, test NDCG@10 0.291 both (0.2909), with exclude_purchased
    # 0.235 against 0.234
    params: dict = field(
        default_factory=lambda: {
            "n_estimators": 600,
            "learning_rate": 0.2,
            "max_depth": 4,
            "min_child_weight": 1.0,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
            "early_stopping_rounds": 20,
        }
    )


def purchase_queries(data_dir: Path, config: RankingConfig, seed: int) -> pd.DataFrame:
    """One row per (customer, order time): the products bought, split by time, sampled per split
    where it has more than the config's cap (None: every query).

    Columns: query_id, customer_id, event_timestamp, relevant (frozenset of product ids), split;
    `attrs["available"]`: each split's queries before sampling.
    """
    orders = latest_versions(
        read_clean(
            data_dir, "orders", ["order_id", "customer_id", "order_ts", "status", "updated_at"]
        )
    )
    items = read_clean(data_dir, "order_items", ["order_id", "product_id"])
    live = (orders["status"] != "cancelled").fillna(False) & orders["customer_id"].notna()
    orders = orders[live.astype(bool)]
    bought = items.merge(orders[["order_id", "customer_id", "order_ts"]], on="order_id")
    q = _bought_sets(bought).rename(columns={"order_ts": "event_timestamp"})
    start = orders["order_ts"].min().floor("D") + pd.Timedelta(days=config.warmup_days)
    q = q[q["event_timestamp"] >= start].sort_values(["event_timestamp", "customer_id"])
    q = q.reset_index(drop=True)
    q["split"] = time_split(q["event_timestamp"].dt.floor("D")).to_numpy()
    caps = {
        "train": config.train_queries,
        "validation": config.validation_queries,
        "test": config.test_queries,
    }
    day = q["event_timestamp"].dt.floor("D")
    keep = []
    for n, (split, cap) in enumerate(caps.items()):
        # each split its own draw: the test queries do not move with the training cap
        rng = np.random.default_rng([seed, n])
        # Days first: the catalog is read once per query day, so fewer days cost less.
        days = np.sort(day[q["split"] == split].unique())
        n_days = max(1, int(np.ceil(len(days) * config.query_day_share)))
        if len(days) > n_days:
            days = np.sort(rng.choice(days, n_days, replace=False))
        idx = q.index[(q["split"] == split) & day.isin(days)].to_numpy()
        if cap is not None and len(idx) > cap:
            idx = np.sort(rng.choice(idx, cap, replace=False))
        keep.append(idx)
    available = {s: int(n) for s, n in q["split"].value_counts().items()}
    q = q.loc[np.concatenate(keep)].reset_index(drop=True)
    q[QUERY] = np.arange(len(q))
    q.attrs["available"] = available  # every split's queries before sampling (the card's)
    return q


def _bought_sets(bought: pd.DataFrame) -> pd.DataFrame:
    """customer_id, order_ts, relevant (frozenset of the product ids as str) per (customer_id,
    order_ts) of `bought`, in the keys' order: groupby's keys and groups, with the sets made from
    one sort instead of a Python function per group (1 s of 12,772 groups on the demo shop)."""
    groups = bought.groupby(["customer_id", "order_ts"], sort=True)
    code = groups.ngroup().to_numpy()
    keep = code >= 0  # groupby leaves out a missing key
    code = code[keep]
    order = np.argsort(code, kind="stable")
    products = bought["product_id"].astype(str).to_numpy(dtype=object)[keep][order]
    bounds = np.searchsorted(code[order], np.arange(1, groups.ngroups))
    keys = groups.size().index.to_frame(index=False)
    keys["relevant"] = [frozenset(p) for p in np.split(products, bounds)]
    return keys


@dataclass
class CandidateInputs:
    """What the generator needs, read as of each query's time (`neighbours`: the co-purchase
    lists of the products in that day's customers' recent lists)."""

    recent: dict[int, list[str]]
    favourite: dict[int, str | None]
    catalogs: dict[pd.Timestamp, Catalog]  # by snapshot day
    neighbours: dict[pd.Timestamp, dict]  # by snapshot day: product -> [(product, score)]
    frequent: dict[int, list[str]] = field(default_factory=dict)  # most-bought, by query

    def purchased(self, query: int) -> set[str]:
        """What `exclude_purchased` leaves out for the query, as serving/scoring.py does: the
        customer's recent and most-bought products."""
        return set(self.recent[query]) | set(self.frequent.get(query, ()))


def candidate_inputs(
    fs,
    queries: pd.DataFrame,
    product_ids: list[str],
    rows_per_read: int = ROWS_PER_READ,
    bar: Task | None = None,
    also_look_up: dict[pd.Timestamp, set[str]] | None = None,
    lists_per_read: int = LIST_ROWS_PER_READ,
) -> CandidateInputs:
    """Customer, catalog and co-purchase values as of each query, through the candidate service.

    The catalog and co-purchase lists are read once per snapshot day: every query of a day sees
    the same daily snapshot (an entity timestamp t reads the snapshot of floor(t)). The grid of
    days x products is read without its lists (`GRID_FEATURES`), as many days at a time as
    `rows_per_read` holds (at least one); then the co-purchase lists (`LIST_FEATURES`) of only
    the (product, day) pairs the generator and the baseline look up (the live products in that
    day's customers' recent lists), `lists_per_read` pairs at a time. Reading every list of the
    grid and keeping those took 48 reads and 2.5-3 min on a 10,000-product shop (and 21 GiB read
    whole). `also_look_up`: more products per day whose lists to read (a live session's).
    """
    bar = bar or Task("candidates", None, "steps")
    cust = store.historical(fs, queries[["customer_id", "event_timestamp"]], CUSTOMER_SERVICE)
    bar.step(f"read {CUSTOMER_SERVICE}")
    recent = {q: id_list(v) for q, v in zip(queries[QUERY], cust[RECENT], strict=True)}
    favourite = {
        q: category_or_none(v) for q, v in zip(queries[QUERY], cust[FAVOURITE], strict=True)
    }
    frequent = {
        q: id_list(v)
        for q, v in zip(queries[QUERY], cust.get(FREQUENT, [None] * len(cust)), strict=True)
    }
    query_days = queries["event_timestamp"].dt.floor("D")
    looked_up: dict[pd.Timestamp, set[str]] = {}
    for q, day in zip(queries[QUERY], query_days, strict=True):
        looked_up.setdefault(day, set()).update(recent[q])
    for day, more in (also_look_up or {}).items():
        looked_up.setdefault(day, set()).update(more)
    days = sorted(query_days.unique())
    catalogs: dict[pd.Timestamp, Catalog] = {}
    days_per_read = max(1, rows_per_read // max(1, len(product_ids)))
    reads = range(0, len(days), days_per_read)
    bar.grow(len(reads))
    wanted = []  # (product, day) frames of the live products whose lists are looked up
    ids = np.asarray(product_ids, dtype=object)
    looked_up_pairs = pd.MultiIndex.from_tuples(
        [(p, d) for d, ps in looked_up.items() for p in ps], names=["product_id", "event_timestamp"]
    )
    for n, lo in enumerate(reads, 1):
        some = pd.DatetimeIndex(days[lo : lo + days_per_read])
        grid = pd.DataFrame(  # every product of each day, days in order
            {"product_id": np.tile(ids, len(some)), "event_timestamp": some.repeat(len(ids))}
        )
        prod = store.historical(fs, grid, PRODUCT_SERVICE, only=GRID_FEATURES)
        live = prod[prod[POPULARITY].notna()]  # products that exist at the snapshot
        # one sort for every day of the read (Catalog.from_frame per day: 1 s of 337 days)
        catalogs.update(Catalog.by_day(live, popularity=POPULARITY, category=CATEGORY, price=PRICE))
        for day in prod["event_timestamp"].unique():  # a day without a live product
            if day not in catalogs:
                catalogs[day] = Catalog.from_frame(live.iloc[:0], POPULARITY, CATEGORY, PRICE)
        pairs = pd.MultiIndex.from_arrays([live["product_id"], live["event_timestamp"]])
        keep = pairs.isin(looked_up_pairs)
        wanted.append(live.loc[keep, ["product_id", "event_timestamp"]])
        bar.step(f"read {PRODUCT_SERVICE} {n}/{len(reads)} without lists")
    pairs = pd.concat(wanted, ignore_index=True) if wanted else pd.DataFrame()
    neighbours = _neighbour_lists(fs, pairs, lists_per_read, bar)
    for day in catalogs:
        neighbours.setdefault(day, {})
    return CandidateInputs(recent, favourite, catalogs, neighbours, frequent)


def _neighbour_lists(fs, pairs: pd.DataFrame, per_read: int, bar: Task) -> dict:
    """product -> [(product, score)] by snapshot day, read for the (product_id, event_timestamp)
    rows of `pairs` only.

    A product's list that equals its list of the day read before it is that same list object,
    and equal (product, score) pairs are one tuple: on the 1M-line shop's every-query run, 24M
    pairs in 1.2M daily lists, of which three in four repeat the day before and 980k pairs are
    distinct, 2.1 GiB of Python objects held through the whole run otherwise. The lists are
    read, never changed (the generator and the baselines only look them up)."""
    neighbours: dict[pd.Timestamp, dict] = {}
    last: dict[str, list] = {}  # product -> its list of the latest day read
    pairs_seen: dict[tuple, tuple] = {}
    reads = range(0, len(pairs), max(1, per_read))
    bar.grow(len(reads))
    for n, lo in enumerate(reads, 1):
        chunk = pairs.iloc[lo : lo + per_read]
        near = store.historical(fs, chunk, PRODUCT_SERVICE, only=LIST_FEATURES)
        for day, g in near.groupby("event_timestamp", sort=True):
            lists = neighbours_from_arrays(g["product_id"], g[NEIGHBOUR_IDS], g[NEIGHBOUR_SCORES])
            for pid, near_pairs in lists.items():
                before = last.get(pid)
                if before == near_pairs:  # (a NaN score never equals: a list of its own)
                    lists[pid] = before
                else:
                    last[pid] = lists[pid] = [pairs_seen.setdefault(p, p) for p in near_pairs]
            neighbours.setdefault(day, {}).update(lists)
        bar.step(f"read {PRODUCT_SERVICE} lists {n}/{len(reads)}")
    return neighbours


def candidate_rows(
    queries: pd.DataFrame, inputs: CandidateInputs, config: CandidateConfig, seed: int | list[int]
) -> pd.DataFrame:
    """Every query's candidates and labels: query_id, customer_id, product_id, event_timestamp,
    source, source_score, purchased. `seed`: the random candidates' stream (numpy's
    `default_rng(seed)`).

    Gathered as plain lists and framed once (a frame per query cost 2-3 ms each, most of the
    ranker's query building on the demo shop's 7,500 queries)."""
    rng = np.random.default_rng(seed)
    pids, sources, source_scores, copurchase, bought, counts = [], [], [], [], [], []
    days = queries["event_timestamp"].dt.floor("D")  # Timestamp.floor per query: 0.3 s
    for query, day, relevant in zip(queries[QUERY], days, queries["relevant"], strict=True):
        recent = inputs.recent[query]
        # the retrieval score, a request field of the ranking service (serving: the same code)
        scores = copurchase_scores(recent, inputs.neighbours[day])
        ids, srcs, src_scores = generate_columns(
            recent,
            inputs.neighbours[day],
            inputs.favourite[query],
            inputs.catalogs[day],
            rng=rng if config.random else None,
            config=config,
            frequent=inputs.frequent.get(query, ()),
            co=scores,
        )
        pids += ids
        sources += srcs
        source_scores += src_scores
        copurchase += [scores.get(pid, 0.0) for pid in ids]
        bought += [pid in relevant for pid in ids]
        counts.append(len(ids))
    at = np.repeat(np.arange(len(queries)), counts)
    keys = queries[[QUERY, "customer_id", "event_timestamp"]].iloc[at].reset_index(drop=True)
    keys["customer_id"] = keys["customer_id"].astype(object)  # plain str, as before
    out = pd.DataFrame(
        {
            "product_id": pd.Series(pids, dtype=object),
            "source": pd.Series(sources, dtype=object),
            "source_score": np.asarray(source_scores, dtype=np.float64),
            CANDIDATE_COPURCHASE: np.asarray(copurchase, dtype=np.float64),
        }
    )
    out = pd.concat([out, keys], axis=1)
    out[LABEL] = np.asarray(bought, dtype=np.int8)
    return out


def sample_training_rows(rows: pd.DataFrame, negatives: int, seed: int | list[int]) -> pd.DataFrame:
    """Keep every positive and up to `negatives` random negatives per query; drop queries with no
    positive among their candidates (they carry no ranking signal)."""
    has_pos = rows.groupby(QUERY)[LABEL].transform("max") > 0
    rows = rows[has_pos]
    rng = np.random.default_rng(seed)
    key = rng.random(len(rows))
    query, label = rows[QUERY].to_numpy(), rows[LABEL].to_numpy()
    # each row's rank by key within its (query, label) group, ties by position (pandas'
    # rank(method="first")), from one stable sort instead of a groupby rank (0.5 s)
    order = np.lexsort((key, label, query))
    q, lab = query[order], label[order]
    at = np.arange(len(order))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (q[1:] != q[:-1]) | (lab[1:] != lab[:-1])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = at - np.maximum.accumulate(np.where(first, at, 0)) + 1
    keep = (label == 1) | (rank <= negatives)
    return rows[keep].sort_values([QUERY, "product_id"]).reset_index(drop=True)


class RowMaker:
    """Candidate rows of many queries in forked worker processes, a chunk of CHUNK_QUERIES
    queries at a time: `part = maker.submit(queries, config, negatives)` for every part, then
    `maker.gather(part)` for each (the rows in query order, as `candidate_rows` makes them,
    sampled by `sample_training_rows` per chunk when `negatives` is given), or
    `maker.stream(part)` for a part submitted `lazy`: its chunks one at a time, handed to the
    workers only as they are consumed (at most `jobs + 1` ahead), so its rows are never all in
    memory (all of the bench shop's test queries are 23M candidate rows).

    Chunk k of the n-th part submitted draws its random candidates from `default_rng([seed, n,
    k])` and samples its negatives from `default_rng([seed, n, k, 1])`, whichever process makes
    it: the rows are the same with one process or several (one process, or a single chunk: made
    here). The workers are forked at the first `gather` or `stream`: they see the candidate
    inputs and the parts as they are then, without pickling them (a 10,000-product shop's
    catalogs and co-purchase lists are hundreds of MB); only their rows come back. On two cores
    the demo shop's 11,855 queries took 3.8 + 1.4 s here and 2.2 + 0.5 s in two workers."""

    def __init__(
        self, inputs: CandidateInputs, seed: int, jobs: int = ROW_JOBS, bar: Task | None = None
    ) -> None:
        self.inputs, self.seed, self.jobs, self.bar = inputs, seed, jobs, bar
        self.parts: list[tuple[pd.DataFrame, CandidateConfig, int | None, bool]] = []
        self.pool: ProcessPoolExecutor | None = None
        self.chunks: list[list] | None = None  # per part: futures, or (chunk, first query)
        self.total = self.done = 0  # chunks queued and gathered, once the first gather starts
        self.parallel = False  # made by workers (more than one chunk and more than one job)
        self.cpu = 0.0  # the workers' CPU seconds in chunks

    def __enter__(self) -> RowMaker:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        _FORKED.pop(id(self), None)

    def submit(
        self,
        queries: pd.DataFrame,
        config: CandidateConfig,
        negatives: int | None = None,
        lazy: bool = False,
    ) -> int:
        """Queue the queries' rows; nothing is made before the first `gather` or `stream`."""
        self.parts.append((queries, config, negatives, lazy))
        return len(self.parts) - 1

    def _start(self) -> None:
        """Chunk the queued parts; fork the workers when there is more than one chunk and hand
        them every chunk of the parts that are not lazy, in part order."""
        if self.chunks is not None:
            return
        self.chunks = [
            [(k, lo) for k, lo in enumerate(range(0, len(q), CHUNK_QUERIES))]
            for q, *_ in self.parts
        ]
        self.total = sum(map(len, self.chunks))
        if self.bar is not None:  # one step a chunk: a 1M-line shop's every query is ~280
            self.bar.grow(self.total)
        self.parallel = self.jobs > 1 and self.total > 1
        if self.parallel and any(not lazy for *_, lazy in self.parts):
            self._fork()
            self.chunks = [
                part if self.parts[n][3] else [self._submit(n, *c) for c in part]
                for n, part in enumerate(self.chunks)
            ]

    def _fork(self) -> None:
        _FORKED[id(self)] = self  # what the forked workers read (never pickled)
        self.pool = ProcessPoolExecutor(
            self.jobs,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_die_with,
            initargs=(os.getpid(),),
        )

    def release(self) -> None:
        """End the workers (each holds its own copy of every page it wrote, refcounts included:
        on the bench shop 2-5 GiB); a lazy part's `stream` forks new ones."""
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def _submit(self, n: int, k: int, lo: int) -> Future:
        assert self.pool is not None
        return self.pool.submit(_chunk_rows, id(self), n, k, lo)

    def _made(self, chunk: pd.DataFrame | tuple[pd.DataFrame, float]) -> pd.DataFrame:
        if isinstance(chunk, tuple):  # a worker's, with its CPU seconds
            chunk, cpu = chunk
            self.cpu += cpu
        self.done += 1
        if self.bar is not None:
            self.bar.step(f"candidate rows {self.done}/{self.total} chunks")
        return chunk

    def gather(self, n: int) -> pd.DataFrame:
        """Part n's rows, whole."""
        frames = list(self.stream(n))
        if not frames:  # no queries: the columns all the same
            return self.rows(n, 0, 0)
        return pd.concat(frames, ignore_index=True)

    def stream(self, n: int) -> Iterator[pd.DataFrame]:
        """Part n's rows a chunk at a time, in query order."""
        self._start()
        assert self.chunks is not None
        chunks = self.chunks[n]
        if not self.parallel:
            for c in chunks:
                yield self._made(self.rows(n, *c))
        elif not self.parts[n][3]:
            for c in chunks:
                yield self._made(c.result())
        else:  # lazy: at most jobs + 1 chunks made ahead of the one consumed
            if self.pool is None:
                self._fork()
            ahead: deque[Future] = deque()
            pending = iter(chunks)
            for c in itertools.islice(pending, self.jobs + 1):
                ahead.append(self._submit(n, *c))
            while ahead:
                chunk = ahead.popleft().result()
                for c in itertools.islice(pending, 1):
                    ahead.append(self._submit(n, *c))
                yield self._made(chunk)

    def rows(self, n: int, k: int, lo: int) -> pd.DataFrame:
        """Chunk k (from query `lo`) of part n."""
        queries, config, negatives, _ = self.parts[n]
        chunk = queries.iloc[lo : lo + CHUNK_QUERIES]
        rows = candidate_rows(chunk, self.inputs, config, [self.seed, n, k])
        if negatives is not None:
            rows = sample_training_rows(rows, negatives, [self.seed, n, k, 1])
        return rows

    def usage(self) -> dict:
        """The worker processes (at a time) and the CPU seconds their chunks took."""
        if not self.parallel:
            return {}
        return {"processes": self.jobs, "cpu_seconds": round(self.cpu, 1)}


_FORKED: dict[int, RowMaker] = {}


def _die_with(parent: int) -> None:
    """A worker ends when the training process does, however it ends (a worker of a run the
    kernel's OOM killer ended kept its 5.5 GiB, waiting for work that never came): Linux's
    PR_SET_PDEATHSIG sends it SIGTERM when its parent exits."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _chunk_rows(maker: int, n: int, k: int, lo: int) -> tuple[pd.DataFrame, float]:
    """A worker's chunk and the CPU seconds it took (RUSAGE_CHILDREN would count other children
    too, and a forked child's peak RSS starts at its parent's)."""
    began = time.process_time()
    rows = _FORKED[maker].rows(n, k, lo)
    return rows, time.process_time() - began


def fit_ranker(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    columns: list[str],
    params: dict,
    seed: int,
    idle: threading.Event | None = None,
    bar: Task | None = None,
    matrix: pd.DataFrame | None = None,
) -> XGBRanker:
    """The ranker, early-stopped on `valid`; on N_JOBS threads, and on the machine's spare
    cores once `idle` is set (`_SpareCores`); its rounds shown on `bar` (`_FitProgress`).
    `matrix`: `train`'s model matrix when the caller made it (and kept only the query and label
    columns of `train`), else made here."""
    callbacks = ([_SpareCores(idle)] if idle is not None else []) + (
        [_FitProgress(bar)] if bar is not None else []
    )
    model = XGBRanker(
        **params,
        objective="rank:ndcg",
        eval_metric=f"ndcg@{K}",
        tree_method="hist",
        random_state=seed,
        n_jobs=N_JOBS,
        callbacks=callbacks or None,
    )
    if matrix is None:  # float32: what XGBoost makes of float64 values (the same booster)
        matrix = model_matrix(train, columns, np.float32)
    model.fit(
        matrix,
        train[LABEL],
        qid=train[QUERY],
        eval_set=[(model_matrix(valid, columns, np.float32), valid[LABEL])],
        eval_qid=[valid[QUERY]],
        verbose=False,
    )
    if callbacks:  # saved as fitted on N_JOBS threads, without the callbacks
        model.set_params(callbacks=None)
        model.get_booster().set_param("nthread", N_JOBS)
    return model


class _FitProgress(TrainingCallback):
    """The fit's rounds as the progress bar's note, at most every NOTE_EVERY_S seconds: the
    round and the best validation NDCG so far (early stopping makes the number of rounds
    unknown beforehand, so the fit stays one step of the bar)."""

    NOTE_EVERY_S = 2.0

    def __init__(self, bar: Task) -> None:
        self.bar = bar
        self.shown = time.monotonic()
        self.best = (float("-inf"), 0)

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        scores = next(iter(next(iter(evals_log.values()), {}).values()), [])
        if scores and scores[-1] > self.best[0]:
            self.best = (scores[-1], epoch + 1)
        now = time.monotonic()
        if now - self.shown >= self.NOTE_EVERY_S:
            self.shown = now
            note = f"fitting the ranker: round {epoch + 1}"
            if scores:
                note += f", best validation ndcg@{K} {self.best[0]:.4f} at round {self.best[1]}"
            self.bar.advance(0, note)
        return False  # never stops the fit


# At most this many threads for the fit once nothing else runs beside it
MAX_FIT_THREADS = 4


class _SpareCores(TrainingCallback):
    """Once `idle` is set (the thread reading beside the fit has nothing left to do), the rest of
    the fit runs on the machine's cores, if its load leaves them spare. XGBoost's hist trees are
    the same on any number of threads (the booster's bytes, tests/training/
    test_training_pipeline.py); one thread is kept while the reads run beside it, and on a
    loaded machine, where two threads spin: 10.6 s CPU with one thread and 31.2 s with two on the
    demo shop's training rows at load 16 (N_JOBS)."""

    def __init__(self, idle: threading.Event) -> None:
        self.idle = idle
        self.done = False

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        if not self.done and self.idle.is_set():
            self.done = True
            threads = spare_threads()
            if threads > N_JOBS:
                model.set_param("nthread", threads)
        return False  # never stops the fit


def spare_threads() -> int:
    """The cores this process may run on, when the last minute's load average leaves them free
    (this process's own two busy threads count in it), else N_JOBS."""
    cores = min(len(os.sched_getaffinity(0)), MAX_FIT_THREADS)
    return cores if os.getloadavg()[0] < cores + 0.5 else N_JOBS


BASELINES = ("popularity", "copurchase", "personal_frequency")
EXCLUDE = "exclude_purchased"


def purchase_history(data_dir: Path, queries: pd.DataFrame) -> dict[int, dict]:
    """Each query's customer's own purchases before t, from the clean tables (like the labels):
    {query_id: {product_id: (orders holding it, last such order's time in seconds)}}.

    What the personal-frequency baseline ranks. Strictly before t: the query's own order is at t.
    """
    orders = latest_versions(
        read_clean(
            data_dir, "orders", ["order_id", "customer_id", "order_ts", "status", "updated_at"]
        )
    )
    live = (orders["status"] != "cancelled").fillna(False) & orders["customer_id"].notna()
    orders = orders.loc[live.astype(bool), ["order_id", "customer_id", "order_ts"]]
    items = read_clean(data_dir, "order_items", ["order_id", "product_id"])
    lines = items.merge(orders, on="order_id").drop_duplicates(["order_id", "product_id"])
    lines = lines[lines["customer_id"].isin(queries["customer_id"].unique())]
    lines = lines.assign(
        customer_id=lines["customer_id"].astype(str),
        product_id=lines["product_id"].astype(str),
        ts=lines["order_ts"].astype("int64") / 1e6,
    )[["customer_id", "product_id", "order_ts", "ts"]]
    out: dict[int, dict] = {int(q): {} for q in queries[QUERY]}
    qs = queries[[QUERY, "customer_id", "event_timestamp"]].astype({"customer_id": str})
    for lo in range(0, len(qs), 500):  # bounded memory: a customer's lines once per query
        m = qs.iloc[lo : lo + 500].merge(lines, on="customer_id")
        m = m[m["order_ts"] < m["event_timestamp"]]
        g = m.groupby([QUERY, "product_id"])["ts"].agg(["size", "max"])
        for (q, pid), n, last in zip(g.index, g["size"], g["max"], strict=True):
            out[int(q)][pid] = (int(n), float(last))
    return out


def baseline_lists(
    queries: pd.DataFrame, inputs: CandidateInputs, history: dict[int, dict] | None = None
) -> tuple[dict[str, list], dict[str, list]]:
    """The baselines' top K and relevant set per query, in `queries` order, as is and with
    `exclude_purchased` (`evaluate` says how): ({baseline: [(top K, relevant)]}, the same
    excluded). They do not depend on the model: training makes them while the ranker fits."""
    history = history or {}
    lists: dict[str, list] = {n: [] for n in BASELINES}
    excl: dict[str, list] = {n: [] for n in BASELINES}
    for q in queries.itertuples(index=False):
        day = q.event_timestamp.floor("D")
        catalog = inputs.catalogs[day]
        recent = inputs.recent[q.query_id]
        own = history.get(q.query_id, {})
        relevant = set(q.relevant)
        # serving/scoring.py: recent, most-bought (and purchased_product_ids if served)
        excluded = inputs.purchased(q.query_id)
        kept = relevant - excluded
        for out, skip, rel in ((lists, (), relevant), (excl, excluded, kept)):
            out["popularity"].append((popularity_ranking(catalog, K, skip), rel))
            cp = copurchase_ranking(recent, inputs.neighbours[day], catalog, K, skip)
            out["copurchase"].append((cp, rel))
            out["personal_frequency"].append(
                (personal_frequency_ranking(own, catalog, K, skip), rel)
            )
    return lists, excl


@dataclass
class Scored:
    """The ranker's scores of the test rows, reduced to what the evaluation and the card keep:
    each query's products by score (`_ranked_per_query`), the counts, and a sample of the
    scored rows (model matrix, scores) for the served-log reference."""

    top: dict[int, list[str]]
    rows: int
    queries: int
    positives: int
    matrix: pd.DataFrame | None
    scores: np.ndarray

    @classmethod
    def of(cls, rows: pd.DataFrame, matrix: pd.DataFrame | None, scores: np.ndarray) -> Scored:
        return cls(
            _ranked_per_query(rows, scores),
            len(rows),
            int(rows[QUERY].nunique()),
            int(rows[LABEL].sum()) if LABEL in rows else 0,
            matrix,
            np.asarray(scores),
        )


def predict(model: XGBRanker, matrix: pd.DataFrame) -> np.ndarray:
    """The ranker's scores on the spare cores (the same scores on any number of threads)."""
    model.get_booster().set_param("nthread", spare_threads())
    try:
        return model.predict(matrix)
    finally:
        model.get_booster().set_param("nthread", N_JOBS)


def score_in_reads(
    fs,
    service: str,
    model: XGBRanker,
    columns: list[str],
    chunks: Iterable[pd.DataFrame],
    expected_rows: int,
    seed: int,
    per_read: int | None = None,
    bar: Task | None = None,
) -> Scored:
    """`Scored` of test candidate rows given as chunks (in query order, whole queries each,
    without features), read and scored about `per_read` (TEST_ROWS_PER_READ) rows at a time,
    cut where a query starts: memory bounded by one read. The reference sample keeps each row
    with probability REFERENCE_ROWS / `expected_rows` (an upper bound of the rows)."""
    rng = np.random.default_rng(seed)
    keep = min(1.0, served_log.REFERENCE_ROWS / max(expected_rows, 1))
    top: dict[int, list[str]] = {}
    rows = queries = positives = 0
    ref_matrix, ref_scores = [], []
    for n, piece in enumerate(_pieces(chunks, per_read or TEST_ROWS_PER_READ), 1):
        if bar:
            bar.grow(1)
        read = store.historical(fs, piece, service, lists=False)
        matrix = model_matrix(read, columns)
        scores = predict(model, matrix)
        ranked = _ranked_per_query(read, scores)
        top.update(ranked)
        rows, queries, positives = (
            rows + len(read),
            queries + len(ranked),
            positives + int(read[LABEL].sum()),
        )
        pick = rng.random(len(read)) < keep
        ref_matrix.append(matrix[pick])
        ref_scores.append(scores[pick])
        if bar:
            bar.step(f"read and scored {service} test rows: {n} reads, {rows:,} rows")
    return Scored(
        top,
        rows,
        queries,
        positives,
        pd.concat(ref_matrix, ignore_index=True) if ref_matrix else pd.DataFrame(columns=columns),
        np.concatenate(ref_scores) if ref_scores else np.empty(0),
    )


def _pieces(chunks: Iterable[pd.DataFrame], per_read: int) -> Iterator[pd.DataFrame]:
    """The chunks' rows (in query order, no query in two chunks) again, in pieces of whole
    queries: each from where the last ended to the first query start at or past `per_read` rows
    (the end, if none), the rest at the end."""
    held: pd.DataFrame | None = None
    for chunk in chunks:
        held = chunk if held is None else pd.concat([held, chunk], ignore_index=True)
        while held is not None and len(held) >= per_read:
            query = held[QUERY].to_numpy()
            starts = np.flatnonzero(query[1:] != query[:-1]) + 1
            past = starts[starts >= per_read]
            cut = int(past[0]) if len(past) else len(held)
            yield held.iloc[:cut]
            held = held.iloc[cut:].reset_index(drop=True) if cut < len(held) else None
    if held is not None and len(held):
        yield held


def evaluate(
    model: XGBRanker,
    columns: list[str],
    rows: pd.DataFrame | None,
    queries: pd.DataFrame,
    inputs: CandidateInputs,
    history: dict[int, dict] | None = None,
    scores: np.ndarray | None = None,
    baselines: tuple[dict[str, list], dict[str, list]] | None = None,
    scored: Scored | None = None,
) -> tuple[dict[str, dict], dict[str, list]]:
    """recall@K, NDCG@K, MAP@K of the ranker and the baselines on the same test queries, as is
    and with `exclude_purchased` applied as the API applies it (`metrics[EXCLUDE]`).

    With exclusion, the API drops the customer's recent and most-bought products from its
    candidates and fills up with more popular ones; here they are dropped from the ranked 200
    (the fill-up, products past the 200th, would rarely reach a top 10), and from the relevant
    set: a re-bought product cannot be recommended under that setting, so it is no one's miss.
    """
    if baselines is None:
        baselines = baseline_lists(queries, inputs, history)
    if scored is None:  # scored here: `rows`, by `scores` or by the model
        if scores is None:
            scores = model.predict(model_matrix(rows, columns))
        scored = Scored.of(rows, None, scores)
    top = scored.top
    ranker: list = []
    ranker_excl: list = []
    found = []
    for q in queries.itertuples(index=False):
        relevant = set(q.relevant)
        ranked = top.get(q.query_id, [])
        excluded = inputs.purchased(q.query_id)
        found.append(len(set(ranked) & relevant) / len(relevant))
        ranker.append((ranked[:K], relevant))
        ranker_excl.append(([p for p in ranked if p not in excluded][:K], relevant - excluded))
    lists = {"ranker": ranker, **baselines[0]}
    excl = {"ranker": ranker_excl, **baselines[1]}
    metrics: dict[str, dict] = {name: ranking_metrics(v, K) for name, v in lists.items()}
    metrics["ranker_minus"] = {  # is the ranker better, or only different by chance?
        name: paired_difference(lists["ranker"], lists[name], K) for name in BASELINES
    }
    metrics[EXCLUDE] = {name: ranking_metrics(v, K) for name, v in excl.items()}
    metrics[EXCLUDE]["ranker_minus"] = {
        name: paired_difference(excl["ranker"], excl[name], K) for name in BASELINES
    }
    metrics["candidates"] = {
        "recall_of_candidates": float(np.mean(found)),
        "mean_candidates": scored.rows / max(scored.queries, 1),
    }
    return metrics, lists


def _ranked_per_query(rows: pd.DataFrame, scores: np.ndarray) -> dict[int, list[str]]:
    """Each query's product ids by score, highest first, ties by product id: one stable sort
    on (query, -score, the id's rank among the ids) instead of pandas sorting by the id strings
    and grouping into lists."""
    if not len(rows):
        return {}
    ids = rows["product_id"].to_numpy()
    query = rows[QUERY].to_numpy()
    id_rank = pd.factorize(ids, sort=True)[0]  # codes in the ids' sorted order
    order = np.lexsort((id_rank, -np.asarray(scores), query))
    query, ids = query[order], ids[order]
    cut = np.flatnonzero(query[1:] != query[:-1]) + 1
    starts = np.concatenate([[0], cut])
    return {
        int(q): part.tolist() for q, part in zip(query[starts], np.split(ids, cut), strict=True)
    }


@dataclass
class RankingData:
    """Queries, candidate inputs and feature rows of every split (what `run` trains on; when
    build_datasets fitted the model, `train` keeps only its query and label columns)."""

    queries: pd.DataFrame
    inputs: CandidateInputs
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame | None
    columns: list[str]
    model: XGBRanker | None = None  # build_datasets' `fit`, when given one
    meanwhile: object = None  # build_datasets' `meanwhile(test queries, inputs)`, when given
    maker: RowMaker | None = None  # what made the candidate rows (its workers' usage)
    # the test rows' model matrix, made beside the fit when there is a fit and `test`
    test_matrix: pd.DataFrame | None = None
    # with `test` None: the test queries' candidate rows, a chunk at a time (`score_in_reads`)
    test_stream: Iterator[pd.DataFrame] | None = None


def stable_columns(columns: list[str], served: list[str]) -> list[str]:
    """The model's inputs in an order that does not change between runs: the service's features
    in its order, then by name the columns Feast adds as on-demand views' inputs (the declared
    view's pair_* counts), which it returns in an order that changes from process to process.
    XGBoost samples columns (colsample_bytree) by position, so that order moved the demo's NDCG@10
    between 0.289 and 0.296 with the same data and seed."""
    rank = {name: i for i, name in enumerate(served)}
    return sorted(columns, key=lambda c: (c not in rank, rank.get(c, 0), c))


def _read_compact(fs, rows: pd.DataFrame, service: str) -> pd.DataFrame:
    """`store.historical(fs, rows, service, lists=False)`, TRAIN_ROWS_PER_READ rows a read, the
    float64 columns of each read made float32."""
    pieces = []
    for lo in range(0, max(len(rows), 1), TRAIN_ROWS_PER_READ):
        piece = store.historical(fs, rows.iloc[lo : lo + TRAIN_ROWS_PER_READ], service, lists=False)
        wide = piece.columns[piece.dtypes == np.float64]
        pieces.append(piece.astype(dict.fromkeys(wide, np.float32)))
    return pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True)


def build_datasets(
    data_dir: Path,
    fs,
    config: RankingConfig,
    seed: int,
    say=print,
    bar: Task | None = None,
    fit: Callable[[pd.DataFrame, pd.DataFrame, list[str], threading.Event], XGBRanker]
    | None = None,
    meanwhile: Callable[[pd.DataFrame, CandidateInputs], object] | None = None,
    stack: contextlib.ExitStack | None = None,
) -> RankingData:
    """Queries from purchases, candidates as of each query, features from `config.service`;
    with `fit`, `fit(train, valid, columns, idle=idle, matrix=matrix)` runs beside the test rows'
    reads (`model`; `idle` is set once nothing else runs beside it; `matrix` holds the training
    rows' features, and `train`, then and in the result, only their query and label), and
    `meanwhile(test queries, inputs)` after those reads, before the fit is waited for.

    With a `stack` (whose block the caller holds open until it has scored the test rows) and a
    fit, test queries that may offer more than TEST_ROWS_PER_READ candidate rows are not made
    here: `test_stream` yields their candidates a chunk at a time, for `score_in_reads` after
    the fit (the workers that made the training rows end before the training read; the stream
    forks its own, which end when the stack closes)."""
    bar = bar or Task("ranking datasets", None, "steps")
    t0 = time.perf_counter()
    queries = purchase_queries(data_dir, config, seed)
    bar.step(f"{len(queries):,} queries")
    products = read_clean(data_dir, "products", ["product_id"])["product_id"].astype(str)
    inputs = candidate_inputs(fs, queries, sorted(products.unique()), bar=bar)
    artifacts.release_free_memory()  # the product grid's reads, before the workers fork
    say(
        f"ranking queries: {queries['split'].value_counts().to_dict()} "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    fit_q = queries[queries["split"] != "test"]
    test_q = queries[queries["split"] == "test"]
    service = config.service
    lazy = (
        fit is not None
        and stack is not None
        and len(test_q) * config.test_candidates.max_candidates > TEST_ROWS_PER_READ
    )
    with contextlib.ExitStack() as own:
        maker = (stack or own).enter_context(RowMaker(inputs, seed, bar=bar))
        fit_part = maker.submit(fit_q, config.train_candidates, config.train_negatives)
        test_part = maker.submit(test_q, config.test_candidates, lazy=lazy)
        with ThreadPoolExecutor(1) as reader:
            fit_rows = maker.gather(fit_part)
            if lazy:  # their memory back before the big read; the test stream forks anew
                maker.release()
            # the training rows are read (DuckDB, Arrow and numpy let go of the GIL) while the
            # workers make the test queries' candidates (unless those come after the fit)
            reading = reader.submit(_read_compact, fs, fit_rows, service)
            test_rows = None if lazy else maker.gather(test_part)
            fit_rows = reading.result()  # lists are no input
        maker.release()  # their memory back before the fit (a lazy part forks anew)
    bar.step(f"read {service} for {len(fit_rows):,} training rows")
    served = [r.split(":", 1)[1] for r in store.service_features(store.service(fs, service))]
    columns = stable_columns(usable_columns(fit_rows, exclude=NOT_INPUTS), served)
    split_of = fit_rows[QUERY].map(queries.set_index(QUERY)["split"]).to_numpy()
    in_train = split_of == "train"
    matrix = None
    if fit:  # the features kept once, in the model matrix, taken from the rows read column by
        # column (a frame of the training rows beside the read was the every-query run's peak on
        # the 1M-line shop: 14.3 GiB; a second copy in the fit, 1.2 GiB more before 7446c92)
        matrix = model_matrix(fit_rows, columns, np.float32, rows=in_train)
        train = fit_rows.loc[in_train, [QUERY, LABEL]].reset_index(drop=True)
    else:
        train = fit_rows[in_train].reset_index(drop=True)
    valid = fit_rows[split_of == "validation"].reset_index(drop=True)
    del fit_rows
    artifacts.release_free_memory()  # the read's freed buffers (2.6 GiB there)
    idle = threading.Event()
    test_matrix = None
    with ThreadPoolExecutor(1) as pool:
        # XGBoost's one thread fits while this one reads the test rows (it releases
        # the GIL in its C++ calls, as DuckDB does): two cores instead of one in turn;
        # then the fit may take both (`idle`)
        fitted = pool.submit(fit, train, valid, columns, idle=idle, matrix=matrix) if fit else None
        try:
            if test_rows is not None:
                test_rows = store.historical(fs, test_rows, service, lists=False)
                bar.step(f"read {service} for {len(test_rows):,} test rows")
            else:
                bar.step(f"{len(test_q):,} test queries: read and scored after the fit")
            say(
                f"ranking rows: train {len(train):,}, validation {len(valid):,}, "
                + (f"test {len(test_rows):,}" if test_rows is not None else "test after the fit")
                + f"; {len(columns)} features ({time.perf_counter() - t0:.1f}s)"
            )
            extra = meanwhile(test_q, inputs) if meanwhile else None
            if fit and test_rows is not None:
                test_matrix = model_matrix(test_rows, columns)
        finally:
            idle.set()
        model = fitted.result() if fitted else None
    return RankingData(
        queries,
        inputs,
        train,
        valid,
        test_rows,
        columns,
        model,
        extra,
        maker,
        test_matrix,
        maker.stream(test_part) if lazy else None,
    )


def run(
    data_dir: Path,
    seed: int = 7,
    config: RankingConfig | None = None,
    feature_store=None,
    echo: bool = True,
    wait: float = 0.0,
) -> dict:
    """Build the datasets, train, evaluate, save (holding the data directory's lock); returns
    the model card."""
    with data_dir_lock(data_dir, "train ranking", wait):
        return _train(data_dir, seed, config, feature_store, echo)


# what progress counts: queries, the customer read, the training and test rows' reads, the fit,
# the evaluation and the saved artifacts; the product grid's reads are added when known
RANKING_STEPS = 7


def _train(data_dir, seed, config, feature_store, echo) -> dict:
    with progress("train ranking", total=RANKING_STEPS, unit="steps") as bar:
        return _train_steps(data_dir, seed, config, feature_store, echo, bar)


def _train_steps(data_dir, seed, config, feature_store, echo, bar: Task) -> dict:
    config = config or RankingConfig()
    say = console.print if echo else (lambda *a, **k: None)
    t0 = time.perf_counter()
    fs = feature_store or open_store("embedded", data_dir)
    fit = partial(fit_ranker, params=config.params, seed=seed, bar=bar)

    def baselines(test_q: pd.DataFrame, inputs: CandidateInputs) -> tuple:
        # what the evaluation needs of no model, made while the ranker fits in its thread
        history = purchase_history(data_dir, test_q)
        lists = baseline_lists(test_q, inputs, history)
        artifacts.release_free_memory()  # the clean tables' frames, read and merged for it
        return history, lists

    with contextlib.ExitStack() as stack:  # the candidate workers, up until the test is scored
        d = build_datasets(
            data_dir, fs, config, seed, say, bar, fit=fit, meanwhile=baselines, stack=stack
        )
        queries, inputs, train, valid, columns = d.queries, d.inputs, d.train, d.valid, d.columns
        test_q = queries[queries["split"] == "test"]
        model = d.model
        bar.step("fitted the ranker")
        # scored once: evaluated and saved as reference
        if d.test_stream is None:
            scored = Scored.of(d.test, d.test_matrix, predict(model, d.test_matrix))
        else:
            expected = len(test_q) * config.test_candidates.max_candidates
            scored = score_in_reads(
                fs, config.service, model, columns, d.test_stream, expected, seed, bar=bar
            )
    history, lists = d.meanwhile
    metrics, _ = evaluate(model, columns, None, test_q, inputs, history, None, lists, scored)
    bar.step("evaluated")
    version = artifacts.new_version()
    out = artifacts.version_dir(data_dir, MODEL, version)
    names = [f"recall@{K}", f"ndcg@{K}", f"map@{K}"]
    figs = [
        plots.bars(
            {n: metrics[n] for n in ("ranker", *BASELINES)},
            names,
            out,
            "metrics.png",
            f"Test queries ({metrics['ranker']['queries']:,})",
        ),
        plots.importance(_gain(model, columns), out, "ranker feature importance (gain)"),
    ]
    card = _card(
        config, seed, version, queries, train, valid, scored, columns, model, metrics, figs, fs
    )
    card["cost"] = artifacts.run_cost(time.perf_counter() - t0, d.maker.usage() if d.maker else {})
    served_log.save_reference(out, columns, scored.matrix, scored.scores, seed)
    artifacts.save(data_dir, MODEL, version, model, card)
    bar.step("saved")
    say(summary(card))
    cost = card["cost"]
    line = f"{time.perf_counter() - t0:.1f}s, peak RSS {cost['peak_rss_gib']} GiB"
    if w := cost.get("workers"):
        line += f"; {w['processes']} candidate workers: {w['cpu_seconds']:.0f} CPU s"
    say(f"saved {out} ({line})")
    return card


def _gain(model: XGBRanker, columns: list[str]) -> pd.Series:
    gain = model.get_booster().get_score(importance_type="gain")
    return pd.Series({c: gain.get(c, 0.0) for c in columns}, name="gain")


def _card(
    config, seed, version, queries, train, valid, scored, columns, model, metrics, figs, fs
) -> dict:
    window = {
        s: {
            "first_query": g["event_timestamp"].min(),
            "last_query": g["event_timestamp"].max(),
            "queries": int(len(g)),
            "available_queries": int(queries.attrs.get("available", {}).get(s, len(g))),
        }
        for s, g in queries.groupby("split")
    }
    window = {s: window[s] for s in ("train", "validation", "test") if s in window}
    lift = metrics["ranker"][f"ndcg@{K}"] / metrics["popularity"][f"ndcg@{K}"] - 1
    return {
        "model": MODEL,
        "version": version,
        "created_at": pd.Timestamp.now(tz="UTC"),
        "code_version": artifacts.code_version(),
        "seed": seed,
        "task": "learning to rank: candidates of one (customer, t) query",
        "label": "1 when the customer bought the candidate in the order placed at t",
        "feature_service": {
            "name": config.service,
            "version": store.service_version(config.service),
            "features": store.service_features(store.service(fs, config.service)),
            "candidates_from": [CUSTOMER_SERVICE, PRODUCT_SERVICE],
        },
        "input_columns": columns,
        "training_window": window,
        "rows": {
            "train": {
                "rows": int(len(train)),
                "queries": int(train[QUERY].nunique()),
                "positives": int(train[LABEL].sum()),
            },
            "validation": {
                "rows": int(len(valid)),
                "queries": int(valid[QUERY].nunique()),
                "positives": int(valid[LABEL].sum()),
            },
            "test": {"rows": scored.rows, "queries": scored.queries, "positives": scored.positives},
        },
        "chosen": "xgboost_ranker",
        "hyper_parameters": {
            **config.params,
            "objective": "rank:ndcg",
            "best_iteration": int(model.best_iteration),
        },
        "candidates": {
            "train": asdict(config.train_candidates),
            "test": asdict(config.test_candidates),
            "train_negatives_per_query": config.train_negatives,
        },
        "metrics": {
            "test": metrics,
            "k": K,
            "baselines": list(BASELINES),
            "ndcg_lift_over_popularity": lift,
        },
        "plots": [p.name for p in figs],
    }


def summary(card: dict) -> str:
    m = card["metrics"]["test"]
    used = {
        s: (w["queries"], w.get("available_queries", w["queries"]))
        for s, w in card["training_window"].items()
    }
    lines = [
        "queries: "
        + ", ".join(
            f"{s} {n:,}" + (f" of {a:,} (sampled)" if a > n else "") for s, (n, a) in used.items()
        ),
        f"ranking on test ({m['ranker']['queries']:,} queries, "
        f"candidates hold {m['candidates']['recall_of_candidates']:.1%} of what was bought):",
    ]
    lines += _block(m)
    lines.append(
        f"  NDCG@{K} lift over popularity: {card['metrics']['ndcg_lift_over_popularity']:+.1%}"
    )
    ex = m.get(EXCLUDE)
    if ex:
        lines.append(
            f"with exclude_purchased (the API's default; recent and most-bought products left out "
            f"of every list "
            f"and of the relevant items, {ex['ranker']['queries']:,} queries keep one):"
        )
        lines += _block(ex)
    return "\n".join(lines)


def _block(m: dict) -> list[str]:
    lines = []
    for n in ("ranker", *BASELINES):
        if n in m:
            lines.append(
                f"  {n:<18} recall@{K} {m[n][f'recall@{K}']:.3f}  "
                f"NDCG@{K} {m[n][f'ndcg@{K}']:.3f}  MAP@{K} {m[n][f'map@{K}']:.3f}"
            )
    for name, d in m.get("ranker_minus", {}).items():
        lines.append(
            f"  NDCG@{K} ranker - {name}: {d['mean']:+.3f} "
            f"(95% interval {d['low']:+.3f} to {d['high']:+.3f}, paired bootstrap over queries)"
        )
    return lines
